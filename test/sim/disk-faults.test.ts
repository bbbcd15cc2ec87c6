/**
 * Disk faults in the simulated cluster. A bit flipped in a backup's persisted segment is found by
 * the node's scrub, by a promotion (which refuses the corrupt copy: another backup takes the
 * region) or by the next open of the store from disk (which resets it to be re-synced) — never
 * served, and no acknowledged write is lost. Then seeded schedules drawing only the disk fault
 * kinds (ENOSPC/EIO on writes and syncs, bit flips), one at a time and two at once, pass every
 * checker, and the faults really hit (stores fail-stopped, nodes were replaced).
 */
import type { RegionConfig } from '../../coordination/types.js';
import { progressPosition } from '../../src/actors/controller.js';
import type { LocalCluster } from '../../src/cluster/local-cluster.js';
import { CorruptSegmentError, isDeviceError } from '../../src/errors.js';
import type { ReplicationMode } from '../../src/replication/messages.js';
import { runSchedule } from '../../src/sim/check.js';
import type { FaultKind } from '../../src/sim/faults.js';
import { SimWorld } from '../../src/sim/world.js';

jest.setTimeout(300_000);

const DISK_KINDS: FaultKind[] = ['disk-full', 'disk-error', 'bit-flip'];
const keyOf = (k: number): string => `${'05af'[k % 4]}${k}-key`;

function whole(c: LocalCluster, map: readonly RegionConfig[]): boolean {
  return map.every(
    (r) =>
      r.backups.length === 2 &&
      (r.joining ?? []).length === 0 &&
      c.session(r.primary, r.regionId)?.epoch === r.epoch &&
      c.session(r.primary, r.regionId)?.isServing === true,
  );
}

/** Three nodes, three regions, RF 3: a replaced node can only come back into its own regions. */
async function loaded(
  mode: ReplicationMode,
): Promise<{ world: SimWorld; c: LocalCluster; values: Map<string, string> }> {
  const world = await SimWorld.create({
    seed: 17,
    nodes: 3,
    regions: 3,
    replicas: 3,
    mode,
    leaseTtlMs: 300,
    logBufferCount: 2,
    skewLayouts: true,
    store: { segmentBytes: 4096, l0Bytes: 1024, growthFactor: 2, maxLevels: 4, maxKeyBytes: 64 },
  });
  const c = world.localCluster;
  const client = c.client({ operationTimeoutMs: 20_000 });
  const values = new Map<string, string>();
  // Enough distinct keys that Build-Index backups fill their own L0 and flush it to a level.
  for (let i = 0; i < 360; i++) {
    const key = keyOf(i % 120);
    const value = `v${i}`.padEnd(i % 3 === 0 ? 300 : 40, '.');
    await world.run(client.put(key, value));
    values.set(key, value);
  }
  await world.run(c.flush());
  return { world, c, values };
}

/** Every acknowledged value reads back, and every backup reads exactly like its primary. */
async function expectIntact(world: SimWorld, c: LocalCluster, values: Map<string, string>): Promise<void> {
  await world.run(
    c.waitForRegions((map) => whole(c, map), 120_000),
    180_000,
  );
  const client = c.client({ operationTimeoutMs: 20_000 });
  for (const [key, value] of values) expect((await world.run(client.get(key)))?.toString()).toBe(value);
  await world.run(c.flush());
  for (const r of c.regions()) {
    const primary = c.session(r.primary, r.regionId)!.store;
    const expected = (await world.run(primary.scan())).map((kv) => `${kv.key}=${kv.value}`);
    for (const b of r.backups) {
      const store = (await world.run(c.runtime(b).backupStoresByRegion())).get(r.regionId)!;
      expect(store.verifyPersisted()).toBeUndefined();
      expect((await world.run(store.scan())).map((kv) => `${kv.key}=${kv.value}`)).toEqual(expected);
    }
  }
}

const corruptStops = (c: LocalCluster, nodeId: string): number =>
  c.failStops.filter((f) => f.nodeId === nodeId && f.error instanceof CorruptSegmentError).length;

