// The crash loop's test MX (test/fault/crash-loop.ts): an SMTP sink every daemon relays to as
// its relay.relayhost, answering some RCPTs and some whole messages with 451 so deferrals and
// retries run under the kills, and a few messages with 554 so bounces (which come back to the
// sender's domain, through the same MX) run too; and the checks of what reached it. A copy may
// reach it twice only when a delivery was cut between the sink's 250 and the queue's record of
// it (README, "Reliability"): both copies then come from the same queue entry, the earlier one
// from the daemon that was killed, in the round it was killed, before it started again. A
// recipient both delivered and bounced has the same excuse: the attempt made again was refused.
import assert from 'node:assert/strict';
import { eventually } from '../support/wait.js';
import { type SmtpSink, startSmtpSink } from '../support/smtp-sink.js';
import { bodyEnd, key, type Ledger, random } from './crash-ledger.js';

/** The remote recipients the clients send to (relayed to the test MX). */
export const REMOTE = ['rex@remote.test', 'rob@remote.test'];
/** The domain of the clients' sender and of every Message-ID they write. */
export const SENDER_DOMAIN = 'crash.test';
const TEMPORARY_RCPT_SHARE = 0.15;
const TEMPORARY_DATA_SHARE = 0.1;
const PERMANENT_DATA_SHARE = 0.05;
const SENDER = `loop@${SENDER_DOMAIN}`;

const subjectOf = (text: string) => /^Subject: (.*)$/m.exec(text)?.[1]?.trim();
/** The queue id in the Received line on top (the copy's queue entry at the daemon that sent it). */
const sentFromEntry = (text: string) => /^Received: [\s\S]*? id ([0-9A-Z]+)/.exec(text)?.[1];
/** The key of a bounce for `recipient` of the message `subject`, as the copies map holds it. */
const bounceKey = (recipient: string, subject: string) => `${key(recipient, subject)} (bounce)`;

/** The copies a killed daemon may have had cut off: its copies at sink positions [from, to). */
interface KillWindow {
  round: number;
  /** the killed daemon's EHLO name (its `hostname`) */
  helo: string;
  from: number;
  to: number;
}

export interface MxReport {
  checked: number;
  /** one line per copy beyond the first, each explained by a kill */
  duplicates: string[];
}

export class TestMx {
  private readonly windows: KillWindow[] = [];
  private roundStart = 0;

  private constructor(
    private readonly sink: SmtpSink,
    /** "recipient subject" of copies the sink refused for good (554) */
    private readonly refused: Set<string>,
  ) {}

  static async start(seed: number): Promise<TestMx> {
    const rand = random(seed * 31 + 7);
    const refused = new Set<string>();
    const sink = await startSmtpSink({
      rcpt: () => (rand() < TEMPORARY_RCPT_SHARE ? [451, '4.3.0 Try again later (test MX)'] : undefined),
      data: (message) => {
        const draw = rand();
        if (draw < TEMPORARY_DATA_SHARE) return [451, '4.3.0 Message not taken, try again (test MX)'];
        // a bounce refused for good would be dropped (it is never bounced): only the mail is
        if (draw >= TEMPORARY_DATA_SHARE + PERMANENT_DATA_SHARE || message.from === '') return undefined;
        const subject = subjectOf(message.data.toString('latin1')) ?? '?';
        for (const recipient of message.to) refused.add(key(recipient, subject));
        return [554, '5.7.1 Message refused (test MX)'];
      },
    });
    return new TestMx(sink, refused);
  }

  get relayhost(): string {
    return `${this.sink.host}:${this.sink.port}`;
  }

  get received(): number {
    return this.sink.messages.length;
  }

  /** of the copies received, the bounces */
  get bounces(): number {
    return this.sink.messages.filter((message) => message.from === '').length;
  }

  roundStarts(): void {
    this.roundStart = this.sink.messages.length;
  }

  /**
   * Notes that the daemon named `helo` was killed in `round`; call it once every daemon is down,
   * before they start again: it waits for the sink to have read all they sent.
   */
  async killed(round: number, helo: string): Promise<void> {
    await eventually(() => this.sink.openConnections <= 0, 60_000, 'the test MX to read all the daemons sent');
    this.windows.push({ round, helo, from: this.roundStart, to: this.sink.messages.length });
  }

