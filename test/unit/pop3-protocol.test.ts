// src/pop3/protocol.ts without a socket: command lines in, answers out. USER/PASS, AUTH PLAIN
// (with a continuation), no APOP, CAPA per phase and per TLS state, STLS, the TRANSACTION
// commands, commands in the wrong phase, unknown and over-long lines, the limits on bad commands
// and failed logins, QUIT in each phase, one session per mailbox, and a connection that drops
// or stops. Users come from a real users file, mailboxes are real mbox files in a temp spool.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, beforeEach, describe, test } from 'node:test';
import fc from 'fast-check';
import { pino } from 'pino';
import { Authenticator, MAX_QUEUED_CHECKS_PER_CLIENT } from '../../src/auth/authenticator.js';
import { MAX_LOGIN_FAILURES_PER_SESSION } from '../../src/auth/session-logins.js';
import { addUser, loadUsers } from '../../src/auth/users.js';
import type { UserDb } from '../../src/auth/users.js';
import { networkMatcher } from '../../src/config/networks.js';
import { MailboxClaims, type SessionContext } from '../../src/pop3/context.js';
import { Maildrop } from '../../src/pop3/maildrop.js';
import { GREETING, Pop3Protocol, type Pop3Response } from '../../src/pop3/protocol.js';
import { loadTlsCredentials, type TlsCredentials } from '../../src/tls/credentials.js';
import { generateSelfSigned } from '../../src/tls/selfsigned.js';

const INSIDE = '127.0.0.1';
const OUTSIDE = '192.0.2.7';
const PASSWORDS = { alice: 'alice-pw', bob: 'correct horse battery' };
const MESSAGES = [
  'Subject: one\nX-UIDL: uid-one\n\nfirst body\n.dotted line\n',
  'Subject: two\nX-UIDL: uid-two\n\nsecond body\n',
];
const SIZES = MESSAGES.map((m) => m.replace(/\n/g, '\r\n').length);
const TOTAL = SIZES[0]! + SIZES[1]!;
const BASE_CAPA = ['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING'];
const AUTH_FAILED = '-ERR [AUTH] Invalid user name or password';
const PLAINTEXT_REFUSED = '-ERR [AUTH] Plaintext authentication disallowed on non-secured connection';

const plain = (authzid: string, user: string, password: string) =>
  Buffer.from(`${authzid}\0${user}\0${password}`).toString('base64');

let dir: string;
let spoolDir: string;
let users: UserDb;
let credentials: TlsCredentials;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailsrv-pop3-protocol-'));
  spoolDir = join(dir, 'spool');
  for (const sub of ['spool', 'index', 'journal']) await mkdir(join(dir, sub));
  const usersFile = join(dir, 'users');
  for (const [name, password] of Object.entries(PASSWORDS)) await addUser(usersFile, name, password);
  users = await loadUsers(usersFile);
  const pem = await generateSelfSigned('pop3.test');
  await writeFile(join(dir, 'cert.pem'), pem.cert);
  await writeFile(join(dir, 'key.pem'), pem.key);
  credentials = (await loadTlsCredentials({ cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') }))!;
});
after(() => rm(dir, { recursive: true, force: true }));

/**
 * alice's mailbox holds MESSAGES again (bob has none); the POP3 session locks of sessions an
 * earlier test left logged in are gone.
 */
beforeEach(async () => {
  for (const name of await readdir(spoolDir)) {
    if (name.endsWith('.pop3.lock')) await rm(join(spoolDir, name));
  }
  const mbox = MESSAGES.map((m) => `From sender@example.test Thu Nov 26 10:00:00 2026\n${m}\n`).join('');
  await writeFile(join(spoolDir, 'alice'), mbox);
});

type LogLine = Record<string, unknown> & { msg: string };

interface Setup {
  /** TLS credentials (STLS offered), or none */
  tls?: TlsCredentials | null;
  /** failures from an address before it is locked out */
  maxFailures?: number;
}

/** What sessions share, as server.ts makes it, with the log lines collected. */
function sessionContext({ tls = null, maxFailures = 100 }: Setup = {}) {
  const logs: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logs.push(JSON.parse(chunk.toString()) as LogLine);
      callback();
    },
  });
  const inUse = new MailboxClaims();
  const ctx: SessionContext = {
    settings: () => ({
      maxClients: 10,
      timeoutMs: 60_000,
      lockTimeoutMs: 1000,
      plaintextAuth: networkMatcher(['127.0.0.0/8']),
    }),
    tls: () => tls,
    authenticator: new Authenticator(() => users, {
      failureDelayMs: 1,
      maxFailures,
      forgetAfterMs: 60_000,
      exempt: () => false,
      cacheTtlMs: 60_000,
    }),
    maildrop: new Maildrop({
      spoolDir,
      indexDir: join(dir, 'index'),
      journalDir: join(dir, 'journal'),
      lockTimeoutMs: () => 1000,
    }),
    claims: inUse,
    logger: pino({ level: 'info' }, sink),
  };
  const session = (client = INSIDE) => new Pop3Protocol(ctx, client, ctx.logger);
  return { ctx, logs, inUse, session };
}

