// The smtp-server internals src/smtp/connection.ts overrides or reads, checked on a live
// session: when an upgrade of the pinned smtp-server renames or reshapes one, this fails
// naming the member instead of the daemon misbehaving quietly. It also checks which commands
// MailsrvConnection dispatches itself (they skip smtp-server's _onCommand).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createConnection, type AddressInfo } from 'node:net';
import { test } from 'node:test';
import { pino } from 'pino';
import { SMTPConnection, socketTimeout } from 'smtp-server/lib/smtp-connection.js';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { ConnectionLimits } from '../../src/net/connection-limits.js';
import { MailsrvSMTPServer, type MailsrvServerOptions } from '../../src/smtp/connection.js';
import { crlfLineReader } from '../support/crlf-lines.js';

/** The last line of a (possibly multi-line) reply. */
async function reply(next: () => Promise<string>): Promise<string> {
  for (;;) {
    const line = await next();
    if (line[3] !== '-') return line;
  }
}

/** Connection limits no test session reaches. */
function testLimits(): ConnectionLimits {
  return new ConnectionLimits(
    'smtp',
    { maxClients: 10, maxPerAddress: 10, exempt: () => false },
    pino({ level: 'silent' }),
  );
}

/** A MailsrvSMTPServer on a free loopback port, closed when the test ends. */
async function listeningServer(
  t: { after: (fn: () => Promise<void>) => void },
  options: Pick<MailsrvServerOptions, 'limits' | 'protocolLogEnabled' | 'onData'>,
): Promise<{ server: MailsrvSMTPServer; port: number }> {
  const server = new MailsrvSMTPServer({
    tls: null,
    plaintextAuth: () => false,
    listenerName: 'mx',
    deadlineExceeded: () => undefined,
    clientBehind: async (socket) => ({ address: socket.remoteAddress!, port: socket.remotePort! }),
    authOptional: true,
    ...options,
  });
  server.listen(0, '127.0.0.1');
  await once(server.server, 'listening');
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { server, port: (server.server.address() as AddressInfo).port };
}

test('the SMTPConnection methods mailsrv overrides or calls exist with the shapes it relies on', () => {
  const proto = SMTPConnection.prototype as unknown as Record<string, unknown>;
  const expected: [string, number][] = [
    ['init', 0],
    ['_setListeners', 1],
    ['connectionReady', 1],
    ['send', 3],
    ['close', 0],
    ['_isDisabled', 1],
    ['_getHandler', 1],
    ['_isSupported', 1],
    ['_whenWritable', 1],
    ['handler_EHLO', 2],
    ['handler_AUTH', 2],
    ['handler_MAIL', 2],
    ['handler_DATA', 2],
    ['handler_QUIT', 2],
    ['_createParser', 0],
    ['_onCommand', 2],
    ['_onClose', 0],
    ['_armTimeout', 0],
    ['_onTimeout', 0],
    ['_resetSession', 0],
    ['upgrade', 2],
  ];
  for (const [name, arity] of expected) {
    assert.equal(typeof proto[name], 'function', `SMTPConnection.prototype.${name} is gone`);
    assert.equal((proto[name] as (...args: unknown[]) => unknown).length, arity, `SMTPConnection.${name} arity`);
  }
  const serverProto = MailsrvSMTPServer.prototype as unknown as Record<string, unknown>;
  for (const name of ['_onError', '_onClientConnect', 'updateSecureContext', '_upgrade', '_handleProxy']) {
    assert.equal(typeof serverProto[name], 'function', `SMTPServer.prototype.${name} is gone`);
  }
  assert.equal(socketTimeout({ socketTimeout: 1234 }), 1234, 'smtp-connection exports socketTimeout(options)');
  // src/smtp/data-feed.ts replaces the parser's _feedDataStream and uses these of its members
  const streamProto = SMTPStream.prototype as unknown as Record<string, unknown>;
  for (const [name, arity] of [
    ['_feedDataStream', 2],
    ['_countDataBytes', 1],
    ['_endDataMode', 3],
    ['startDataMode', 1],
  ] as const) {
    assert.equal(typeof streamProto[name], 'function', `SMTPStream.prototype.${name} is gone`);
    assert.equal((streamProto[name] as (...args: unknown[]) => unknown).length, arity, `SMTPStream.${name} arity`);
  }
  const parser = new SMTPStream();
  for (const field of ['_lastBytes', '_atDataStart', '_dataStream'])
    assert.ok(field in parser, `an SMTPStream has no ${field}`);
});

