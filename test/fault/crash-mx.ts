// The crash loop's test MX (test/fault/crash-loop.ts): an SMTP sink every daemon relays to as
// its relay.relayhost, answering some RCPTs and some whole messages with 451 so deferrals and
// retries run under the kills, and the checks of what reached it. A copy may reach it twice
// only when a delivery was cut between the sink's 250 and the queue's record of it (README,
// "Reliability"): the earlier copy then came from the daemon that was killed, in the round it
// was killed, before it started again.
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

  private constructor(private readonly sink: SmtpSink) {}

  static async start(seed: number): Promise<TestMx> {
    const rand = random(seed * 31 + 7);
    const sink = await startSmtpSink({
      rcpt: () => (rand() < TEMPORARY_RCPT_SHARE ? [451, '4.3.0 Try again later (test MX)'] : undefined),
      data: () => (rand() < TEMPORARY_DATA_SHARE ? [451, '4.3.0 Message not taken, try again (test MX)'] : undefined),
    });
    return new TestMx(sink);
  }

  get relayhost(): string {
    return `${this.sink.host}:${this.sink.port}`;
  }

  get received(): number {
    return this.sink.messages.length;
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
    const duplicates: string[] = [];
    /** "recipient subject" → the sink positions of its copies */
    const copies = new Map<string, number[]>();
    this.sink.messages.forEach((message, position) => {
      const text = message.data.toString('latin1');
      const subject = /^Subject: (.*)$/m.exec(text)?.[1]?.trim();
      assert.ok(subject !== undefined, `test MX: a message without a subject (torn?): ${text.slice(0, 200)}`);
      assert.ok(text.endsWith(`${bodyEnd(subject)}\r\n`), `test MX: "${subject}" is torn`);
      assert.ok(
        text.includes(`\r\nMessage-ID: <${subject}@${SENDER_DOMAIN}>\r\n`),
        `test MX: "${subject}" lost its Message-ID`,
      );
      assert.ok(
        text.startsWith('Received: ') && text.includes(`by ${message.helo} (mailsrv)`),
        `test MX: "${subject}" lacks the Received line of the daemon that sent it`,
      );
      checked += 4;
      for (const recipient of message.to) {
        assert.ok(
          ledger.sent.get(subject)?.includes(recipient),
          `test MX: "${subject}" reached ${recipient}, never sent`,
        );
        const k = key(recipient, subject);
        copies.set(k, [...(copies.get(k) ?? []), position]);
        checked += 1;
      }
    });
    for (const [k, positions] of copies) {
      for (let i = 1; i < positions.length; i++) {
        const earlier = positions[i - 1]!;
        const helo = this.sink.messages[earlier]!.helo;
        const cut = this.windows.find(
          (w) => w.helo === helo && earlier >= w.from && earlier < w.to && positions[i]! >= w.to,
        );
        const id = ledger.queueIds.get(k.split(' ')[1]!) ?? '?';
        assert.ok(cut, `test MX: "${k}" (${id}) arrived ${positions.length} times, not after a kill cut its delivery`);
        duplicates.push(`${k} (${id}) sent again after the kill of ${helo} in round ${cut.round}`);
        checked += 1;
      }
    }
    for (const k of ledger.acknowledged) {
      const [recipient, subject] = k.split(' ') as [string, string];
      if (!REMOTE.includes(recipient)) continue;
      assert.ok(
        copies.has(k),
        `test MX: acknowledged "${subject}" (${ledger.queueIds.get(subject)}) never reached ${recipient}`,
      );
      checked += 1;
    }
    return { checked, duplicates };
  }

  close(): Promise<void> {
    return this.sink.close();
  }
}
