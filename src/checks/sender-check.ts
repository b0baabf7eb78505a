// SPF (RFC 7208) of the envelope sender, through mailauth: started when MAIL FROM arrives and
// run while the dialogue goes on. The null sender is checked by its HELO identity
// (postmaster@<helo>, RFC 7208 2.4). mailauth counts the DNS-querying mechanisms (more than 10
// is a permerror, RFC 7208 4.6.4) and void lookups; a lookup that times out is a temperror.
import { spf } from 'mailauth';
import type { MethodResult } from './auth-results.js';
import type { CheckDns } from './dns-lookup.js';

export interface SpfOutcome {
  /** pass, fail, softfail, neutral, none, temperror or permerror */
  result: string;
  /** the domain checked (of MAIL FROM, or the HELO name for the null sender) */
  domain: string;
  comment: string;
  /** what the result is reported for: smtp.mailfrom, or smtp.helo for the null sender */
  property: { name: 'smtp.mailfrom' | 'smtp.helo'; value: string };
}

export interface SpfQuery {
  ip: string;
  sender: string;
  helo: string;
  /** our hostname, named in the comment */
  hostname: string;
}

export async function checkSpf(dns: CheckDns, query: SpfQuery): Promise<SpfOutcome> {
  const property: SpfOutcome['property'] =
    query.sender === '' ? { name: 'smtp.helo', value: query.helo } : { name: 'smtp.mailfrom', value: query.sender };
  try {
    const checked = await spf({
      sender: query.sender,
      ip: query.ip,
      helo: query.helo,
      mta: query.hostname,
      resolver: dns.resolve,
    });
    return {
      result: checked.status.result,
      domain: checked.domain,
      comment: checked.status.comment ?? '',
      property,
    };
  } catch (err) {
    // mailauth turns DNS trouble into results; anything else is a check that could not be made
    return { result: 'temperror', domain: '', comment: (err as Error).message, property };
  }
}

export function spfResult(outcome: SpfOutcome): MethodResult {
  return {
    method: 'spf',
    result: outcome.result,
    comment: outcome.comment,
    properties: { [outcome.property.name]: outcome.property.value },
  };
}