test('a live session carries the fields mailsrv reads, and VRFY and DATA reach its overrides', async (t) => {
  let dataStarted: (release: () => void) => void = () => undefined;
  const releaseData = new Promise<() => void>((resolve) => {
    dataStarted = resolve;
  });
  const limits = testLimits();
  const { server, port } = await listeningServer(t, {
    limits,
    protocolLogEnabled: () => false,
    onData(stream, _session, callback) {
      dataStarted(() => {
        stream.resume();
        stream.once('end', () => callback());
      });
    },
  });
  const socket = createConnection(port, '127.0.0.1');
  t.after(() => socket.destroy());
  const next = crlfLineReader(socket);
  assert.match(await reply(next), /^220 /);

  const connections = (server as unknown as { connections: Set<Record<string, unknown>> }).connections;
  assert.ok(connections instanceof Set, 'SMTPServer.connections is a Set');
  assert.equal(connections.size, 1);
  const connection = [...connections][0]!;
  assert.equal(connection._server, server, 'SMTPConnection._server');
  assert.equal(connection.secure, false, 'SMTPConnection.secure');
  assert.equal(connection.remoteAddress, '127.0.0.1', 'SMTPConnection.remoteAddress');
  assert.equal(connection._dataStream, false, 'SMTPConnection._dataStream outside DATA');
  assert.equal(connection._upgrading, false, 'SMTPConnection._upgrading');
  assert.equal(connection._closing, false, 'SMTPConnection._closing');
  assert.equal(connection._closed, false, 'SMTPConnection._closed');
  assert.equal(connection._handlerPending, false, 'SMTPConnection._handlerPending');
  assert.equal(connection._nextHandler, false, 'SMTPConnection._nextHandler (set only between AUTH lines)');
  assert.equal(typeof connection.name, 'string', 'SMTPConnection.name (the greeting host)');
  assert.equal((connection._socket as { timeout?: number }).timeout, 60_000, 'SMTPConnection._socket is the socket');
  const pending = (server as unknown as { _pendingSockets: unknown })._pendingSockets;
  assert.ok(pending instanceof Map, 'SMTPServer._pendingSockets is a Map');
  assert.equal(limits.connections, 1, 'the socket is counted before smtp-server sees it');
  const session = connection.session as { envelope?: { mailFrom?: unknown } };
  assert.equal(typeof session.envelope, 'object', 'SMTPConnection.session.envelope');
  const logger = (server as unknown as { logger: Record<string, unknown> }).logger;
  assert.equal(typeof logger.info, 'function', 'SMTPServer.logger');

  // the command and message deadlines count the bytes as smtp-server pipes them into its parser
  const parser = connection._parser as { write: (...args: unknown[]) => boolean; _dataMode: boolean };
  const parserWrite = parser.write;
  let written = 0;
  parser.write = (...args: unknown[]) => {
    written += (args[0] as Buffer).length;
    return parserWrite.apply(parser, args);
  };
  socket.write('EHLO client.test\r\n');
  const ehlo = await reply(next);
  assert.equal(written, 18, 'the socket is piped into SMTPConnection._parser (its write() sees every byte)');
  assert.match(ehlo, /^250 /);
  assert.equal(connection._ready, true, 'SMTPConnection._ready once greeted');
  assert.equal(connection.openingCommand, 'EHLO', 'SMTPConnection.openingCommand');
  assert.equal(connection.hostNameAppearsAs, 'client.test', 'SMTPConnection.hostNameAppearsAs');
  socket.write('VRFY someone\r\n');
  assert.equal(await reply(next), '252 2.0.0 Send some mail, I will try my best', 'handler_VRFY is dispatched by name');

  socket.write('MAIL FROM:<a@client.test>\r\n');
  assert.match(await reply(next), /^250 /);
  assert.ok(session.envelope?.mailFrom, 'session.envelope.mailFrom is set by MAIL');
  socket.write('RCPT TO:<b@server.test>\r\n');
  assert.match(await reply(next), /^250 /);
  socket.write('DATA\r\n');
  assert.match(await reply(next), /^354 /);
  assert.ok(connection._dataStream, 'SMTPConnection._dataStream inside DATA');
  assert.equal(parser._dataMode, true, 'SMTPStream._dataMode inside DATA');
  socket.write('Subject: x\r\n\r\nbody\r\n.\r\n');
  (await releaseData)();
  assert.match(await reply(next), /^250 /);
  assert.equal(connection._dataStream, false, 'SMTPConnection._dataStream after DATA');

  // once SMTPServer.close() has begun (its _closeTimeout set), a command is refused
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  assert.ok((server as unknown as { _closeTimeout: unknown })._closeTimeout, 'SMTPServer._closeTimeout');
  socket.write('MAIL FROM:<a@client.test>\r\n');
  assert.match(await reply(next), /^421 /, 'a command while the server closes');
  socket.destroy();
  await closed;
});

test("a message's commands skip smtp-server's _onCommand while the protocol log is off, and only then", async (t) => {
  const reachedSmtpServer: string[] = [];
  const proto = SMTPConnection.prototype as unknown as { _onCommand: (command: Buffer, ...rest: unknown[]) => void };
  const onCommand = proto._onCommand;
  proto._onCommand = function (this: unknown, command: Buffer, ...rest: unknown[]) {
    reachedSmtpServer.push(command.toString('latin1').split(' ')[0]!);
    onCommand.call(this, command, ...rest);
  };
  t.after(() => {
    proto._onCommand = onCommand;
  });
  let protocolLog = false;
  const { port } = await listeningServer(t, {
    limits: testLimits(),
    protocolLogEnabled: () => protocolLog,
    onData(stream, _session, callback) {
      stream.resume();
      stream.once('end', () => callback());
    },
  });
  const dialogue = async () => {
    const socket = createConnection(port, '127.0.0.1');
    const next = crlfLineReader(socket);
    assert.match(await reply(next), /^220 /);
    for (const line of ['EHLO client.test', 'NOOP', 'MAIL FROM:<a@client.test>', 'RCPT TO:<b@server.test>', 'RSET']) {
      socket.write(`${line}\r\n`);
      assert.match(await reply(next), /^250 /, line);
    }
    socket.write('QUIT\r\n');
    assert.match(await reply(next), /^221 /);
    socket.destroy();
  };
  await dialogue();
  assert.deepEqual(reachedSmtpServer, ['NOOP', 'RSET'], 'only the other commands went through smtp-server');
  reachedSmtpServer.length = 0;
  protocolLog = true;
  await dialogue();
  assert.deepEqual(reachedSmtpServer, ['EHLO', 'NOOP', 'MAIL', 'RCPT', 'RSET', 'QUIT'], 'with the log on, all of them');
});
