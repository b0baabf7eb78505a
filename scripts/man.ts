// `npm run man`: writes the man pages (scripts/man-pages.ts) into man/, where the package
// installs them from; run it after changing a command, an option or a config key.
import { mkdirSync, writeFileSync } from 'node:fs';
import { MAN_PAGES, renderManPages } from './man-pages.js';

const dir = new URL('../man/', import.meta.url);
mkdirSync(dir, { recursive: true });
const pages = await renderManPages();
for (const page of MAN_PAGES) writeFileSync(new URL(page, dir), pages[page]);
process.stdout.write(`wrote ${MAN_PAGES.map((page) => `man/${page}`).join(', ')}\n`);
