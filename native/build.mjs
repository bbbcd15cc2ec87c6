#!/usr/bin/env node
// `npm run build:native`: builds the RDMA addon (native/build/Release/talos_rdma.node) with node-gyp
// against the local Node headers (--nodedir, no download). Where the libibverbs/librdmacm headers
// are missing it prints one line and exits 0: the rdma fabric then reports RdmaUnavailableError.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const headers = ['/usr/include/infiniband/verbs.h', '/usr/include/rdma/rdma_cma.h'];
const missing = headers.filter((h) => !existsSync(h));
if (missing.length > 0) {
  console.log(
    `build:native: skipped, ${missing.join(' and ')} not found (apt-get install libibverbs-dev librdmacm-dev ibverbs-providers)`,
  );
  process.exit(0);
}
// Local headers: node's own include dir (Debian/NodeSource /usr/include/node, or <prefix>/include/node).
const prefix = dirname(dirname(process.execPath));
const nodedir = [process.env.npm_config_nodedir, prefix, '/usr'].find(
  (d) => d !== undefined && existsSync(join(d, 'include', 'node', 'node_api.h')),
);
const require = createRequire(import.meta.url);
const gyp = require.resolve('node-gyp/bin/node-gyp.js');
const args = [gyp, 'rebuild', '--directory', here, ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
const run = spawnSync(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
if (run.status !== 0) {
  process.stdout.write(run.stdout);
  process.stderr.write(run.stderr);
  console.error(`build:native: node-gyp failed (exit ${run.status})`);
  process.exit(run.status ?? 1);
}
const warnings = run.stderr.split('\n').filter((l) => /warning:/.test(l));
for (const w of warnings) console.error(w);
console.log(`build:native: built ${join(here, 'build', 'Release', 'talos_rdma.node')}`);
