// src/relay/smtp-client.ts against real SMTP sinks (smtp-server) on 127.0.0.1: trying the
// addresses in order, one transaction for many recipients with an outcome for each, the
// message on the wire (CRLF, dot-stuffed, streamed), SIZE and SMTPUTF8, the TLS policies,
// relayhost AUTH, and the timeouts. Every test also checks that no connection is left open.
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Readable, Writable } from 'node:stream';
import { after, afterEach, describe, it } from 'node:test';
import { pino } from 'pino';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import type { Destination } from '../../src/relay/destinations.js';
import { describeStatus, isDelivered } from '../../src/message/status.js';
import { sendToDestination, type OutboundMessage, type SmtpClientSettings } from '../../src/relay/smtp-client.js';
import { generateSelfSigned } from '../../src/tls/selfsigned.js';
import { eventually } from '../support/wait.js';

interface Received {
  from: string;
  to: string[];
  data: Buffer;
  secure: boolean;
  mailArgs: unknown;
}

interface SinkBehaviour {
  /** RCPT replies by local part: [code, text] (smtp-server adds the enhanced status) */
  rcpt?: Record<string, [number, string]>;
  /** refuse MAIL FROM */
  mail?: [number, string];
  /** the reply at the end of data; 'never': no reply at all */
  data?: [number, string] | 'never';
}

interface Sink {
  port: number;
  server: SMTPServer;
  received: Received[];
  /** MAIL FROM commands seen */
  mails: number;
  connections: number;
  auths: { user: string; secure: boolean }[];
  bytes: number;
}

const sinks: Sink[] = [];
const rawServers: Server[] = [];
const tempDirs: string[] = [];
const tls = await generateSelfSigned('mx.remote.test');

function replyError(code: number, text: string): Error {
  return Object.assign(new Error(text), { responseCode: code });
}

async function startSink(
  behaviour: SinkBehaviour = {},
  options: Partial<SMTPServerOptions> = {},
  host = '127.0.0.1',
): Promise<Sink> {
  const sink: Sink = {
    port: 0,
    server: undefined as unknown as SMTPServer,
    received: [],
    mails: 0,
    connections: 0,
    auths: [],
    bytes: 0,
  };
  sink.server = new SMTPServer({
    logger: false,
    disableReverseLookup: true,
    hideENHANCEDSTATUSCODES: false,
    authOptional: true,
    key: tls.key,
    cert: tls.cert,
    onConnect(_session, callback) {
      sink.connections += 1;
      callback();
    },
    onAuth(auth, session, callback) {
      sink.auths.push({ user: auth.username ?? '', secure: session.secure });
      if (auth.username === 'relayuser' && auth.password === 'relay secret') callback(null, { user: auth.username });
      else callback(replyError(535, 'Authentication credentials invalid'));
    },
    onMailFrom(_address, _session, callback) {
      sink.mails += 1;
      callback(behaviour.mail ? replyError(...behaviour.mail) : null);
    },
    onRcptTo(address, _session, callback) {
      const reply = behaviour.rcpt?.[address.address.split('@')[0]!];
      callback(reply ? replyError(...reply) : null);
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => {
        sink.bytes += chunk.length;
        chunks.push(chunk);
      });
      stream.on('end', () => {
        if (behaviour.data === 'never') return;
        sink.received.push({
          from: session.envelope.mailFrom === false ? '(none)' : session.envelope.mailFrom.address,
          to: session.envelope.rcptTo.map((rcpt) => rcpt.address),
          data: Buffer.concat(chunks),
          secure: session.secure,
          mailArgs: session.envelope.mailFrom === false ? null : session.envelope.mailFrom.args,
        });
        callback(behaviour.data ? replyError(...behaviour.data) : null);
      });
    },
    ...options,
  });
  sink.server.on('error', () => undefined);
  await new Promise<void>((resolve) => sink.server.listen(0, host, () => resolve()));
  sink.port = (sink.server.server.address() as AddressInfo).port;
  sinks.push(sink);
  return sink;
}

/** A TCP server that accepts connections and never says a word. */
async function startMute(): Promise<{ port: number; open: () => number }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
  });
  rawServers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { port: (server.address() as AddressInfo).port, open: () => sockets.size };
}

