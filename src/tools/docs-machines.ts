/**
 * `npm run docs:machines`: writes docs/machines/ from the actor machines (see machine-docs.ts).
 * `--check` writes nothing and exits 1 listing the stale pages.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderMachineDocs } from './machine-docs.js';

const root = process.cwd();
const dir = join(root, 'docs', 'machines');
const check = process.argv.includes('--check');
const stale: string[] = [];
mkdirSync(dir, { recursive: true });
for (const [file, text] of renderMachineDocs(root)) {
  const path = join(dir, file);
  const current = existsSync(path) ? readFileSync(path, 'utf8') : undefined;
  if (current === text) continue;
  stale.push(file);
  if (!check) writeFileSync(path, text);
}
if (check && stale.length > 0) {
  process.stderr.write(`stale machine docs: ${stale.join(', ')} (run npm run docs:machines)\n`);
  process.exit(1);
}
process.stdout.write(
  check ? 'machine docs are current\n' : `wrote ${stale.length} page(s) to docs/machines/\n`,
);
