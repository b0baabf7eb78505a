// Entry point of the root helper processes (README, "Using the box's Unix accounts", "Privileges"):
// `helper-main.js keeper SETTINGS` (started by the daemon while root) and
// `helper-main.js worker SETTINGS` (started by the keeper). SETTINGS is the JSON of HelperSettings.
import { fileURLToPath } from 'node:url';
import { runKeeper } from './helper-keeper.js';
import { type HelperSettings, runWorker } from './helper-worker.js';

function parseSettings(text: string | undefined): HelperSettings {
  const value = JSON.parse(text ?? '') as Partial<HelperSettings>;
  const { spoolDir, minUid, pamService, mailGid, accounts, secretFiles } = value;
  if (
    typeof spoolDir !== 'string' ||
    !spoolDir.startsWith('/') ||
    !Number.isSafeInteger(minUid) ||
    typeof pamService !== 'string' ||
    !Number.isSafeInteger(mailGid) ||
    typeof accounts !== 'boolean' ||
    !Array.isArray(secretFiles) ||
    !secretFiles.every((file) => typeof file === 'string' && file.startsWith('/'))
  ) {
    throw new Error('bad helper settings');
  }
  return { spoolDir, minUid: minUid!, pamService, mailGid: mailGid!, accounts, secretFiles };
}

const [role, settings] = process.argv.slice(2);
if (role === 'keeper') runKeeper(fileURLToPath(import.meta.url), parseSettings(settings));
else if (role === 'worker') runWorker(parseSettings(settings));
else throw new Error('usage: helper-main.js keeper|worker SETTINGS');
