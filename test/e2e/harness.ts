// End-to-end test harness: builds a throw-away environment (config, users, aliases, spool
// and state directories), starts the real daemon from dist/ (`node bin/mailsrv start`),
// follows its JSON log, and talks to it over raw sockets and with Python's `mailbox`.
// Every daemon started here is killed when the test process exits, whatever happens.
// The parts live in harness/; test files import them all from here.
export * from './harness/constants.js';
export * from './harness/daemon.js';
export * from './harness/env.js';
export * from './harness/init-config.js';
export * from './harness/mbox-reader.js';
export * from './harness/net.js';
export * from './harness/pop3-client.js';
export * from './harness/smtp-client.js';
export * from './harness/text.js';
export * from './harness/tls.js';
export { eventually, sleep, withTimeout } from '../support/wait.js';