async function answer(session: Pop3Protocol, line: string): Promise<Pop3Response> {
  const response = await session.handle(line);
  assert.ok(response !== null, `${line}: no answer`);
  return response;
}

/** The one status line a command is answered with. */
async function reply(session: Pop3Protocol, line: string): Promise<string> {
  const response = await answer(session, line);
  assert.equal(response.kind, 'line', `${line}: ${JSON.stringify(response)}`);
  return response.kind === 'line' ? response.line : '';
}

/** A multi-line answer: its status line and its lines. */
async function multiline(session: Pop3Protocol, line: string): Promise<{ first: string; lines: string[] }> {
  const response = await answer(session, line);
  assert.equal(response.kind, 'lines', `${line}: ${JSON.stringify(response)}`);
  return response.kind === 'lines' ? { first: response.first, lines: [...response.lines] } : { first: '', lines: [] };
}

async function capa(session: Pop3Protocol): Promise<string[]> {
  const { first, lines } = await multiline(session, 'CAPA');
  assert.equal(first, '+OK Capability list follows');
  return lines;
}

async function loggedIn(session: Pop3Protocol, user: 'alice' | 'bob' = 'alice'): Promise<Pop3Protocol> {
  assert.equal(await reply(session, `USER ${user}`), '+OK send PASS');
  assert.match(await reply(session, `PASS ${PASSWORDS[user]}`), new RegExp(`^\\+OK ${user} has `));
  assert.equal(session.phase, 'transaction');
  return session;
}

/** Asserts a last reply: the connection is to close after it, and the session takes nothing more. */
async function lastReply(session: Pop3Protocol, line: string, expected: string): Promise<void> {
  assert.deepEqual(await answer(session, line), { kind: 'line', line: expected, close: true });
  assert.equal(session.phase, 'closed');
  assert.equal(await session.handle('NOOP'), null);
}

