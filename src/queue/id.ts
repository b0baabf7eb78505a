// Queue ids: time-ordered, unique, safe as file names (like Postfix's long queue ids).
import { randomByte } from '../random-pool.js';

const ALPHABET = '0123456789BCDFGHJKLMNPQRSTVWXYZ';

/** 9 characters of milliseconds since the epoch, then 7 random ones, all from ALPHABET. */
export function newQueueId(now = Date.now()): string {
  let time = '';
  for (let rest = now; time.length < 9; rest = Math.floor(rest / ALPHABET.length)) {
    time = ALPHABET[rest % ALPHABET.length]! + time;
  }
  let random = '';
  for (let i = 0; i < 7; i++) random += ALPHABET[randomByte() % ALPHABET.length];
  return time + random;
}

export function isQueueId(text: string): boolean {
  return /^[0-9B-DF-HJ-NP-TV-Z]{16}$/.test(text);
}