/**
 * A server that takes one message, then holds its answer to QUIT until `answerQuit`: `quit` is
 * "held" while the client waits for it, "dropped" once the client closed its side without it.
 */
async function startQuitHolder(): Promise<{
  port: number;
  quit: () => 'none' | 'held' | 'dropped';
  answerQuit: () => void;
}> {
  let held: Socket | null = null;
  let quit: 'none' | 'held' | 'dropped' = 'none';
  const server = createServer((socket) => {
    socket.on('error', () => undefined);
    const dropped = () => {
      if (held === socket) [held, quit] = [null, 'dropped'];
    };
    socket.on('end', dropped);
    socket.on('close', dropped);
    let inData = false;
    let buffered = '';
    socket.write('220 holder ESMTP\r\n');
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      for (let end = buffered.indexOf('\r\n'); end >= 0; end = buffered.indexOf('\r\n')) {
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        if (inData) {
          inData = line !== '.';
          if (!inData) socket.write('250 2.0.0 taken\r\n');
        } else if (/^QUIT/i.test(line)) {
          [held, quit] = [socket, 'held'];
        } else {
          inData = /^DATA/i.test(line);
          socket.write(inData ? '354 go on\r\n' : '250 ok\r\n');
        }
      }
    });
  });
  rawServers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as AddressInfo).port,
    quit: () => quit,
    answerQuit: () => held?.end('221 2.0.0 bye\r\n'),
  };
}

/** A port on 127.0.0.1 with nothing listening. */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const until = (condition: () => boolean, what: string) => eventually(condition, 10_000, what, 20);

const at = (port: number, host = 'mx.remote.test', address = '127.0.0.1'): Destination => ({ host, address, port });

const settings = (more: Partial<SmtpClientSettings> = {}): SmtpClientSettings => ({
  hostname: 'client.example.org',
  tlsSecurity: 'may',
  auth: null,
  connectTimeoutMs: 3000,
  timeoutMs: 3000,
  ...more,
});

function message(
  recipients: string[],
  text = 'Subject: test\r\n\r\nHello.\r\n',
  sender = 'sender@example.org',
): OutboundMessage {
  return { sender, recipients, size: Buffer.byteLength(text), openMessage: () => Readable.from([Buffer.from(text)]) };
}

/**
 * A result as these tests read it: sent, bounced or deferred, the reply (the server's, or
 * mailsrv's own with its code) and the enhanced code.
 */
async function send(...args: Parameters<typeof sendToDestination>) {
  const report = await sendToDestination(...args);
  await report.ended;
  const results = report.results.map(({ recipient, status, remote }) => ({
    recipient,
    status: isDelivered(status) ? 'sent' : status.permanent ? 'bounced' : 'deferred',
    reply: describeStatus(status),
    enhancedStatus: status.code,
    remote,
  }));
  return { relay: report.relay, results };
}

const statuses = (report: { results: { recipient: string; status: string }[] }) =>
  Object.fromEntries(report.results.map((r) => [r.recipient, r.status]));