describe('AUTHORIZATION', () => {
  test('USER and PASS open the mailbox; CAPA offers USER and SASL PLAIN before login only', async () => {
    const { session, logs, inUse } = sessionContext();
    const alice = session();
    assert.equal(alice.phase, 'authorization');
    assert.deepEqual(await capa(alice), [...BASE_CAPA, 'USER', 'SASL PLAIN', 'IMPLEMENTATION mailsrv']);
    assert.equal(await reply(alice, 'user alice'), '+OK send PASS', 'commands are case-insensitive');
    assert.equal(alice.phase, 'awaiting-pass');
    assert.equal(await reply(alice, 'PASS alice-pw'), `+OK alice has 2 messages (${TOTAL} octets)`);
    assert.equal(alice.phase, 'transaction');
    assert.equal(alice.user, 'alice');
    assert.equal(inUse.holderOf('alice'), alice);
    assert.deepEqual(await capa(alice), [...BASE_CAPA, 'IMPLEMENTATION mailsrv']);
    const login = logs.find((l) => l.msg === 'login');
    assert.deepEqual(
      { user: login?.user, client: login?.client, tls: login?.tls, messages: login?.messages, size: login?.size },
      { user: 'alice', client: INSIDE, tls: false, messages: 2, size: TOTAL },
    );
  });

  test('PASS takes the rest of the line (spaces too); an empty mailbox is one without a file', async () => {
    const { session } = sessionContext();
    const bob = session();
    assert.equal(await reply(bob, 'USER bob'), '+OK send PASS');
    assert.equal(await reply(bob, 'PASS correct horse battery'), '+OK bob has 0 messages (0 octets)');
    assert.deepEqual(await multiline(bob, 'LIST'), { first: '+OK 0 messages (0 octets)', lines: [] });
  });

  test('PASS needs a USER just before; a wrong password, an unknown and a malformed name fail alike', async () => {
    const { session, logs } = sessionContext();
    const client = session();
    assert.equal(await reply(client, 'PASS alice-pw'), '-ERR USER first');
    await reply(client, 'USER alice');
    assert.equal(await reply(client, 'PASS wrong'), AUTH_FAILED);
    assert.equal(client.phase, 'authorization');
    assert.equal(await reply(client, 'PASS alice-pw'), '-ERR USER first', 'a USER counts for one PASS');
    await reply(client, 'USER nobody');
    assert.equal(await reply(client, 'PASS alice-pw'), AUTH_FAILED);
    await reply(client, 'USER ../etc/passwd');
    assert.equal(await reply(client, 'PASS x'), AUTH_FAILED);
    assert.deepEqual(
      logs.filter((l) => l.msg === 'login failed').map((l) => [l.user, l.client]),
      [
        ['alice', INSIDE],
        ['nobody', INSIDE],
        ['(invalid name)', INSIDE],
      ],
    );
    assert.ok(!logs.some((l) => JSON.stringify(l).includes('alice-pw')), 'no password in the log');
  });

  test('there is no APOP: the greeting has no timestamp, CAPA does not name it, the command is unknown', async () => {
    const { session } = sessionContext();
    const client = session();
    assert.doesNotMatch(GREETING, /</);
    assert.ok(!(await capa(client)).some((c) => c.startsWith('APOP')));
    assert.equal(await reply(client, 'APOP alice c4c9334bac560ecc979e58001b3e22fb'), '-ERR Unknown command');
  });

  test('AUTH PLAIN: with an initial response, and with a continuation line of up to 2048 octets', async () => {
    const { session } = sessionContext();
    assert.deepEqual(await multiline(session(), 'AUTH'), { first: '+OK', lines: ['PLAIN'] });

    const initial = session();
    assert.match(await reply(initial, `AUTH PLAIN ${plain('alice', 'alice', 'alice-pw')}`), /^\+OK alice has 2/);
    assert.equal(initial.phase, 'transaction');

    const continued = session();
    assert.equal(continued.maxLineLength, 255);
    assert.equal(await reply(continued, 'AUTH plain'), '+ ');
    assert.equal(continued.phase, 'awaiting-sasl');
    assert.equal(continued.maxLineLength, 2048);
    assert.equal(await reply(continued, plain('', 'bob', PASSWORDS.bob)), '+OK bob has 0 messages (0 octets)');
    assert.equal(continued.maxLineLength, 255);
  });

  test('AUTH PLAIN: cancelled, bad base64, malformed, other mechanisms; a continuation is no command', async () => {
    const { session } = sessionContext();
    const client = session();
    await reply(client, 'AUTH PLAIN');
    assert.equal(await reply(client, '*'), '-ERR Authentication cancelled');
    assert.equal(client.phase, 'authorization');
    await reply(client, 'AUTH PLAIN');
    assert.equal(await reply(client, 'not base64!'), '-ERR [AUTH] Invalid base64 in the AUTH PLAIN response');
    await reply(client, 'AUTH PLAIN');
    assert.equal(await reply(client, 'QUIT'), '-ERR [AUTH] Malformed AUTH PLAIN response');
    assert.equal(client.phase, 'authorization');
    assert.equal(
      await reply(client, `AUTH PLAIN ${Buffer.from('alice\0alice-pw').toString('base64')}`),
      '-ERR [AUTH] Malformed AUTH PLAIN response',
    );
    assert.equal(await reply(client, 'AUTH CRAM-MD5'), '-ERR Unsupported authentication mechanism');
    assert.equal(await reply(client, `AUTH PLAIN ${plain('bob', 'alice', 'alice-pw')}`), AUTH_FAILED, 'no proxy');
    assert.equal(await reply(client, 'AUTH PLAIN a b c'), '-ERR Too many arguments');
  });

  test('outside plaintext_auth_networks: CAPA offers STLS, not USER; plaintext logins are refused', async () => {
    const { session } = sessionContext({ tls: credentials });
    const client = session(OUTSIDE);
    assert.deepEqual(await capa(client), [...BASE_CAPA, 'STLS', 'IMPLEMENTATION mailsrv']);
    assert.equal(await reply(client, 'USER alice'), PLAINTEXT_REFUSED);
    assert.equal(await reply(client, 'PASS alice-pw'), PLAINTEXT_REFUSED);
    assert.deepEqual(await multiline(client, 'AUTH'), { first: '+OK', lines: [] });
    assert.equal(await reply(client, 'AUTH PLAIN'), PLAINTEXT_REFUSED);
    assert.equal(client.phase, 'authorization');
  });

  test('STLS asks the connection for TLS; over TLS CAPA offers USER and SASL PLAIN, and no STLS', async () => {
    const { session, logs } = sessionContext({ tls: credentials });
    const client = session(OUTSIDE);
    assert.equal(await reply(client, 'STLS now'), '-ERR Too many arguments');
    assert.deepEqual(await answer(client, 'STLS'), {
      kind: 'start-tls',
      line: '+OK Begin TLS negotiation',
      credentials,
    });
    client.tlsStarted();
    assert.deepEqual(await capa(client), [...BASE_CAPA, 'USER', 'SASL PLAIN', 'IMPLEMENTATION mailsrv']);
    assert.equal(await reply(client, 'STLS'), '-ERR Already in TLS');
    await loggedIn(client);
    assert.equal(logs.find((l) => l.msg === 'login')?.tls, true);
  });

  test('a USER given before STLS does not carry over into TLS', async () => {
    const { session } = sessionContext({ tls: credentials });
    const client = session();
    await reply(client, 'USER alice');
    assert.equal((await answer(client, 'STLS')).kind, 'start-tls');
    client.tlsStarted();
    assert.equal(await reply(client, 'PASS alice-pw'), '-ERR USER first');
  });

  test('without a certificate STLS is neither offered nor done', async () => {
    const { session } = sessionContext({ tls: null });
    const client = session(OUTSIDE);
    assert.deepEqual(await capa(client), [...BASE_CAPA, 'IMPLEMENTATION mailsrv']);
    assert.equal(await reply(client, 'STLS'), '-ERR STLS not available: TLS is not configured');
  });
});

