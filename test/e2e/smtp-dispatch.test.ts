// mailsrv dispatches the commands every message takes itself (src/smtp/connection.ts,
// dispatchMessageCommand) unless one of smtp-server's checks applies; with the protocol log on,
// smtp-server dispatches every command. The same dialogue, in and out of order, in any case,
// must get the same replies both ways.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DOMAIN, envForTest, smtpDialog } from './harness.js';

const DIALOGUE = [
  'MAIL FROM:<a@client.test>',
  'data',
  'QUITE',
  'helo client.test',
  `RCPT TO:<alice@${DOMAIN}>`,
  'DATA',
  'mail from:<a@client.test>',
  'MAIL FROM:<a@client.test>',
  `rcpt to:<nobody@${DOMAIN}>`,
  `RCPT TO:<alice@${DOMAIN}>`,
  'MAIL',
  'EHLO client.test',
  'DATA',
  'MAIL FROM:<a@client.test> FOO=BAR',
  'Mail From:<a@client.test>',
  `rCpT To:<bob@${DOMAIN}>`,
  'HELO',
  'QUIT',
];

async function replies(t: Parameters<typeof envForTest>[0], level: 'info' | 'debug'): Promise<string[]> {
  const { start, env } = await envForTest(t, { config: { log: { level } } });
  await start();
  return (await smtpDialog(env.port, DIALOGUE)).map((reply) => reply.raw);
}

test('the commands of a message get the same replies whoever dispatches them', async (t) => {
  const ours = await replies(t, 'info');
  const smtpServers = await replies(t, 'debug');
  assert.deepEqual(ours, smtpServers);
  // and the dialogue went as smtp-server's rules say: refused before HELO, then in order
  assert.deepEqual(
    ours.map((raw) => Number(raw.slice(0, 3))),
    [220, 503, 503, 500, 250, 503, 503, 250, 503, 550, 250, 501, 250, 503, 555, 250, 250, 501, 221],
  );
});
