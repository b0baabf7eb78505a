// What the queue manager asks of the agents it drives: the local delivery agent (one mailbox at
// a time), the outbound agent (one destination at a time) and the notifier (bounces and delay
// warnings). The agents implement these; the manager never imports them.
import type { DeliveryStatus } from '../message/status.js';
import type { QueueEntry } from './store.js';

/** One recipient of one queue entry. */
export interface DeliveryJob {
  entry: QueueEntry;
  index: number;
}

/** What a local delivery tells the queue while it holds the mailbox lock, for crash recovery. */
export interface AppendRecorder {
  /** the lock is held and the message will start at `offset`; nothing is written yet */
  appending(job: DeliveryJob, mailbox: string, offset: number): Promise<void>;
  /** the message is fsynced; the lock is still held (no other update can move it meanwhile) */
  appended(job: DeliveryJob): Promise<void>;
}

export interface DeliveryAgent {
  /**
   * Delivers jobs that all go to one mailbox, in order; returns one status per job, telling
   * `recorder` about each append before it writes and once it is durable, under the lock.
   */
  deliver(jobs: DeliveryJob[], recorder: AppendRecorder): Promise<DeliveryStatus[]>;
  /**
   * After a crash: did the append recorded for this recipient complete? (A torn one is cut
   * off, so the redelivery leaves no partial message.)
   */
  settleInterruptedAppend(entry: QueueEntry, index: number, mailbox: string, offset: number): Promise<boolean>;
}

/** What one attempt for one recipient came to. */
export interface AttemptOutcome {
  status: DeliveryStatus;
  /** the remote server that held the session ("host[address]:port"), for outbound attempts */
  relay?: string;
}

export interface RemoteAgent {
  /** The destination a remote address goes to (its domain, or the relayhost): the unit of concurrency. */
  destinationOf(address: string): string;
  /** Sends one entry to recipients that share a destination, over one connection. */
  deliver(jobs: DeliveryJob[]): Promise<RemoteAttempt>;
}

export interface RemoteAttempt {
  /** one per job, as soon as the transaction is over */
  outcomes: AttemptOutcome[];
  /** settles once the connection is closed (after QUIT): it counts against the concurrency until then */
  ended: Promise<void>;
}

export interface Notifier {
  /**
   * Queues a delivery status notification to the entry's sender about these recipients, naming
   * them in its envelope (`noticeOf`); returns it without handing it to the manager.
   */
  notify(entry: QueueEntry, indexes: number[], kind: 'failure' | 'delay'): Promise<QueueEntry>;
}
