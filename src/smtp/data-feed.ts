// The DATA half of smtp-server's input parser, made cheaper (connection.ts installs it on every
// parser a session makes). smtp-server's SMTPStream#_feedDataStream looks at every byte of a
// message in JavaScript for a dot at the start of a line (the end of DATA, or an escape dot, RFC
// 5321 4.5.2), copies every chunk to join it to the last 4 bytes of the one before, and takes one
// event-loop turn per escaped line. feedData finds the `LF .` pairs with Buffer#indexOf, reads the
// held-back bytes in place, and strips every escape dot of a chunk in one call. The contract is
// smtp-server's, byte for byte (test/unit/smtp-data-feed.test.ts feeds both the same input in
// random pieces): the message's bytes go to the data stream with escape dots removed; `.` CRLF
// right at the start, or CRLF `.` CRLF anywhere, ends it (what follows is the next command); a
// `..` at the very start loses its first dot; the last 4 bytes of a chunk are held back until
// the next one shows whether they begin the end; a full data stream stops the input until drained
// (also when an escape dot's write filled it, which smtp-server lets pass).
import type { SMTPStream } from 'smtp-server/lib/smtp-stream.js';

const LF = 0x0a;
const CR = 0x0d;
const DOT = 0x2e;
const LF_DOT = Buffer.from('\n.', 'latin1');
const NOTHING = Buffer.alloc(0);
/** bytes held back at the end of a chunk: the most of CR LF . CR LF that can be there without the rest */
const HELD_BACK = 4;

type Done = Parameters<SMTPStream['_feedDataStream']>[1];

/** SMTPStream#_feedDataStream's replacement: `this` is the parser, in data mode. */
export function feedData(this: SMTPStream, chunk: Buffer, done: Done): void {
  const dataStream = this._dataStream!;
  // the input: the bytes held back from the previous chunk (at most HELD_BACK), then this chunk
  let head = this._lastBytes && this._lastBytes.length > 0 ? this._lastBytes : NOTHING;
  let body = chunk;
  this._lastBytes = false;
  const at = (i: number): number => (i < head.length ? head[i]! : body[i - head.length]!);
  const length = (): number => head.length + body.length;
  /** the input from offset n on (a copy only when it starts inside the held-back bytes) */
  const restFrom = (n: number): Buffer =>
    n >= head.length ? body.subarray(n - head.length) : Buffer.concat([head.subarray(n), body]);
  const drop = (n: number): void => {
    if (n >= head.length) {
      body = body.subarray(n - head.length);
      head = NOTHING;
    } else head = head.subarray(n);
  };
  /** writes input[0, end) to the message */
  const emit = (end: number): void => {
    const fromHead = Math.min(end, head.length);
    if (fromHead > 0 && dataStream.writable) dataStream.write(head.subarray(0, fromHead));
    if (end > head.length && dataStream.writable) dataStream.write(body.subarray(0, end - head.length));
  };
  /** the first i >= from (from >= 2), i <= length - 3, with a dot at i right after an LF, or -1 */
  const nextLineDot = (from: number): number => {
    const last = length() - 3;
    const inHead = Math.min(head.length, last);
    for (let i = from; i <= inHead; i++) if (at(i) === DOT && at(i - 1) === LF) return i;
    const p = body.indexOf(LF_DOT, Math.max(0, from - 1 - head.length));
    const i = p + 1 + head.length;
    return p !== -1 && i <= last ? i : -1;
  };

  if (this._atDataStart && length() >= 3 && at(0) === DOT && at(1) === CR && at(2) === LF) {
    this._endDataMode(false, restFrom(3), done);
    return;
  }
  if (this._atDataStart && length() >= 2 && at(0) === DOT && at(1) === DOT) {
    drop(1);
    // that escape dot was payload: the dot now first is content, never an end
    this._atDataStart = false;
  }
  for (let i = nextLineDot(2); i !== -1; ) {
    if (at(i - 2) === CR && at(i + 1) === CR && at(i + 2) === LF) {
      this._countDataBytes(i);
      emit(i);
      this._endDataMode(false, restFrom(i + 3), done);
      return;
    }
    if (at(i + 1) === DOT) {
      // an escape dot: what is before it goes out, the search goes on after it
      this._countDataBytes(i);
      emit(i);
      drop(i + 1);
      i = nextLineDot(2);
    } else i = nextLineDot(i + 1);
  }
  const keep = Math.min(length(), HELD_BACK);
  const end = length() - keep;
  this._lastBytes = restFrom(end);
  if (end > 0) {
    this._countDataBytes(end);
    emit(end);
  }
  // the input waits while the message is full, whichever write filled it: smtp-server asks only
  // the chunk's last write, and a chunk of `..` lines (a write each) ends with none of its own,
  // so a client sending only those was never held, however far behind the message's reader was
  if (dataStream.writable && dataStream.writableNeedDrain) {
    // a stream that the application destroys never drains, it only closes
    const resume = (): void => {
      dataStream.removeListener('drain', resume);
      dataStream.removeListener('close', resume);
      done();
    };
    dataStream.once('drain', resume);
    dataStream.once('close', resume);
    return;
  }
  done();
}
