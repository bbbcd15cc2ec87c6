#!/usr/bin/env node
// Entry point of the `talos` command: runs the compiled CLI (npm run build produces dist/).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
if (!existsSync(main)) {
  process.stderr.write('talos: dist/ is missing; run `npm run build` first\n');
  process.exit(1);
}
await import(main);