describe('TRANSACTION', () => {
  test('STAT, LIST and UIDL, all or one message', async () => {
    const { session } = sessionContext();
    const client = await loggedIn(session());
    assert.equal(await reply(client, 'STAT'), `+OK 2 ${TOTAL}`);
    assert.deepEqual(await multiline(client, 'LIST'), {
      first: `+OK 2 messages (${TOTAL} octets)`,
      lines: [`1 ${SIZES[0]}`, `2 ${SIZES[1]}`],
    });
    assert.equal(await reply(client, 'LIST 2'), `+OK 2 ${SIZES[1]}`);
    assert.deepEqual(await multiline(client, 'UIDL'), {
      first: '+OK unique-id listing follows',
      lines: ['1 uid-one', '2 uid-two'],
    });
    assert.equal(await reply(client, 'UIDL 1'), '+OK 1 uid-one');
    assert.equal(await reply(client, 'LIST 3'), '-ERR No such message (the maildrop has 2)');
    assert.equal(await reply(client, 'UIDL 0'), '-ERR No such message (the maildrop has 2)');
    assert.equal(await reply(client, 'LIST one'), '-ERR Invalid message number');
    assert.equal(await reply(client, 'LIST 1 2'), '-ERR Too many arguments');
    assert.equal(await reply(client, 'STAT 1'), '-ERR Too many arguments');
  });

  test('DELE marks, RSET unmarks, NOOP does nothing; marked messages are gone from every listing', async () => {
    const { session } = sessionContext();
    const client = await loggedIn(session());
    assert.equal(await reply(client, 'DELE 1'), '+OK message 1 deleted');
    assert.equal(await reply(client, 'DELE 1'), '-ERR Message 1 is deleted');
    assert.equal(await reply(client, 'RETR 1'), '-ERR Message 1 is deleted');
    assert.equal(await reply(client, 'STAT'), `+OK 1 ${SIZES[1]}`);
    assert.deepEqual((await multiline(client, 'LIST')).lines, [`2 ${SIZES[1]}`]);
    assert.deepEqual((await multiline(client, 'UIDL')).lines, ['2 uid-two']);
    assert.equal(await reply(client, 'DELE'), '-ERR Missing argument');
    assert.equal(await reply(client, 'NOOP'), '+OK');
    assert.equal(await reply(client, 'NOOP now'), '-ERR Too many arguments');
    assert.equal(await reply(client, 'RSET'), `+OK maildrop has 2 messages (${TOTAL} octets)`);
    assert.equal(await reply(client, 'STAT'), `+OK 2 ${TOTAL}`);
  });

  test('RETR and TOP hand the message to the connection, which reads it through the mailbox view', async () => {
    const { session } = sessionContext();
    const client = await loggedIn(session());
    const retr = await answer(client, 'RETR 1');
    assert.ok(retr.kind === 'message', JSON.stringify(retr));
    assert.equal(retr.status, `+OK ${SIZES[0]} octets`);
    assert.equal(retr.bodyLines, undefined);
    assert.equal(retr.mailbox.user, 'alice');
    const window = await retr.mailbox.openWindow();
    const whole = await retr.mailbox.wholeReply(window, retr.info, retr.status);
    assert.equal(
      whole.toString('latin1'),
      `+OK ${SIZES[0]} octets\r\nSubject: one\r\nX-UIDL: uid-one\r\n\r\nfirst body\r\n..dotted line\r\n.\r\n`,
    );
    const top = await answer(client, 'TOP 2 0');
    assert.ok(top.kind === 'message', JSON.stringify(top));
    assert.deepEqual([top.status, top.bodyLines, top.info.uidl], ['+OK top of message follows', 0, 'uid-two']);
    assert.equal(await reply(client, 'TOP 1'), '-ERR Missing argument');
    assert.equal(await reply(client, 'TOP 1 many'), '-ERR Invalid number of lines');
    assert.equal(await reply(client, 'RETR 9'), '-ERR No such message (the maildrop has 2)');
    await lastReply(client, 'QUIT', '+OK mailsrv signing off');
  });

  test('a second session for the same mailbox gets [IN-USE]; QUIT lets go of it', async () => {
    const { session, inUse, logs } = sessionContext();
    const first = await loggedIn(session());
    const second = session();
    await reply(second, 'USER alice');
    assert.equal(await reply(second, 'PASS alice-pw'), '-ERR [IN-USE] Mailbox is in use by another POP3 session');
    assert.equal(second.phase, 'authorization');
    assert.ok(logs.some((l) => l.msg === 'mailbox in use' && l.user === 'alice'));
    await lastReply(first, 'QUIT', '+OK mailsrv signing off');
    assert.equal(inUse.size, 0);
    await loggedIn(second);
  });

  // two daemons sharing the spool (README, "More than one node"): each has its own claims
  test('a session of another daemon on the same spool gets [IN-USE] until the first lets go', async () => {
    const node1 = sessionContext();
    const node2 = sessionContext();
    const first = await loggedIn(node1.session());
    assert.equal(await reply(first, 'DELE 1'), '+OK message 1 deleted');
    const lockPath = join(spoolDir, '.alice.pop3.lock');
    assert.match(await readFile(lockPath, 'latin1'), new RegExp(`^${process.pid}\\nhost `));
    const second = node2.session();
    await reply(second, 'USER alice');
    assert.equal(await reply(second, 'PASS alice-pw'), '-ERR [IN-USE] Mailbox is in use by another POP3 session');
    assert.ok(node2.logs.some((l) => l.msg === 'mailbox in use by a session on another node' && l.user === 'alice'));
    assert.equal(node2.inUse.size, 0, 'the refused session holds nothing');
    // the +OK of QUIT comes once the session lock is gone: the other daemon may log in at once
    assert.match(await reply(first, 'QUIT'), /^\+OK mailsrv signing off \(1 message deleted\)/);
    await assert.rejects(readFile(lockPath), { code: 'ENOENT' });
    await loggedIn(second);
    assert.equal((await multiline(second, 'LIST')).lines.length, 1, 'the update of the first is seen');
    await second.disconnected();
    await assert.rejects(readFile(lockPath), { code: 'ENOENT' });
  });
});

