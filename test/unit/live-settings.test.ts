// The SIGHUP table: every part gets the settings its keys map to, in table order; a part that
// fails is reported and the others still get theirs; the keys that wait for a restart are named.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import {
  applyLiveSettings,
  type LivePart,
  liveSettings,
  type LiveSettings,
  type Reconfigurers,
  restartOnlyChanges,
} from '../../src/daemon/live-settings.js';

/** Reconfigurers that record what each part was given, in order. */
function recording(): { reconfigure: Reconfigurers; given: [LivePart, unknown][] } {
  const given: [LivePart, unknown][] = [];
  const reconfigure = Object.fromEntries(
    (Object.keys(liveSettings) as LivePart[]).map((part) => [
      part,
      (settings: unknown) => given.push([part, settings]),
    ]),
  ) as unknown as Reconfigurers;
  return { reconfigure, given };
}

test('every part is reconfigured once, in table order, with the settings derived from the new config', () => {
  const config = parseConfig(
    [
      'hostname = "mx.example.test"',
      'message_size_limit = 5000',
      '[log]',
      'level = "debug"',
      '[auth]',
      'failure_delay = "3s"',
      'max_failures = 7',
      '[pop3]',
      'max_clients = 9',
    ].join('\n'),
  );
  const { reconfigure, given } = recording();
  applyLiveSettings(config, reconfigure, (part, err) => assert.fail(`${part}: ${err.message}`));

  assert.deepEqual(
    given.map(([part]) => part),
    Object.keys(liveSettings),
  );
  const settings = Object.fromEntries(given) as unknown as LiveSettings;
  assert.equal(settings.log, 'debug');
  assert.equal(settings.auth.failureDelayMs, 3000);
  assert.equal(settings.auth.maxFailures, 7);
  assert.equal(settings.pickup.messageSizeLimit, 5000);
  assert.equal(settings.smtp.messageSizeLimit, 5000);
  assert.equal(settings.smtp.hostname, 'mx.example.test');
  assert.equal(settings.remote.hostname, 'mx.example.test');
  assert.equal(settings.routing.hostname, 'mx.example.test');
  assert.equal(settings.routing.isLocalDomain('mx.example.test'), true);
  assert.equal(settings.routing.isLocalDomain('elsewhere.test'), false);
  assert.equal(settings.pop3Connections.maxClients, 9);
});

test('a part that fails keeps its settings and is reported; the parts after it are still reconfigured', () => {
  const { reconfigure, given } = recording();
  const failures: [LivePart, string][] = [];
  applyLiveSettings(
    parseConfig(''),
    {
      ...reconfigure,
      policy: () => {
        throw new Error('no');
      },
    },
    (part, err) => failures.push([part, err.message]),
  );
  assert.deepEqual(failures, [['policy', 'no']]);
  assert.deepEqual(
    given.map(([part]) => part),
    Object.keys(liveSettings).filter((part) => part !== 'policy'),
  );
});

test('only changed restart-only keys are named, each once, in RESTART_KEYS order', () => {
  const running = parseConfig('');
  assert.deepEqual(restartOnlyChanges(running, parseConfig('hostname = "other.test"\n[smtp]\nmax_clients = 3\n')), []);
  assert.deepEqual(
    restartOnlyChanges(
      running,
      parseConfig(
        'state_dir = "/srv/mailsrv"\n[smtp]\nsubmission = ["127.0.0.1:2587"]\n[pop3]\npop3s = ["127.0.0.1:9995"]\n',
      ),
    ),
    ['state_dir', 'smtp.submission', 'pop3.pop3s'],
  );
});