describe.each(['send-index', 'build-index'] as const)('bit flips (%s)', (mode) => {
  it.each(['log', 'index'] as const)(
    'in a %s segment: the scrub finds it, the node is replaced, the copy re-synced',
    async (kind) => {
      const { world, c, values } = await loaded(mode);
      try {
        const r0 = c.regions().find((r) => r.regionId === 'r0')!;
        const b = r0.backups[0]!;
        const flipped = await world.run(
          c.flipBit(
            b,
            (n) => Math.floor(n / 2),
            (s) => s.regionId === 'r0' && s.kind === kind,
          ),
        );
        expect(flipped).toContain(`${kind} segment`);
        expect(await world.run(c.scrub(b))).toEqual(['r0']);
        await expectIntact(world, c, values);
        expect(corruptStops(c, b)).toBe(1);
        // The new incarnation verified its copy of r0 when it opened it from disk, and reset it.
        expect(c.runtime(b).corruptionsRepaired).toContain('r0');
      } finally {
        await world.close();
      }
    },
  );

  it('in the backup chosen for promotion: it refuses, another backup takes the region', async () => {
    const { world, c, values } = await loaded(mode);
    try {
      const r0 = c.regions().find((r) => r.regionId === 'r0')!;
      // The backup the controller will promote: the furthest persisted position, then map order.
      const progress = new Map(
        (await world.run(c.coordinator.client().regionProgress('r0'))).map((p) => [
          p.nodeId,
          progressPosition(p),
        ]),
      );
      const [b, other] = [...r0.backups].sort((x, y) => (progress.get(y) ?? -1) - (progress.get(x) ?? -1));
      await world.run(
        c.flipBit(
          b!,
          () => 0,
          (s) => s.regionId === 'r0',
        ),
      );
      await world.run(c.killNode(r0.primary));
      await world.run(
        c.waitForRegions((map) => map.find((r) => r.regionId === 'r0')!.primary === other, 60_000),
      );
      expect(corruptStops(c, b!)).toBe(1);
      await world.run(c.restartNode(r0.primary));
      await expectIntact(world, c, values);
    } finally {
      await world.close();
    }
  });

  it('on a node that restarts before any scrub: its open from disk finds it and resets the copy', async () => {
    const { world, c, values } = await loaded(mode);
    try {
      const b = c.regions().find((r) => r.regionId === 'r0')!.backups[0]!;
      await world.run(
        c.flipBit(
          b,
          () => 0,
          (s) => s.regionId === 'r0',
        ),
      );
      await world.run(c.killNode(b));
      await world.run(c.restartNode(b));
      await expectIntact(world, c, values);
      expect(c.runtime(b).corruptionsRepaired).toContain('r0');
      expect(corruptStops(c, b)).toBe(0);
    } finally {
      await world.close();
    }
  });
});

test('a failing disk fail-stops the node, which is replaced; acknowledged writes survive', async () => {
  const { world, c, values } = await loaded('send-index');
  try {
    const r1 = c.regions().find((r) => r.regionId === 'r1')!;
    const client = c.client({ operationTimeoutMs: 20_000 });
    const failing = c.failDisk(r1.primary, 'EIO', ['sync', 'meta'], 400);
    // Writes go on through the failure; each ends acknowledged or unknown, never lost if acknowledged.
    for (let i = 0; i < 60; i++) {
      const key = keyOf(i % 24);
      const value = `w${i}`.padEnd(200, '.');
      try {
        await world.run(client.put(key, value));
        values.set(key, value);
      } catch {
        values.delete(key); // unknown: either value may be read back
      }
    }
    await world.run(failing);
    expect(c.failStops.some((f) => f.nodeId === r1.primary && isDeviceError(f.error))).toBe(true);
    await world.run(
      c.waitForRegions((map) => whole(c, map), 120_000),
      180_000,
    );
    for (const [key, value] of values) {
      expect((await world.run(client.get(key)))?.toString()).toBe(value);
    }
  } finally {
    await world.close();
  }
});

test.each([1, 2])(
  'seeded schedules of disk faults only (%i at once) pass every checker',
  async (concurrentFaults) => {
    const count = Number(process.env.TALOS_DISK_SEEDS ?? 150);
    const failures: string[] = [];
    const stops = { device: 0, corrupt: 0 };
    for (let i = 0; i < count; i++) {
      const seed = 500_000 + concurrentFaults * 10_000 + i;
      const result = await runSchedule({
        seed,
        faults: 4,
        faultKinds: DISK_KINDS,
        concurrentFaults,
        inspect: async (c) => {
          for (const f of c.failStops) {
            if (isDeviceError(f.error)) stops.device++;
            else if (f.error instanceof CorruptSegmentError) stops.corrupt++;
          }
        },
      });
      if (result.violations.length > 0) failures.push(`seed ${seed}: ${result.violations.join('; ')}`);
    }
    expect(failures).toEqual([]);
    process.stderr.write(
      `[sim] disk faults, ${concurrentFaults} at once: ${JSON.stringify(stops)} node fail-stops\n`,
    );
    expect(stops.device).toBeGreaterThan(count / 4);
    expect(stops.corrupt).toBeGreaterThan(count / 4);
  },
);