describe('relay smtp client', () => {
  afterEach(async () => {
    // no session may outlive sendToDestination by more than the closing handshake
    for (const sink of sinks)
      await until(() => sink.server.connections.size === 0, `connections to sink ${sink.port} closed`);
    await Promise.all(
      sinks.splice(0).map((sink) => new Promise<void>((resolve) => sink.server.close(() => resolve()))),
    );
  });
  after(async () => {
    for (const server of rawServers) server.close();
    for (const dir of tempDirs) await rm(dir, { recursive: true, force: true });
  });

  it('carries all recipients over one connection and reports each one', async () => {
    const sink = await startSink({
      rcpt: { unknown: [550, '<unknown@remote.test>: User unknown'], busy: [451, 'Mailbox busy, try later'] },
    });
    const recipients = ['alice@remote.test', 'unknown@remote.test', 'busy@remote.test', 'bob@remote.test'];
    const report = await send([at(sink.port)], message(recipients), settings());
    assert.equal(report.relay, `mx.remote.test[127.0.0.1]:${sink.port}`);
    assert.deepEqual(statuses(report), {
      'alice@remote.test': 'sent',
      'unknown@remote.test': 'bounced',
      'busy@remote.test': 'deferred',
      'bob@remote.test': 'sent',
    });
    const [alice, unknown, busy] = report.results;
    assert.match(alice!.reply, /^250 2\.\d\.\d /);
    assert.equal(unknown!.reply, '550 5.1.1 <unknown@remote.test>: User unknown');
    assert.equal(unknown!.enhancedStatus, '5.1.1');
    assert.deepEqual(unknown!.remote, at(sink.port));
    assert.match(busy!.reply, /^451 4\.\d\.\d Mailbox busy, try later$/);
    assert.equal(busy!.enhancedStatus[0], '4');
    assert.equal(sink.connections, 1);
    assert.equal(sink.received.length, 1);
    assert.deepEqual(sink.received[0]!.to, ['alice@remote.test', 'bob@remote.test']);
    assert.equal(sink.received[0]!.data.toString(), 'Subject: test\r\n\r\nHello.\r\n');
  });

  it('moves on to the next address when one refuses the connection', async () => {
    const sink = await startSink();
    const report = await send(
      [at(await deadPort(), 'mx1.remote.test'), at(sink.port, 'mx2.remote.test')],
      message(['alice@remote.test']),
      settings(),
    );
    assert.equal(report.relay, `mx2.remote.test[127.0.0.1]:${sink.port}`);
    assert.equal(report.results[0]!.status, 'sent');
    assert.equal(sink.received.length, 1);
  });

  it('defers every recipient when no address holds a session, with the failure of the last address', async () => {
    const dead = await deadPort();
    const refused = await send([at(dead)], message(['a@remote.test', 'b@remote.test']), settings());
    assert.equal(refused.relay, null);
    for (const result of refused.results) {
      assert.equal(result.status, 'deferred');
      assert.equal(result.reply, `4.4.1 connect to mx.remote.test[127.0.0.1]:${dead}: ECONNREFUSED`);
      assert.equal(result.remote, null);
    }
    // a server that refuses to talk (5xx greeting) is skipped too: the mail waits, it is not bounced
    const grumpy = await startSink({}, { onConnect: (_session, callback) => callback(replyError(554, 'go away')) });
    const report = await send(
      [at(dead, 'mx1.remote.test'), at(grumpy.port, 'mx2.remote.test')],
      message(['a@remote.test']),
      settings(),
    );
    assert.equal(report.relay, null);
    assert.equal(report.results[0]!.status, 'deferred');
    assert.match(report.results[0]!.reply, /^554 .*go away/);
    assert.equal(report.results[0]!.enhancedStatus[0], '4');
    assert.equal(report.results[0]!.remote?.host, 'mx2.remote.test');
  });

  it('bounces the accepted recipients on a 5xx at the end of data; refused ones keep their own reply', async () => {
    const rcpt: SinkBehaviour['rcpt'] = { unknown: [550, '<unknown@remote.test>: User unknown'] };
    const rejecting = await startSink({ rcpt, data: [554, 'Message content rejected'] });
    const bounced = await send([at(rejecting.port)], message(['alice@remote.test', 'unknown@remote.test']), settings());
    assert.deepEqual(statuses(bounced), { 'alice@remote.test': 'bounced', 'unknown@remote.test': 'bounced' });
    assert.match(bounced.results[0]!.reply, /^554 5\.\d\.\d Message content rejected$/);
    assert.equal(bounced.results[1]!.reply, '550 5.1.1 <unknown@remote.test>: User unknown');
    // a 4xx at the end of data defers the accepted recipients only
    const busy = await startSink({ rcpt, data: [451, 'Local problem, try later'] });
    const deferred = await send([at(busy.port)], message(['alice@remote.test', 'unknown@remote.test']), settings());
    assert.deepEqual(statuses(deferred), { 'alice@remote.test': 'deferred', 'unknown@remote.test': 'bounced' });
    assert.match(deferred.results[0]!.reply, /^451 .*Local problem, try later$/);
  });

  it('sends no message when every recipient is refused, and bounces everyone when the sender is', async () => {
    const sink = await startSink({ rcpt: { unknown: [550, 'User unknown'], busy: [450, 'Busy'] } });
    const report = await send([at(sink.port)], message(['unknown@remote.test', 'busy@remote.test']), settings());
    assert.deepEqual(statuses(report), { 'unknown@remote.test': 'bounced', 'busy@remote.test': 'deferred' });
    assert.equal(sink.received.length, 0);
    const refusing = await startSink({ mail: [553, 'Sender address rejected'] });
    const refused = await send([at(refusing.port)], message(['a@remote.test', 'b@remote.test']), settings());
    assert.deepEqual(statuses(refused), { 'a@remote.test': 'bounced', 'b@remote.test': 'bounced' });
    for (const result of refused.results) assert.match(result.reply, /^553 .*Sender address rejected$/);
    assert.equal(refusing.received.length, 0);
  });

  it('puts a LF-only message on the wire with CRLF and dot-stuffing, from the null sender', async () => {
    const sink = await startSink();
    const text = 'Subject: dots\n\n.leading dot\n..two dots\n.\nlast line\n';
    const report = await send([at(sink.port)], message(['alice@remote.test'], text, ''), settings());
    assert.equal(report.results[0]!.status, 'sent');
    // smtp-server un-stuffs: an unstuffed "." line would have ended the data, "..two" would have lost a dot
    assert.equal(sink.received[0]!.data.toString(), text.replaceAll('\n', '\r\n'));
    assert.equal(sink.received[0]!.from, '');
    assert.deepEqual(sink.received[0]!.mailArgs, { BODY: '8BITMIME' });
  });

  it('bounces a message over the server SIZE limit without starting a transaction', async () => {
    const sink = await startSink({}, { size: 100 });
    const big = message(['a@remote.test', 'b@remote.test'], `Subject: big\r\n\r\n${'x'.repeat(500)}\r\n`);
    const report = await send([at(sink.port)], big, settings());
    for (const result of report.results) {
      assert.equal(result.status, 'bounced');
      assert.equal(result.enhancedStatus, '5.3.4');
      assert.equal(
        result.reply,
        `5.3.4 message size ${big.size} exceeds the size limit 100 of mx.remote.test[127.0.0.1]:${sink.port}`,
      );
    }
    assert.equal(sink.mails, 0);
  });

  it('asks for SMTPUTF8 only when an address needs it, and bounces what a server without it cannot carry', async () => {
    const plain = await startSink({}, { hideSMTPUTF8: true });
    const report = await send([at(plain.port)], message(['ascii@remote.test', 'jürgen@remote.test']), settings());
    assert.deepEqual(statuses(report), { 'ascii@remote.test': 'sent', 'jürgen@remote.test': 'bounced' });
    assert.equal(report.results[1]!.enhancedStatus, '5.6.7');
    assert.match(report.results[1]!.reply, /does not support SMTPUTF8, which the address jürgen@remote\.test needs$/);
    assert.deepEqual(plain.received[0]!.to, ['ascii@remote.test']);
    assert.deepEqual(plain.received[0]!.mailArgs, { BODY: '8BITMIME' });
    const modern = await startSink();
    const both = await send([at(modern.port)], message(['ascii@remote.test', 'jürgen@remote.test']), settings());
    assert.deepEqual(statuses(both), { 'ascii@remote.test': 'sent', 'jürgen@remote.test': 'sent' });
    assert.deepEqual(modern.received[0]!.mailArgs, { SMTPUTF8: true, BODY: '8BITMIME' });
  });

  it('tls_security = may: STARTTLS whenever offered, whatever the certificate', async () => {
    const sink = await startSink();
    const report = await send([at(sink.port)], message(['alice@remote.test']), settings());
    assert.equal(report.results[0]!.status, 'sent');
    assert.equal(sink.received[0]!.secure, true);
  });

  it('tls_security = may: a failed TLS handshake is retried without TLS', async () => {
    // an RSA-only cipher with an EC certificate: no handshake can succeed
    const sink = await startSink({}, { maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA' } as Partial<SMTPServerOptions>);
    const report = await send([at(sink.port)], message(['alice@remote.test']), settings());
    assert.equal(report.results[0]!.status, 'sent');
    assert.equal(sink.received[0]!.secure, false);
    assert.equal(sink.connections, 2);
  });

  it('tls_security = encrypt: defers when the server offers no STARTTLS, sends when it does', async () => {
    const plain = await startSink({}, { disabledCommands: ['STARTTLS'] });
    const report = await send([at(plain.port)], message(['alice@remote.test']), settings({ tlsSecurity: 'encrypt' }));
    assert.equal(report.results[0]!.status, 'deferred');
    assert.equal(report.results[0]!.reply, `4.7.4 TLS not offered by mx.remote.test[127.0.0.1]:${plain.port}`);
    assert.equal(plain.mails, 0);
    const secure = await startSink();
    const sent = await send([at(secure.port)], message(['alice@remote.test']), settings({ tlsSecurity: 'encrypt' }));
    assert.equal(sent.results[0]!.status, 'sent');
    assert.equal(secure.received[0]!.secure, true);
  });

  it('tls_security = verify: a self-signed certificate defers, with no fallback to plaintext', async () => {
    const sink = await startSink();
    const report = await send([at(sink.port)], message(['alice@remote.test']), settings({ tlsSecurity: 'verify' }));
    assert.equal(report.results[0]!.status, 'deferred');
    assert.equal(report.results[0]!.enhancedStatus, '4.7.5');
    assert.match(
      report.results[0]!.reply,
      /^4\.7\.5 TLS with mx\.remote\.test\[127\.0\.0\.1\]:\d+ failed: self[- ]signed certificate/,
    );
    assert.equal(sink.mails, 0);
    assert.equal(sink.connections, 1);
  });

  it('logs in to the relayhost over STARTTLS, never logging the password', async () => {
    const sink = await startSink({}, { authOptional: false });
    const lines: string[] = [];
    const protocolLogger = pino(
      { level: 'debug' },
      new Writable({
        write: (chunk: Buffer, _encoding, done) => {
          lines.push(chunk.toString());
          done();
        },
      }),
    );
    const auth = { user: 'relayuser', pass: 'relay secret' };
    const report = await send(
      [at(sink.port, 'relay.example.org')],
      message(['alice@remote.test']),
      settings({ auth, protocolLogger }),
    );
    assert.equal(report.results[0]!.status, 'sent');
    assert.deepEqual(sink.auths, [{ user: 'relayuser', secure: true }]);
    const log = lines.join('');
    assert.match(log, /RCPT TO:<alice@remote\.test>/);
    assert.doesNotMatch(log, /relay secret/);
    assert.doesNotMatch(log, new RegExp(Buffer.from('\0relayuser\0relay secret').toString('base64')));
    // refused credentials: this server is skipped, the mail waits
    const wrong = await send(
      [at(sink.port, 'relay.example.org')],
      message(['alice@remote.test']),
      settings({ auth: { user: 'relayuser', pass: 'wrong' } }),
    );
    assert.equal(wrong.relay, null);
    assert.equal(wrong.results[0]!.status, 'deferred');
    assert.match(wrong.results[0]!.reply, /^535 .*Authentication credentials invalid$/);
    assert.equal(sink.received.length, 1);
  });

  it('sends the relayhost password without TLS only to a loopback address', async (t) => {
    const external = Object.values(networkInterfaces())
      .flat()
      .find((address) => address && address.family === 'IPv4' && !address.internal);
    const options: Partial<SMTPServerOptions> = {
      disabledCommands: ['STARTTLS'],
      allowInsecureAuth: true,
      authOptional: false,
    };
    const auth = { user: 'relayuser', pass: 'relay secret' };
    const loopback = await startSink({}, options);
    const local = await send([at(loopback.port)], message(['alice@remote.test']), settings({ auth }));
    assert.equal(local.results[0]!.status, 'sent');
    assert.deepEqual(loopback.auths, [{ user: 'relayuser', secure: false }]);
    if (!external) {
      t.skip('no non-loopback IPv4 address on this machine');
      return;
    }
    const remote = await startSink({}, options, external.address);
    const report = await send(
      [at(remote.port, 'relay.example.org', external.address)],
      message(['alice@remote.test']),
      settings({ auth }),
    );
    assert.equal(report.results[0]!.status, 'deferred');
    assert.equal(
      report.results[0]!.reply,
      `4.7.4 not sending the relayhost password to relay.example.org[${external.address}]:${remote.port} without TLS`,
    );
    assert.deepEqual(remote.auths, []);
  });

  it('streams a 20 MB message from disk without holding it in memory', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mailsrv-relay-'));
    tempDirs.push(dir);
    const path = join(dir, 'message');
    const line = `${'x'.repeat(98)}\n`;
    const size = 20 * 1024 * 1024;
    await writeFile(path, `Subject: big\n\n${line.repeat(Math.floor(size / line.length))}`);
    // the sink runs in its own process: only the sender's memory is measured here
    const sink = fork(fileURLToPath(new URL('../support/counting-sink.ts', import.meta.url)), {
      execArgv: ['--import', 'tsx'],
    });
    try {
      const messages: { port?: number; bytes?: number }[] = [];
      sink.on('message', (m: { port?: number; bytes?: number }) => messages.push(m));
      await until(() => messages.some((m) => m.port !== undefined), 'the sink listening');
      const port = messages.find((m) => m.port !== undefined)!.port!;
      const before = process.memoryUsage().rss;
      let peak = before;
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
      const big: OutboundMessage = {
        sender: 'sender@example.org',
        recipients: ['alice@remote.test'],
        size,
        openMessage: () => createReadStream(path),
      };
      const report = await send([at(port)], big, settings({ tlsSecurity: 'may' }));
      clearInterval(sampler);
      assert.equal(report.results[0]!.status, 'sent');
      await until(() => messages.some((m) => m.bytes !== undefined), 'the sink counting the message');
      // every LF became CRLF on the way; a copy held in memory would have grown RSS by the size or more
      // (the streamed pieces' dead buffers, freed only when a collection finds them, grew it by up to
      // ~10 MB on Node 24)
      assert.ok(messages.find((m) => m.bytes !== undefined)!.bytes! > size, 'the whole message arrived');
      assert.ok(peak - before < size * 0.75, `RSS grew by ${Math.round((peak - before) / 1048576)} MB`);
    } finally {
      sink.kill();
    }
  });

  // each timeout below is the only short one: were another in charge, the test would run into its own limit
  it('gives up on a server that never greets after connect_timeout', { timeout: 60_000 }, async () => {
    const mute = await startMute();
    const started = Date.now();
    const report = await send(
      [at(mute.port)],
      message(['alice@remote.test']),
      settings({ connectTimeoutMs: 300, timeoutMs: 600_000 }),
    );
    const took = Date.now() - started;
    assert.equal(report.results[0]!.status, 'deferred');
    assert.equal(
      report.results[0]!.reply,
      `4.4.2 timed out waiting for the greeting of mx.remote.test[127.0.0.1]:${mute.port}`,
    );
    // at least half of it: a timer may end a little early by the clock read here
    assert.ok(took >= 150, `gave up after ${took} ms, long before connect_timeout`);
    await until(() => mute.open() === 0, 'the mute connection closed');
  });

  it('gives up on a server that never answers the end of data after timeout', { timeout: 60_000 }, async () => {
    const sink = await startSink({ data: 'never' });
    const report = await send(
      [at(sink.port)],
      message(['alice@remote.test', 'bob@remote.test']),
      settings({ timeoutMs: 400, connectTimeoutMs: 600_000 }),
    );
    for (const result of report.results) {
      assert.equal(result.status, 'deferred');
      assert.equal(result.reply, `4.4.2 timed out waiting for a reply from mx.remote.test[127.0.0.1]:${sink.port}`);
    }
  });

  it('reports what the server took before its answer to QUIT, and ends the session after', async () => {
    const holder = await startQuitHolder();
    let reported = false;
    const sending = sendToDestination([at(holder.port)], message(['alice@remote.test']), settings());
    void sending.then(() => (reported = true));
    await until(() => holder.quit() !== 'none', 'the QUIT');
    assert.ok(reported, 'the outcome came before the QUIT was answered');
    assert.equal(holder.quit(), 'held');
    holder.answerQuit();
    const report = await sending;
    assert.ok(isDelivered(report.results[0]!.status), describeStatus(report.results[0]!.status));
    await report.ended;
  });

  it('defers when the queued message cannot be read, and drops the session', async () => {
    const sink = await startSink();
    const unreadable: OutboundMessage = {
      ...message(['alice@remote.test']),
      openMessage: () => createReadStream('/nonexistent/mailsrv-queue-file'),
    };
    const report = await send([at(sink.port)], unreadable, settings());
    assert.equal(report.results[0]!.status, 'deferred');
    assert.match(report.results[0]!.reply, /^4\.3\.0 cannot read the queued message: .*ENOENT/);
    assert.equal(sink.received.length, 0);
  });
});
