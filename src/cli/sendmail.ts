// `mailsrv sendmail [-t] [-i] [-f SENDER] [-F NAME] [RECIPIENT...]`: sendmail-compatible local
// injection for cron, mail(1), git send-email and scripts. The options are read as Postfix's
// sendmail reads them (getopt: clustered flags, values glued or separate, `--`); the ones that
// make no sense here are accepted and ignored as Postfix does (-oem, -odi, -B8BITMIME, -N ...).
// The message from stdin is left in the maildrop (see src/queue/drop-dir.ts), which works for
// every local user whether or not the daemon runs; the exit status is 0 only once it is there.
import { createRequire } from 'node:module';
import { userInfo } from 'node:os';
import { Readable } from 'node:stream';
import type { Command } from 'commander';
import addressparser from 'nodemailer/lib/addressparser';
import type { Config } from '../config/schema.js';
import { rfc5322Date } from '../message/date.js';
import { isErrno } from '../fsutil.js';
import { newQueueId } from '../queue/id.js';
import { isSafeAddress, qualify } from '../message/address.js';
import { statePaths } from '../paths.js';
import { MAX_RECIPIENTS, writeDropFile } from '../queue/drop-dir.js';
import { fail } from './fail.js';
import { SubmittedMessage } from './sendmail-input.js';
import { loadConfigOrExit } from './load-config.js';

/** Postfix sendmail's options that take a value, plus -c (mailsrv's config file; Postfix ignores -c). */
const VALUE_OPTIONS = new Set('ABCFLNORVXbcefhopqr');
/** Postfix sendmail's options without a value. */
const FLAG_OPTIONS = new Set('GIUimntvx');
/** Loaded only for a -F name that must be MIME-encoded: it costs ~10 ms of every start (README "Performance"). */
const requireLazily = createRequire(import.meta.url);
/** Longest -F full name. */
const MAX_FULL_NAME = 256;

/** What `mailsrv sendmail --help` prints (also in the man page, mailsrv.8). */
export const SENDMAIL_USAGE = `usage: mailsrv sendmail [-t] [-i] [-f SENDER] [-F NAME] [-c FILE] [--] [RECIPIENT...]
Reads a message from standard input and queues it for the recipients.
  -t          also send to the addresses in the To:, Cc: and Bcc: headers (Bcc: is removed)
  -i, -oi     a line holding only "." does not end the message
  -f SENDER   envelope sender ('' or '<>': the null sender); default LOGIN@hostname
  -F NAME     full name for the From: header added when the message has none
  -c FILE     mailsrv config file (default: $MAILSRV_CONFIG or /etc/mailsrv/mailsrv.toml)
  -bp         list the queue; -q: retry the queue now; -bi, -I: nothing to do (aliases are read directly)
Other Postfix sendmail options (-oem, -odi, -B8BITMIME, -N, -v, ...) are accepted and ignored.
`;

type Mode = 'send' | 'list' | 'flush' | 'nothing';

interface SendmailArgs {
  mode: Mode;
  config?: string;
  extractRecipients: boolean;
  dotEnds: boolean;
  sender?: string;
  fullName?: string;
  recipients: string[];
}

/**
 * Registers the command. commander would strip a leading `--` and knows nothing of getopt
 * clusters, so the action reads the arguments itself from `argv` (what main.ts parses).
 */
export function registerSendmailCommand(program: Command, argv: string[]): void {
  program
    .command('sendmail')
    .description(
      'sendmail-compatible local injection: queues the message on stdin (options: `mailsrv sendmail --help`)',
    )
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[RECIPIENT...]')
    .action(async () => {
      await sendmail(argv.slice(argv.indexOf('sendmail', 2) + 1));
    });
}

async function sendmail(argv: string[]): Promise<void> {
  let args: SendmailArgs;
  try {
    args = parseArguments(argv);
  } catch (err) {
    return fail(`${(err as Error).message} (see mailsrv sendmail --help)`);
  }
  if (args.mode === 'nothing') return;
  const config = loadConfigOrExit(args.config);
  if (args.mode !== 'send' && args.recipients.length > 0)
    fail(`${args.mode === 'list' ? '-bp' : '-q'} takes no recipients`);
  // the queue's code is loaded only for the modes that use it
  if (args.mode === 'list') return (await import('./queue.js')).printQueue(config, false);
  if (args.mode === 'flush') return (await import('./queue.js')).flushQueue(config);
  await submit(config, args);
}

