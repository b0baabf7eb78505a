// The man pages in man/ are what scripts/man-pages.ts makes from the program and the config
// schema today (`npm run man` rewrites them), groff formats them without a warning, and
// `man -l` shows every command and every config key.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Command } from 'commander';
import { COMMAND_FILES } from '../../src/cli/commands.js';
import { describeKeys } from '../../src/config/schema.js';
import { MAN_PAGES, renderManPages } from '../../scripts/man-pages.js';

const manFile = (page: string) => new URL(`../../man/${page}`, import.meta.url).pathname;

/** `man -l FILE` as plain text, 80 columns. */
function rendered(page: string): string {
  const result = spawnSync('man', ['-P', 'cat', '-l', manFile(page)], {
    encoding: 'utf8',
    env: { ...process.env, MANWIDTH: '80', LC_ALL: 'C.UTF-8' },
  });
  assert.equal(result.status, 0, result.stderr);
  return result.stdout;
}

const escapeRegex = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('the committed man pages are the generated ones (run `npm run man` after changing a command or key)', async () => {
  const pages = await renderManPages();
  for (const page of MAN_PAGES) {
    assert.equal(readFileSync(manFile(page), 'utf8'), pages[page], `man/${page} is out of date: run npm run man`);
  }
});

test('groff formats both pages without a warning', () => {
  for (const page of MAN_PAGES) {
    const result = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z', manFile(page)], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stderr, '', `groff warns about man/${page}`);
  }
});

test('mailsrv.8 shows every command with its options, the signals and the files', async () => {
  const text = rendered('mailsrv.8');
  const paths: string[] = [];
  const walk = (command: Command, prefix: string) => {
    for (const sub of command.commands) {
      paths.push(`${prefix} ${sub.name()}`);
      walk(sub, `${prefix} ${sub.name()}`);
    }
  };
  for (const file of COMMAND_FILES) {
    const program = new Command('mailsrv');
    (await file.load())(program, ['node', 'mailsrv']);
    walk(program, 'mailsrv');
  }
  assert.ok(paths.includes('mailsrv report') && paths.includes('mailsrv queue delete'), paths.join(', '));
  for (const path of paths) assert.match(text, new RegExp(`^ {3}${escapeRegex(path)}( |$)`, 'm'), path);
  for (const option of ['--since <duration>', '--svg <file>', '--password-stdin', '-c, --config <file>'])
    assert.match(text, new RegExp(`^ {7}${escapeRegex(option)}`, 'm'), option);
  for (const heading of ['SIGNALS', 'FILES', 'ENVIRONMENT']) assert.match(text, new RegExp(`^${heading}$`, 'm'));
  for (const signal of ['SIGHUP', 'SIGTERM, SIGINT', 'SIGUSR2']) assert.match(text, new RegExp(`^ {7}${signal}`, 'm'));
  assert.match(text, /^ {7}\/etc\/mailsrv\/mailsrv\.toml$/m);
});

test('mailsrv.toml.5 shows every key under its table, with its default', () => {
  const text = rendered('mailsrv.toml.5');
  let from = 0;
  for (const { key } of describeKeys()) {
    const dot = key.indexOf('.');
    if (dot > 0) {
      const table = text.indexOf(`\n   [${key.slice(0, dot)}]\n`);
      assert.ok(table >= 0, `no [${key.slice(0, dot)}] table`);
      from = Math.max(from, table);
    }
    // keys come in schema order: each after the one before, within its table
    const entry = new RegExp(`^ {7}${escapeRegex(key.slice(dot + 1))}(\\s|$)`, 'm');
    const found = entry.exec(text.slice(from));
    assert.ok(found, `${key} missing`);
    from += found.index + found[0].length;
    assert.match(text.slice(from, text.indexOf('Default:', from) + 80), /Default: \S/, `${key} has no default`);
  }
  assert.match(text, /^ {7}listen MX port: .*\n {14}Default: \["0\.0\.0\.0:25", "\[::\]:25"\]$/m);
  assert.match(text, /^ {7}hostname\n.*\n.*\n {14}Default: the system host name$/m);
});
