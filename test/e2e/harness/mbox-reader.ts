// Reading mailboxes in tests, independently of src/: an mbox split as the README says it is read (trace
// headers apart), the same file through Python's mailbox module, and what mboxrd must store.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { PYTHON } from './constants.js';

/**
 * What mboxrd must store for a raw wire message (after dot-unstuffing): CRLF → LF,
 * `^>*From ` gets one more `>`, a final newline added if missing. (Independent of src/.)
 */
export function expectedMboxrd(message: Buffer | string): Buffer {
  let text = typeof message === 'string' ? message : message.toString('latin1');
  text = text.replace(/\r\n/g, '\n');
  if (!text.endsWith('\n')) text += '\n';
  text = text.replace(/^(>*From )/gm, '>$1');
  return Buffer.from(text, 'latin1');
}

export interface TraceHeaders {
  returnPath: string;
  deliveredTo: string;
  /** the Received field, unfolded lines joined with "\n" */
  received: string;
  deliveryId: string;
}

export interface StoredMessage {
  /** the From_ line without its LF */
  fromLine: string;
  /** everything after the From_ line, without the separator blank line */
  body: Buffer;
  /** the four added headers, when the body starts with them in the documented order */
  trace: TraceHeaders | null;
  /** body after the trace headers: the stored original message */
  original: Buffer;
}

export interface Mailbox {
  exists: boolean;
  raw: Buffer;
  messages: StoredMessage[];
}

/**
 * Splits an mbox the way the spec reads it: a message starts at a `From ` line at the top of
 * the file or after a blank line. Each message must end with one blank separator line.
 */
export function parseMbox(raw: Buffer): StoredMessage[] {
  const text = raw.toString('latin1');
  if (text.length === 0) return [];
  const starts: number[] = [];
  const re = /(^|\n\n)From /g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    starts.push(m.index + m[1]!.length);
    re.lastIndex = m.index + m[1]!.length + 1;
  }
  if (starts[0] !== 0) throw new Error(`mbox does not start with a From_ line: ${JSON.stringify(text.slice(0, 80))}`);
  return starts.map((start, i) => {
    const end = i + 1 < starts.length ? starts[i + 1]! : text.length;
    const chunk = text.slice(start, end);
    const nl = chunk.indexOf('\n');
    const fromLine = chunk.slice(0, nl);
    let body = chunk.slice(nl + 1);
    if (!body.endsWith('\n\n') && !(body === '\n')) {
      throw new Error(`message ${i + 1} does not end with a blank separator line: ${JSON.stringify(body.slice(-80))}`);
    }
    body = body.slice(0, -1);
    const { trace, rest } = splitTrace(body);
    return { fromLine, body: Buffer.from(body, 'latin1'), trace, original: Buffer.from(rest, 'latin1') };
  });
}

function splitTrace(body: string): { trace: TraceHeaders | null; rest: string } {
  const fields: { name: string; value: string }[] = [];
  let pos = 0;
  for (let i = 0; i < 4; i++) {
    const m = /^([A-Za-z-]+): ?((?:[^\n]*)(?:\n[ \t][^\n]*)*)\n/.exec(body.slice(pos));
    if (!m) return { trace: null, rest: body };
    fields.push({ name: m[1]!, value: m[2]! });
    pos += m[0].length;
  }
  const names = fields.map((f) => f.name.toLowerCase());
  if (names.join(',') !== 'return-path,delivered-to,received,x-delivery-id') return { trace: null, rest: body };
  return {
    trace: {
      returnPath: fields[0]!.value,
      deliveredTo: fields[1]!.value,
      received: fields[2]!.value,
      deliveryId: fields[3]!.value,
    },
    rest: body.slice(pos),
  };
}

export function readMailbox(path: string): Mailbox {
  if (!existsSync(path)) return { exists: false, raw: Buffer.alloc(0), messages: [] };
  const raw = readFileSync(path);
  return { exists: true, raw, messages: parseMbox(raw) };
}

export interface PyMessage {
  from_: string;
  subject: string | null;
  messageId: string | null;
  /** mailbox.mbox get_bytes(): the message without the From_ line */
  bytes: Buffer;
}

/** Parses the mbox with Debian's Python `mailbox.mbox` (an independent reader). */
export function pythonMbox(path: string): { count: number; messages: PyMessage[] } {
  // get_message() decodes the From_ line as ASCII and fails on a UTF-8 sender (SMTPUTF8), so
  // the From_ line is read through the same table of contents and the message parsed with email.
  const code = [
    'import mailbox, email, json, sys, base64',
    'mb = mailbox.mbox(sys.argv[1], create=False)',
    'out = []',
    'for key in mb.iterkeys():',
    '    raw = mb.get_bytes(key)',
    '    start, stop = mb._lookup(key)',
    '    mb._file.seek(start)',
    "    from_ = mb._file.readline().rstrip(b'\\r\\n')[5:].decode('utf-8', 'replace')",
    '    msg = email.message_from_bytes(raw)',
    "    subj = msg['Subject']",
    "    mid = msg['Message-ID']",
    "    out.append({'from_': from_, 'subject': None if subj is None else str(subj),",
    "                'messageId': None if mid is None else str(mid), 'bytes': base64.b64encode(raw).decode()})",
    "print(json.dumps({'count': len(out), 'messages': out}))",
  ].join('\n');
  const result = spawnSync(PYTHON, ['-c', code, path], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (result.status !== 0) throw new Error(`python mailbox failed (${result.status}): ${result.stderr}`);
  const parsed = JSON.parse(result.stdout) as {
    count: number;
    messages: (Omit<PyMessage, 'bytes'> & { bytes: string })[];
  };
  return {
    count: parsed.count,
    messages: parsed.messages.map((m) => ({ ...m, bytes: Buffer.from(m.bytes, 'base64') })),
  };
}