/** Reads the message, works out the envelope, and leaves both in the maildrop. */
async function submit(config: Config, args: SendmailArgs): Promise<void> {
  const hostname = config.hostname;
  const sender = args.sender === undefined ? defaultSender(hostname) : senderAddress(args.sender, hostname);
  const fromCommandLine = args.recipients.flatMap((text) => addressList(text, hostname, 'recipient'));
  if (!args.extractRecipients && fromCommandLine.length === 0) fail('no recipients');

  const message = new SubmittedMessage(process.stdin, { dotEnds: args.dotEnds, sizeLimit: config.message_size_limit });
  let recipients: string[];
  let headersToAdd: string[];
  try {
    const header = await message.readHeader();
    const fromHeaders = args.extractRecipients
      ? header.recipientFields.flatMap((text) => addressList(text, hostname, 'recipient'))
      : [];
    recipients = unique([...fromCommandLine, ...fromHeaders]);
    headersToAdd = missingHeaders(header.fieldNames, sender || defaultSender(hostname), args.fullName, hostname);
  } catch (err) {
    return fail((err as Error).message);
  }
  if (recipients.length === 0) fail('no recipients');
  if (recipients.length > MAX_RECIPIENTS) fail(`too many recipients (${recipients.length}, at most ${MAX_RECIPIENTS})`);

  const dir = statePaths(config.state_dir).dropDir;
  try {
    await writeDropFile(dir, { sender, recipients }, Readable.from(message.content(headersToAdd)));
  } catch (err) {
    if (isErrno(err, 'ENOENT'))
      fail(`cannot write to the maildrop ${dir}: it does not exist (mailsrv makes it when it starts)`);
    if (isErrno(err, 'EACCES'))
      fail(`cannot write to the maildrop ${dir}: permission denied (mailsrv opens it to every user when it starts)`);
    fail((err as Error).message);
  }
}

/** Postfix sendmail's getopt ("+" mode: options end at the first operand or at `--`). */
function parseArguments(argv: string[]): SendmailArgs {
  const args: SendmailArgs = { mode: 'send', extractRecipients: false, dotEnds: true, recipients: [] };
  let index = 0;
  for (; index < argv.length; index++) {
    const token = argv[index]!;
    if (token === '--') {
      index += 1;
      break;
    }
    if (token === '--help') {
      process.stdout.write(SENDMAIL_USAGE);
      return { ...args, mode: 'nothing' };
    }
    if (token.startsWith('--config')) {
      const value =
        token === '--config'
          ? argv[++index]
          : token.startsWith('--config=')
            ? token.slice('--config='.length)
            : undefined;
      if (value === undefined)
        throw new Error(token === '--config' ? 'option --config needs a file' : `unknown option ${token}`);
      args.config = value;
      continue;
    }
    if (token.startsWith('--')) throw new Error(`unknown option ${token}`);
    if (!token.startsWith('-') || token === '-') break;
    // Postfix: these two are told apart from -qINTERVAL and -Vxy before getopt sees them
    if (token === '-q') {
      args.mode = 'flush';
      continue;
    }
    if (token === '-V') continue;
    for (let at = 1; at < token.length; at++) {
      const letter = token[at]!;
      if (FLAG_OPTIONS.has(letter)) {
        applyFlag(args, letter);
        continue;
      }
      if (!VALUE_OPTIONS.has(letter)) throw new Error(`unknown option -${letter}`);
      const value = at + 1 < token.length ? token.slice(at + 1) : argv[++index];
      if (value === undefined) throw new Error(`option -${letter} needs a value`);
      applyValue(args, letter, value);
      break;
    }
  }
  args.recipients = argv.slice(index);
  return args;
}

function applyFlag(args: SendmailArgs, letter: string): void {
  if (letter === 't') args.extractRecipients = true;
  else if (letter === 'i') args.dotEnds = false;
  else if (letter === 'I') args.mode = 'nothing'; // newaliases: the aliases file is read as it is
  // -G -U -m -n -v -x: nothing to do
}

