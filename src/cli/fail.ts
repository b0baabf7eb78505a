// How every command reports a user error: the message on stderr, exit status 1.
export function fail(message: string): never {
  process.stderr.write(`mailsrv: ${message}\n`);
  process.exit(1);
}
