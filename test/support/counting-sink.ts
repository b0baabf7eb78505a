// An SMTP sink in a process of its own (fork this file): accepts every message, keeps only the
// byte count, and reports its port, then each message's size, over IPC. Memory tests of a
// sender use it, so the receiver's buffers do not count in the sender's RSS.
import { SMTPServer } from 'smtp-server';

const server = new SMTPServer({
  authOptional: true,
  disabledCommands: ['AUTH', 'STARTTLS'],
  logger: false,
  onData(stream, _session, callback) {
    let bytes = 0;
    stream.on('data', (chunk: Buffer) => (bytes += chunk.length));
    stream.on('end', () => {
      process.send!({ bytes });
      callback();
    });
  },
});
server.listen(0, '127.0.0.1', () => process.send!({ port: (server.server.address() as { port: number }).port }));
process.on('disconnect', () => process.exit(0));