function applyValue(args: SendmailArgs, letter: string, value: string): void {
  switch (letter) {
    case 'f':
    case 'r':
      args.sender = value;
      break;
    case 'F':
      if (/[\x00-\x1f\x7f]/.test(value) || value.length > MAX_FULL_NAME)
        throw new Error(`bad full name for -F (control characters, or longer than ${MAX_FULL_NAME})`);
      args.fullName = value;
      break;
    case 'c':
      args.config = value;
      break;
    case 'o':
      if (value.startsWith('i')) args.dotEnds = false; // -oi; -oem, -odi, -om, -o7, -oA... are ignored
      break;
    case 'b':
      args.mode = deliveryMode(value);
      break;
    case 'B':
      if (value !== '8BITMIME' && value !== '7BIT') throw new Error('-B takes 8BITMIME or 7BIT');
      break;
    case 'q':
      if (!/^\d/.test(value)) throw new Error(`-q${value} is not supported (-q alone retries the queue)`);
      args.mode = 'nothing'; // -q30m: a queue run interval, as Postfix does nothing
      break;
    // -A -C -L -N -O -R -V -X -e -h -p: nothing to do
  }
}

function deliveryMode(value: string): Mode {
  switch (value[0]) {
    case 'm':
      return 'send';
    case 'p':
      return 'list';
    case 'i':
      return 'nothing';
    default:
      throw new Error(`-b${value} is not supported (only -bm, -bp and -bi)`);
  }
}

/** LOGIN@hostname, LOGIN being whoever runs this (under sudo: root). */
function defaultSender(hostname: string): string {
  let login: string;
  try {
    login = userInfo().username;
  } catch {
    return fail(`uid ${process.getuid?.()} has no entry in the password database: give the sender with -f`);
  }
  const address = `${login}@${hostname}`;
  if (!isSafeAddress(address))
    fail(`the login name ${JSON.stringify(login)} makes no valid sender address: give the sender with -f`);
  return address;
}

/** -f: '' or '<>' is the null sender; otherwise one address, `Name <a@b>` or a bare login name allowed. */
function senderAddress(text: string, hostname: string): string {
  const trimmed = text.trim();
  if (trimmed === '' || trimmed === '<>') return '';
  const addresses = addressList(trimmed, hostname, 'sender');
  if (addresses.length !== 1) fail(`bad sender address ${JSON.stringify(text)}`);
  return addresses[0]!;
}

/**
 * The addresses in `text`, read as an address header (as Postfix reads sendmail's arguments, so
 * "a@b, Name <c@d>" works); a bare name ("root") is a local user: NAME@hostname.
 */
function addressList(text: string, hostname: string, what: string): string[] {
  // the parser would read "a@b<CR><LF>x: <c@d>" as c@d alone
  if (/[\x00-\x1f\x7f]/.test(text)) fail(`bad ${what} address ${JSON.stringify(text)}`);
  // without <...> or (...) a name beside an address means words the parser dropped: "a b@c", "a@b c@d"
  const bracketed = /[<(]/.test(text);
  return addressparser(text, { flatten: true }).flatMap(({ name, address }) => {
    if (address !== '' && name !== '' && !bracketed) return fail(`bad ${what} address ${JSON.stringify(text)}`);
    const bare = address !== '' ? address : /^[^\s@<>()",:;]+$/.test(name) ? name : '';
    if (bare === '') {
      if (name === '') return []; // an empty group, "<>"
      return fail(`bad ${what} address ${JSON.stringify(name)}`);
    }
    const qualified = qualify(bare, hostname);
    if (!isSafeAddress(qualified)) fail(`bad ${what} address ${JSON.stringify(bare)}`);
    return [qualified];
  });
}

/** The same address twice (in any case) is one recipient. */
function unique(addresses: string[]): string[] {
  const seen = new Set<string>();
  return addresses.filter((address) => {
    const key = address.toLowerCase();
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** From:, Date: and Message-ID:, each only when the message has no such field. */
function missingHeaders(present: Set<string>, from: string, fullName: string | undefined, hostname: string): string[] {
  const candidates: [string, string][] = [
    ['from', `From: ${fullName ? `${displayName(fullName)} <${from}>` : from}`],
    ['date', `Date: ${rfc5322Date(new Date())}`],
    ['message-id', `Message-ID: <${newQueueId()}@${hostname}>`],
  ];
  return candidates.filter(([name]) => !present.has(name)).map(([, line]) => line);
}

/**
 * A display name as RFC 5322 wants it: atoms as they are, other ASCII quoted, anything else MIME-encoded
 * (RFC 2047).
 */
function displayName(name: string): string {
  if (/^[\w !#$%&'*+\-/=?^`{|}~]+$/.test(name)) return name;
  if (/^[\x20-\x7e]*$/.test(name)) return `"${name.replace(/[\\"]/g, '\\$&')}"`;
  const { encodeWord } = requireLazily('nodemailer/lib/mime-funcs') as typeof import('nodemailer/lib/mime-funcs');
  return encodeWord(name, 'Q', 52);
}
