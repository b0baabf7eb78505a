// An independent DKIM and ARC verifier for tests: Debian's python3-dkim (dkimpy), its DNS lookups
// sent to the test DNS server (dkimverify itself has no resolver option). Checks every
// DKIM-Signature of a message and says, for each, its d=, s=, a=, h= and whether it verified;
// or checks the message's ARC chain (dkim.arc_verify) and says its cv= result.
// Asynchronous: the test DNS server usually runs in the test's own process, which must go on
// answering while the verifier waits.
import { spawn } from 'node:child_process';

const PYTHON = '/usr/bin/python3';

const DNS_FUNCTION = `
import json, sys
import dkim, dkim.util, dns.resolver
resolver = dns.resolver.Resolver(configure=False)
resolver.nameservers = [sys.argv[1]]
resolver.port = int(sys.argv[2])
def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    try:
        answer = resolver.resolve(name, 'TXT', lifetime=timeout)
    except Exception:
        return None
    for rrset in answer.response.answer:
        if rrset.rdtype == dns.rdatatype.TXT:
            return b''.join(list(rrset.items)[0].strings)
    return None
message = sys.stdin.buffer.read()
`;

const DKIM_SCRIPT = `${DNS_FUNCTION}
headers, _ = dkim.rfc822_parse(message)
signatures = [value for name, value in headers if name.lower() == b'dkim-signature']
checker = dkim.DKIM(message)
results = []
for index, value in enumerate(signatures):
    tags = dkim.util.parse_tag_value(b''.join(value.split()))
    ok = checker.verify(idx=index, dnsfunc=dnsfunc)
    results.append({k: tags.get(k.encode(), b'').decode() for k in ('d', 's', 'a', 'h')} | {'ok': bool(ok)})
print(json.dumps(results))
`;

const ARC_SCRIPT = `${DNS_FUNCTION}
cv, results, reason = dkim.arc_verify(message, dnsfunc=dnsfunc)
print(json.dumps({'cv': cv.decode(), 'reason': reason, 'instances': len(results)}))
`;

export interface ArcCheck {
  /** the chain's validation: "pass", "fail" or "none" */
  cv: string;
  reason: string;
  /** ARC sets checked */
  instances: number;
}

export interface SignatureCheck {
  d: string;
  s: string;
  a: string;
  h: string;
  ok: boolean;
}

/** Every DKIM-Signature of `message` (CRLF line ends), checked against the records `dnsServer` ("ip:port") serves. */
export async function verifyDkim(message: Buffer, dnsServer: string): Promise<SignatureCheck[]> {
  return JSON.parse(await runPython(DKIM_SCRIPT, message, dnsServer)) as SignatureCheck[];
}

/** The ARC chain of `message` (CRLF line ends), checked against the records `dnsServer` ("ip:port") serves. */
export async function verifyArc(message: Buffer, dnsServer: string): Promise<ArcCheck> {
  return JSON.parse(await runPython(ARC_SCRIPT, message, dnsServer)) as ArcCheck;
}

async function runPython(script: string, message: Buffer, dnsServer: string): Promise<string> {
  const colon = dnsServer.lastIndexOf(':');
  const child = spawn(PYTHON, ['-c', script, dnsServer.slice(0, colon), dnsServer.slice(colon + 1)]);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    stdout += text;
  });
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  child.stdin.end(message);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  if (code !== 0) throw new Error(`python3-dkim failed (${code}): ${stderr}`);
  return stdout;
}