describe('the wrong phase, bad lines and limits', () => {
  test('TRANSACTION commands before login and AUTHORIZATION ones after it are refused; unknown ones too', async () => {
    const { session } = sessionContext();
    const client = session();
    for (const command of ['STAT', 'LIST', 'RETR 1', 'DELE 1', 'NOOP', 'RSET', 'TOP 1 1', 'UIDL']) {
      const keyword = command.split(' ')[0];
      assert.equal(await reply(client, command), `-ERR ${keyword} not allowed in the AUTHORIZATION state`);
    }
    await loggedIn(client);
    for (const command of ['USER alice', 'PASS x', 'AUTH PLAIN', 'STLS']) {
      const keyword = command.split(' ')[0];
      assert.equal(await reply(client, command), `-ERR ${keyword} not allowed in the TRANSACTION state`);
    }
    for (const command of ['HELO there', '', ' STAT', 'STATUS', 'RETRIEVE 1']) {
      assert.equal(await reply(client, command), '-ERR Unknown command');
    }
    assert.equal(client.phase, 'transaction');
  });

  test('an over-long line is a bad command; it ends an AUTH PLAIN continuation, not a USER', async () => {
    const { session } = sessionContext();
    const client = session();
    assert.deepEqual(client.lineTooLong(), { kind: 'line', line: '-ERR line too long' });
    await reply(client, 'AUTH PLAIN');
    assert.deepEqual(client.lineTooLong(), { kind: 'line', line: '-ERR line too long' });
    assert.equal(client.phase, 'authorization');
    assert.equal(client.maxLineLength, 255);
    await reply(client, 'USER alice');
    client.lineTooLong();
    assert.match(await reply(client, 'PASS alice-pw'), /^\+OK alice has/);
  });

  test('20 bad commands in a row close the session; a good one starts the count over', async () => {
    const { session, logs } = sessionContext();
    const client = session();
    for (let i = 0; i < 19; i++) assert.equal(await reply(client, 'BOGUS'), '-ERR Unknown command');
    await capa(client);
    for (let i = 0; i < 18; i++) await reply(client, 'STAT');
    assert.deepEqual(client.lineTooLong(), { kind: 'line', line: '-ERR line too long' });
    await lastReply(client, 'BOGUS', '-ERR Too many bad commands, closing the connection');
    assert.equal(client.lineTooLong(), null);
    assert.ok(logs.some((l) => l.msg === 'too many bad commands' && l.client === INSIDE));
  });

  test(`${MAX_LOGIN_FAILURES_PER_SESSION} failed logins close the session`, async () => {
    const { session, logs } = sessionContext();
    const client = session();
    for (let i = 1; i < MAX_LOGIN_FAILURES_PER_SESSION; i++) {
      assert.equal(await reply(client, `AUTH PLAIN ${plain('', 'alice', `wrong-${i}`)}`), AUTH_FAILED);
    }
    await reply(client, 'USER alice');
    await lastReply(client, 'PASS wrong', `${AUTH_FAILED}; too many failures, closing the connection`);
    assert.equal(logs.filter((l) => l.msg === 'login failed').length, MAX_LOGIN_FAILURES_PER_SESSION);
  });

  test('past auth.max_failures the right password logs in after its penalty', async () => {
    const { session, logs } = sessionContext({ maxFailures: 2 });
    const guesser = session();
    for (const password of ['wrong-1', 'wrong-2']) {
      await reply(guesser, 'USER alice');
      assert.equal(await reply(guesser, `PASS ${password}`), AUTH_FAILED);
    }
    await loggedIn(session());
    const delayed = logs.find((l) => l.msg === 'login after a penalty');
    assert.deepEqual([delayed?.user, delayed?.client, delayed?.penaltyMs], ['alice', INSIDE, 1]);
  });

  test('a full hashing queue: -ERR [SYS/TEMP], the session stays open and may try again', async () => {
    const { session } = sessionContext();
    // two checks hash at once, the rest wait in this address's queue
    const flood = Array.from({ length: 2 + MAX_QUEUED_CHECKS_PER_CLIENT }, async () => {
      const guesser = session();
      await reply(guesser, 'USER nobody');
      return reply(guesser, 'PASS guess');
    });
    const client = session();
    await reply(client, 'USER alice');
    assert.equal(
      await reply(client, 'PASS alice-pw'),
      '-ERR [SYS/TEMP] Too many logins in progress from your address, try again later',
    );
    assert.ok((await Promise.all(flood)).every((line) => line === AUTH_FAILED));
    await loggedIn(client);
  });
});