  /** Checks every copy the sink took against the ledger, once the queues are empty. */
  check(ledger: Ledger): MxReport {
    let checked = 0;
    /** "recipient subject" (or its bounceKey) → the sink positions of its copies */
    const copies = new Map<string, number[]>();
    const note = (k: string, position: number) => copies.set(k, [...(copies.get(k) ?? []), position]);
    this.sink.messages.forEach((message, position) => {
      const text = message.data.toString('latin1');
      assert.ok(
        text.startsWith('Received: ') && text.includes(`by ${message.helo} (mailsrv)`),
        `test MX: a copy lacks the Received line of the daemon that sent it: ${text.slice(0, 300)}`,
      );
      if (message.from === '') {
        for (const k of this.bounced(text, message.to)) note(k, position);
        checked += 3;
        return;
      }
      const subject = subjectOf(text);
      assert.ok(subject !== undefined, `test MX: a message without a subject (torn?): ${text.slice(0, 300)}`);
      assert.ok(text.endsWith(`${bodyEnd(subject)}\r\n`), `test MX: "${subject}" is torn`);
      assert.ok(
        text.includes(`\r\nMessage-ID: <${subject}@${SENDER_DOMAIN}>\r\n`),
        `test MX: "${subject}" lost its Message-ID`,
      );
      checked += 4;
      for (const recipient of message.to) {
        assert.ok(
          ledger.sent.get(subject)?.includes(recipient),
          `test MX: "${subject}" reached ${recipient}, never sent`,
        );
        note(key(recipient, subject), position);
        checked += 1;
      }
    });
    const duplicates = this.duplicates(copies, ledger);
    checked += duplicates.length;
    for (const k of ledger.acknowledged) {
      const [recipient, subject] = k.split(' ') as [string, string];
      if (!REMOTE.includes(recipient)) continue;
      const delivered = copies.has(k);
      const bounced = copies.has(bounceKey(recipient, subject));
      const id = ledger.queueIds.get(subject);
      assert.ok(
        delivered || bounced,
        `test MX: acknowledged "${subject}" (${id}) neither reached ${recipient} nor bounced`,
      );
      if (delivered && bounced) duplicates.push(this.bouncedAfterCopy(copies, k, bounceKey(recipient, subject), id));
      checked += 2;
    }
    return { checked, duplicates };
  }

  /** Checks a bounce (whole, to our sender, for copies the sink refused); returns its bounceKeys. */
  private bounced(text: string, to: string[]): string[] {
    assert.deepEqual(to, [SENDER], 'test MX: a bounce to someone else than the sender');
    assert.match(text, /\r\n--=_mailsrv_dsn_[0-9a-f]+--\r\n$/, 'test MX: a torn bounce');
    const original = /^Subject: (r\d+c\d+-\d+)\r?$/m.exec(text)?.[1];
    assert.ok(original !== undefined, `test MX: a bounce that names no message sent: ${text.slice(0, 600)}`);
    const recipients = [...text.matchAll(/^Final-Recipient: rfc822; ?(\S+)\r?$/gm)].map((m) => m[1]!);
    assert.ok(recipients.length > 0, `test MX: a bounce for "${original}" names no recipient`);
    for (const recipient of recipients) {
      assert.ok(
        this.refused.has(key(recipient, original)),
        `test MX: "${original}" bounced for ${recipient}, never refused`,
      );
    }
    return recipients.map((recipient) => bounceKey(recipient, original));
  }

  /** The kill that cut the delivery of the copy at sink position `earlier` when `later` came after it. */
  private cutBetween(earlier: number, later: number): KillWindow | undefined {
    const { helo } = this.sink.messages[earlier]!;
    return this.windows.find((w) => w.helo === helo && earlier >= w.from && earlier < w.to && later >= w.to);
  }

  /**
   * A recipient both delivered and bounced: only when a kill cut the recording of the delivered
   * copy and the attempt made again after it was refused for good. Returns the line to print.
   */
  private bouncedAfterCopy(copies: Map<string, number[]>, k: string, bounced: string, id: string | undefined): string {
    const copy = copies.get(k)!.at(-1)!;
    const bounce = copies.get(bounced)![0]!;
    const cut = this.cutBetween(copy, bounce);
    assert.ok(cut, `test MX: "${k}" (${id}) reached the recipient and bounced too, with no kill between`);
    return `${k} (${id}) delivered, then bounced by the attempt made again after the kill in round ${cut.round}`;
  }

  /**
   * Explains every copy beyond the first: the same queue entry again, after a kill cut the
   * earlier one's delivery. Returns one line per such copy.
   */
  private duplicates(copies: Map<string, number[]>, ledger: Ledger): string[] {
    const lines: string[] = [];
    for (const [k, positions] of copies) {
      for (let i = 1; i < positions.length; i++) {
        const [earlier, later] = [this.sink.messages[positions[i - 1]!]!, this.sink.messages[positions[i]!]!];
        const id = sentFromEntry(earlier.data.toString('latin1'));
        const what = `"${k}" (${ledger.queueIds.get(k.split(' ')[1]!) ?? '?'})`;
        assert.equal(sentFromEntry(later.data.toString('latin1')), id, `test MX: ${what} came from two queue entries`);
        const cut = this.cutBetween(positions[i - 1]!, positions[i]!);
        assert.ok(cut, `test MX: ${what} arrived ${positions.length} times, not after a kill cut its delivery`);
        lines.push(`${k} (queue entry ${id}) sent again after the kill of ${earlier.helo} in round ${cut.round}`);
      }
    }
    return lines;
  }

  close(): Promise<void> {
    return this.sink.close();
  }
}
