// The CLI's table of command files: each file defines exactly the commands the table names
// (so `mailsrv NAME` loads the right one), and a line naming no command loads every file.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Command } from 'commander';
import { COMMAND_FILES, commandFilesFor } from '../../src/cli/commands.js';

test('each command file registers exactly the commands listed for it', async () => {
  for (const file of COMMAND_FILES) {
    const program = new Command('mailsrv');
    (await file.load())(program, ['node', 'mailsrv']);
    assert.deepEqual(
      program.commands.map((command) => command.name()),
      file.names,
    );
  }
});

test('a command line loads its command file only; --version none; help, no command or an unknown one all', () => {
  assert.deepEqual(commandFilesFor('sendmail'), [COMMAND_FILES.find((file) => file.names.includes('sendmail'))]);
  assert.deepEqual(
    commandFilesFor('stop').map((file) => file.names),
    [['status', 'stop']],
  );
  for (const command of ['--version', '-V']) assert.deepEqual(commandFilesFor(command), []);
  for (const command of [undefined, '--help', 'help', 'no-such-command'])
    assert.equal(commandFilesFor(command), COMMAND_FILES);
});