describe('QUIT and the end of a session', () => {
  test('QUIT before login, and after USER, only closes', async () => {
    const { session } = sessionContext();
    await lastReply(session(), 'QUIT', '+OK mailsrv signing off');
    const named = session();
    await reply(named, 'USER alice');
    await lastReply(named, 'QUIT', '+OK mailsrv signing off');
  });

  test('QUIT without DELE leaves the mailbox as it was', async () => {
    const { session, inUse } = sessionContext();
    const before = await readFile(join(spoolDir, 'alice'));
    const client = await loggedIn(session());
    await lastReply(client, 'QUIT', '+OK mailsrv signing off');
    assert.equal(client.updating, null);
    assert.deepEqual(await readFile(join(spoolDir, 'alice')), before);
    assert.equal(inUse.size, 0);
  });

  test('QUIT after DELE removes the marked messages (UPDATE), then lets go of the mailbox', async () => {
    const { session, inUse, logs } = sessionContext();
    const client = await loggedIn(session());
    await reply(client, 'DELE 1');
    const quit = client.handle('QUIT');
    assert.equal(client.phase, 'update');
    assert.notEqual(client.updating, null);
    assert.equal(await reply(client, 'NOOP'), '-ERR NOOP not allowed in the UPDATE state');
    assert.deepEqual(await quit, {
      kind: 'line',
      line: '+OK mailsrv signing off (1 message deleted)',
      close: true,
    });
    assert.equal(client.phase, 'closed');
    const left = await readFile(join(spoolDir, 'alice'), 'latin1');
    assert.ok(!left.includes('Subject: one') && left.includes('Subject: two'), left);
    assert.equal(inUse.size, 0);
    assert.ok(logs.some((l) => l.msg === 'mailbox updated' && l.user === 'alice' && l.removed === 1));
    const next = await loggedIn(session());
    assert.equal(await reply(next, 'STAT'), `+OK 1 ${SIZES[1]}`);
  });

  test('a connection dropped in TRANSACTION deletes nothing, is logged and lets go of the mailbox', async () => {
    const { session, inUse, logs } = sessionContext();
    const before = await readFile(join(spoolDir, 'alice'));
    const client = await loggedIn(session());
    await reply(client, 'DELE 2');
    await client.disconnected();
    assert.equal(client.phase, 'closed');
    assert.equal(inUse.size, 0);
    const dropped = logs.find((l) => l.msg === 'connection dropped without QUIT: nothing deleted');
    assert.deepEqual([dropped?.user, dropped?.marked], ['alice', 1]);
    assert.deepEqual(await readFile(join(spoolDir, 'alice')), before);
  });

  test('a stopped connection (autologout, server stop) is not "dropped"; its mailbox goes at close', async () => {
    const { session, inUse, logs } = sessionContext();
    const client = await loggedIn(session());
    client.stop();
    assert.equal(client.phase, 'closed');
    assert.equal(await client.handle('STAT'), null);
    assert.equal(inUse.holderOf('alice'), client, 'held until the connection is closed');
    await client.disconnected();
    assert.equal(inUse.size, 0);
    assert.ok(!logs.some((l) => l.msg.startsWith('connection dropped')));
  });

  test('a login still being checked when the connection stops neither opens the mailbox nor is logged', async () => {
    const { session, inUse, logs } = sessionContext();
    const client = session();
    await reply(client, 'USER alice');
    const pending = client.handle('PASS wrong');
    client.stop();
    assert.equal(await pending, null);
    const right = session();
    await reply(right, 'USER alice');
    const opening = right.handle('PASS alice-pw');
    right.stop();
    assert.equal(await opening, null);
    await right.disconnected();
    assert.equal(inUse.size, 0);
    assert.ok(!logs.some((l) => l.msg === 'login failed' || l.msg === 'login'), JSON.stringify(logs));
  });
});

