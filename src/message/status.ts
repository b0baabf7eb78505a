// The outcome of one delivery attempt for one recipient (as Postfix's dsb): an RFC 3463
// enhanced status code, whether the failure is for good, mailsrv's words, and the remote
// server's reply when one answered. Every delivery agent returns it, the queue stores it as it
// is, and bounces and `mailsrv queue` read it; a code is never written into an error message
// and parsed back out.

export interface RemoteReply {
  /** the server that answered, as a bounce names it (Remote-MTA): its host name, else its address */
  host?: string;
  /** its reply on one line, as it wrote it: "550 5.1.1 <bob@remote.test>: User unknown" */
  reply: string;
}

export interface DeliveryStatus {
  /** RFC 3463 enhanced status: 2.x.x delivered, 4.x.x or 5.x.x not */
  code: string;
  /** failed for good: bounced, never tried again (a 5.x.x code may still be retried, e.g. after a 503) */
  permanent: boolean;
  /** mailsrv's explanation ("mailbox of alice is full"), or the text of the remote reply */
  text: string;
  remote?: RemoteReply;
}

const CODE = /^[245]\.\d{1,3}\.\d{1,3}$/;

function status(code: string, permanent: boolean, text: string, remote?: RemoteReply): DeliveryStatus {
  if (!CODE.test(code)) throw new RangeError(`not an enhanced status code: ${JSON.stringify(code)}`);
  return remote === undefined ? { code, permanent, text } : { code, permanent, text, remote };
}

export function delivered(text = 'delivered', remote?: RemoteReply): DeliveryStatus {
  return status('2.0.0', false, text, remote);
}

/** A failure worth trying again later. */
export function temporary(code: string, text: string, remote?: RemoteReply): DeliveryStatus {
  return status(code, false, text, remote);
}

/** A failure that will never succeed: the recipient is bounced. */
export function permanent(code: string, text: string, remote?: RemoteReply): DeliveryStatus {
  return status(code, true, text, remote);
}

/** The same failure, to be tried again (its code made 4.x.x, as a deferral reports it). */
export function deferred(failure: DeliveryStatus): DeliveryStatus {
  return { ...failure, code: `4${failure.code.slice(1)}`, permanent: false };
}

export function isDelivered(s: DeliveryStatus): boolean {
  return s.code.startsWith('2');
}

/**
 * One line for a person (logs, `mailsrv queue`): the remote reply as it came, else
 * "4.2.2 mailbox of alice is full".
 */
export function describeStatus(s: DeliveryStatus): string {
  return s.remote?.reply ?? `${s.code} ${s.text}`;
}

/** The RFC 3464 per-recipient fields a status gives: Status, Remote-MTA and Diagnostic-Code (type and text). */
export function toDsnFields(s: DeliveryStatus): {
  status: string;
  remoteMta?: string;
  diagnostic: { type: 'smtp' | 'X-mailsrv'; text: string };
} {
  return {
    status: s.code,
    ...(s.remote?.host === undefined ? {} : { remoteMta: s.remote.host }),
    diagnostic:
      s.remote === undefined
        ? { type: 'X-mailsrv', text: `${s.code} ${s.text}` }
        : { type: 'smtp', text: s.remote.reply },
  };
}

/** An SMTP reply on one line: reply code, the enhanced status when there is one, and the text. */
const REPLY = /^([245])\d\d(?:[ -]+(([245])\.\d{1,3}\.\d{1,3})\b)?[ -]*(.*)$/s;

const CLASS = { sent: '2', temporary: '4', permanent: '5' } as const;

/**
 * The status a remote server's reply gives ("550 5.1.1 <bob@remote.test>: User unknown"): its
 * enhanced code when it has one of the reply code's class, else X.0.0 from the reply code. A
 * success stays 2.x.x whatever the reply looks like; a failure keeps its reply's class (a 503
 * is retried, yet reported as 5.x.x).
 */
export function statusFromReply(reply: string, outcome: keyof typeof CLASS, host?: string): DeliveryStatus {
  const match = REPLY.exec(reply);
  const replyClass = outcome === 'sent' || match === null ? CLASS[outcome] : match[1]!;
  const code = match?.[2] !== undefined && match[3] === replyClass ? match[2] : `${replyClass}.0.0`;
  return status(
    code,
    outcome === 'permanent',
    match === null ? reply : match[4]!,
    host === undefined ? { reply } : { host, reply },
  );
}

/**
 * A status from the error text an earlier mailsrv stored in its queue (a remote reply "550
 * 5.1.1 ..." or its own "4.2.0 mailbox of alice is locked..."), so a queue written by it loads.
 */
export function statusFromLegacyText(text: string, failed: boolean): DeliveryStatus {
  if (REPLY.test(text)) return statusFromReply(text, failed ? 'permanent' : 'temporary');
  const own = /^([245]\.\d{1,3}\.\d{1,3}) (.*)$/s.exec(text);
  return own ? status(own[1]!, failed, own[2]!) : status(failed ? '5.0.0' : '4.0.0', failed, text);
}
