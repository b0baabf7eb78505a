// Fails when a source line is longer than 120 characters (the formatter wraps code, not
// strings or comments). Usage: node scripts/check-line-length.mjs (from the repository root).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const MAX = 120;
const files = execFileSync('git', ['ls-files', '*.ts', '*.mjs', '*.js', 'bin/*'], { encoding: 'utf8' })
  .split('\n')
  .filter(Boolean);
let long = 0;
for (const file of files) {
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      if (line.length <= MAX) return;
      long++;
      console.error(`${file}:${i + 1}: ${line.length} characters (at most ${MAX})`);
    });
}
if (long > 0) process.exit(1);