describe('hostile input (property)', () => {
  // Command lines as a client might send them, good and bad: every keyword with random
  // arguments, AUTH PLAIN payloads, and raw strings with NUL, controls and 8-bit bytes.
  const keyword = fc.constantFrom(
    ...[...new Set([...'USER PASS AUTH CAPA STLS QUIT STAT LIST RETR DELE NOOP RSET TOP UIDL APOP'.split(' ')])],
  );
  const argument = fc.oneof(
    fc.constantFrom('alice', 'bob', 'alice-pw', 'PLAIN', '1', '2', '0', '-1', '99999999999', '', 'x'),
    fc.nat({ max: 5 }).map(String),
    fc.string({ maxLength: 20 }),
    fc.constant(plain('', 'alice', 'alice-pw')),
  );
  const commandLine = fc.oneof(
    fc
      .tuple(keyword, fc.array(argument, { maxLength: 3 }), fc.boolean())
      .map(([word, args, lower]) => [lower ? word.toLowerCase() : word, ...args].join(' ')),
    fc.string({ maxLength: 40, unit: 'binary' }),
    fc.uint8Array({ maxLength: 40 }).map((bytes) => Buffer.from(bytes).toString('latin1')),
  );

  /** A line the wire may carry: no CR, LF or NUL inside. */
  const wireSafe = (text: string) => !/[\r\n\0]/.test(text);

  test('any command stream: answers are RFC-shaped, nothing throws, only QUIT changes the mailbox', async () => {
    const original = await readFile(join(spoolDir, 'alice'));
    await fc.assert(
      fc.asyncProperty(fc.array(commandLine, { maxLength: 30 }), async (lines) => {
        await writeFile(join(spoolDir, 'alice'), original);
        const { session, inUse } = sessionContext();
        const client = session();
        let quitInTransaction = false;
        for (const text of lines) {
          const phase = client.phase;
          const response = await client.handle(text);
          if (response === null) {
            assert.equal(client.phase, 'closed', 'only a closed session gives no answer');
            continue;
          }
          if (phase === 'transaction' && text.trim().toUpperCase() === 'QUIT') quitInTransaction = true;
          switch (response.kind) {
            case 'line':
              assert.match(response.line, /^(\+OK|-ERR|\+ )/, `answer to ${JSON.stringify(text)}`);
              assert.ok(wireSafe(response.line), `one line: ${JSON.stringify(response.line)}`);
              break;
            case 'lines':
              assert.match(response.first, /^\+OK/);
              for (const each of response.lines) assert.ok(wireSafe(each), `list line ${JSON.stringify(each)}`);
              break;
            case 'message':
              assert.match(response.status, /^\+OK/);
              break;
            case 'start-tls':
              assert.fail('STLS is not offered without TLS credentials');
          }
        }
        await client.disconnected();
        assert.equal(inUse.size, 0, 'the mailbox is let go');
        if (!quitInTransaction) assert.deepEqual(await readFile(join(spoolDir, 'alice')), original);
      }),
      { numRuns: 150 },
    );
  });
});
