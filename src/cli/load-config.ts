// How a command reads the config named by its -c option (or the default): on an error, the
// problems are reported as every user error is, and the command exits 1.
import { configPath, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { fail } from './fail.js';

export function loadConfigOrExit(option: string | undefined): Config {
  try {
    return loadConfig(configPath(option));
  } catch (err) {
    return fail((err as Error).message);
  }
}
