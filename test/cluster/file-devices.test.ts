/**
 * The local cluster on real files: each node's region directory is held (LOCK + the in-process
 * registry) by exactly one open FileDevice. killNode closes a node's devices, so its restarted
 * incarnation reopens the same directories; close releases every one.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createLocalCluster, type LocalCluster } from '../../src/cluster/local-cluster.js';
import { FileDevice } from '../../src/engine/file-device.js';
import { DeviceLockedError } from '../../src/errors.js';

const SMALL = { segmentBytes: 4096, l0Bytes: 2048, growthFactor: 2, maxLevels: 5, maxKeyBytes: 64 };

let dataDir: string;
let c: LocalCluster | undefined;
beforeEach(() => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'talos-files-'));
});
afterEach(async () => {
  await c?.close();
  c = undefined;
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** The region directories of a node that hold a LOCK file. */
function lockedDirs(nodeId: string): string[] {
  const nodeDir = path.join(dataDir, nodeId);
  if (!fs.existsSync(nodeDir)) return [];
  return fs
    .readdirSync(nodeDir)
    .filter((regionId) => fs.existsSync(path.join(nodeDir, regionId, 'LOCK')))
    .sort();
}

test('a killed node releases its directories and its restarted incarnation reopens them', async () => {
  c = await createLocalCluster({ nodes: 4, regions: 3, replicas: 4, leaseTtlMs: 400, dataDir, store: SMALL });
  const client = c.client({ operationTimeoutMs: 15_000 });
  const key = (i: number): string => `${['10', '70', 'c0'][i % 3]}-${String(i).padStart(5, '0')}`;
  for (let i = 0; i < 600; i++) await client.put(key(i), `v${i}`);

  const n1Dirs = lockedDirs('n1');
  expect(n1Dirs.length).toBeGreaterThan(0);
  // While n1 runs, its directories are refused to anyone else in this process.
  expect(() => FileDevice.open(path.join(dataDir, 'n1', n1Dirs[0]!))).toThrow(DeviceLockedError);

  await c.killNode('n1'); // n1 is the primary of r0 and a backup of others
  expect(lockedDirs('n1')).toEqual([]);
  await c.waitForRegions((map) => map.every((r) => r.primary !== 'n1' && !r.backups.includes('n1')));
  for (let i = 600; i < 900; i++) await client.put(key(i), `v${i}`);

  await c.restartNode('n1');
  // replicas = nodes: every region runs short until n1 is back, so it gets all its copies again.
  await c.waitForRegions((map) => map.every((r) => r.backups.includes('n1')));
  expect(lockedDirs('n1')).toEqual(['r0', 'r1', 'r2']);
  for (let i = 0; i < 900; i++) expect((await client.get(key(i)))?.toString()).toBe(`v${i}`);

  await c.close();
  c = undefined;
  for (const nodeId of ['n1', 'n2', 'n3', 'n4']) expect(lockedDirs(nodeId)).toEqual([]);
});
