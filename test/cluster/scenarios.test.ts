/**
 * The in-process cluster, one protocol path per test (PROTOCOL §1–5), each a short story on three
 * nodes with tiny segments so seals, flushes and compactions happen constantly.
 */
import {
  createLocalCluster,
  type LocalCluster,
  type LocalClusterOptions,
} from '../../src/cluster/local-cluster.js';
import type { Store } from '../../src/engine/store.js';
import { OutcomeUnknownError, WrongPrimaryError } from '../../src/errors.js';
import type { Connection } from '../../src/fabric/types.js';
import { expectEquivalent } from '../support/replicas.js';
import { dump } from '../support/store.js';

const SMALL = { segmentBytes: 4096, l0Bytes: 2048, growthFactor: 2, maxLevels: 5, maxKeyBytes: 64 };

const open: LocalCluster[] = [];
async function cluster(options: LocalClusterOptions = {}): Promise<LocalCluster> {
  const c = await createLocalCluster({ nodes: 3, store: SMALL, ...options });
  open.push(c);
  return c;
}
afterEach(async () => {
  for (const c of open.splice(0)) await c.close();
});

/** A key in region r0 ('' ≤ key < '55'), r1 or r2 of the default 3-region layout. */
const keyIn = (region: number, i: number): string =>
  `${['10', '70', 'c0'][region]}-${String(i).padStart(6, '0')}`;
const value = (i: number, round = 0): string => `value-${i}-${round}-`.padEnd(40, '.');

function primaryStore(c: LocalCluster, regionId: string): Store {
  const config = c.regions().find((r) => r.regionId === regionId)!;
  return c.session(config.primary, regionId)!.store;
}

async function backupStores(c: LocalCluster, regionId: string): Promise<Store[]> {
  const config = c.regions().find((r) => r.regionId === regionId)!;
  return Promise.all(
    config.backups.map(async (b) => (await c.runtime(b).backupStoresByRegion()).get(regionId)!),
  );
}

function connectionsOf(c: LocalCluster, from: string, to: string): Connection[] {
  return c.runtime(from).connectionsTo(to);
}

describe('local cluster: protocol paths', () => {
  test('open: the controller places regions so each node is primary for one and backup for the others', async () => {
    const c = await cluster();
    const regions = c.regions();
    expect(regions.map((r) => r.regionId)).toEqual(['r0', 'r1', 'r2']);
    expect(new Set(regions.map((r) => r.primary))).toEqual(new Set(['n1', 'n2', 'n3']));
    for (const r of regions) {
      expect(r.epoch).toBe(1);
      expect(r.backups).toHaveLength(2);
      expect(r.backups).not.toContain(r.primary);
      // Every backup has the region open at the configuration's epoch (the buffer rendezvous).
      for (const b of r.backups) {
        const opened = c
          .runtime(b)
          .backupRegionList()
          .filter((x) => x.regionId === r.regionId);
        expect(opened.map((x) => x.epoch)).toEqual([1]);
      }
      expect(c.session(r.primary, r.regionId)?.isServing).toBe(true);
    }
    // The primary actor of each region is in `serving`.
    for (const nodeId of c.nodeIds()) {
      const children = c.nodeActor(nodeId).getSnapshot().children as Record<
        string,
        { getSnapshot(): { value: unknown } }
      >;
      const primaries = Object.entries(children).filter(([id]) => id.startsWith('primary:'));
      expect(primaries.map(([, child]) => child.getSnapshot().value)).toEqual(['serving']);
    }
  });

  test('put and get are routed by region; a write is readable once acknowledged', async () => {
    const c = await cluster();
    const client = c.client();
    for (let r = 0; r < 3; r++) await client.put(keyIn(r, 1), value(r));
    for (let r = 0; r < 3; r++) expect((await client.get(keyIn(r, 1)))?.toString()).toBe(value(r));
    // Each key went to its region's primary only.
    for (let r = 0; r < 3; r++) {
      const store = primaryStore(c, `r${r}`);
      expect(store.stats().userBytes).toBe(keyIn(r, 1).length + value(r).length);
    }
    await client.delete(keyIn(1, 1));
    expect(await client.get(keyIn(1, 1))).toBeUndefined();
    const rows = await client.scan();
    expect(rows.map((row) => row.key.toString())).toEqual([keyIn(0, 1), keyIn(2, 1)]);
  });

  test('seal: a full log segment is persisted on every backup byte for byte, with its segment map entry', async () => {
    const c = await cluster();
    const client = c.client();
    let i = 0;
    while (primaryStore(c, 'r0').logSegments().length < 3) await client.put(keyIn(0, i), value(i++));
    await c.settle();
    const primary = primaryStore(c, 'r0');
    const sealed = primary.logSegments().filter((e) => e.usedBytes !== null);
    expect(sealed.length).toBeGreaterThanOrEqual(2);
    for (const backup of await backupStores(c, 'r0')) {
      const map = new Map(backup.replica.segmentMapEntries());
      for (const entry of sealed) {
        expect(map.has(entry.offset)).toBe(true);
        expect(backup.replica.readLogSegment(entry.seq).subarray(0, entry.usedBytes!)).toEqual(
          primary.replica.readLogSegment(entry.seq).subarray(0, entry.usedBytes!),
        );
      }
    }
    // Each backup published how far it persisted (the controller ranks promotion candidates by it).
    const lastSealed = sealed.at(-1)!.seq;
    const reader = c.coordinator.client();
    let progress = await reader.regionProgress('r0');
    for (let t = 0; t < 100 && progress.some((p) => p.seq < lastSealed); t++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      progress = await reader.regionProgress('r0');
    }
    expect(progress.map((p) => p.nodeId).sort()).toEqual([...c.regions()[0]!.backups].sort());
    for (const p of progress) expect(p.seq).toBeGreaterThanOrEqual(lastSealed);
  });

  test('a backup that stops taking bytes holds every acknowledgement of its region; releasing it completes them', async () => {
    const c = await cluster();
    const client = c.client();
    await client.put(keyIn(0, 0), value(0));
    const r0 = c.regions()[0]!;
    const [link] = connectionsOf(c, r0.primary, r0.backups[0]!);
    expect(link).toBeDefined();
    c.fabric.dropTraffic(link!, true);
    let acked = 0;
    const puts = Array.from({ length: 20 }, (_, i) =>
      client.put(keyIn(0, i + 1), value(i + 1)).then(() => acked++),
    );
    // Other regions are not held up, while r0's writes wait for the silent backup.
    for (let t = 0; t < 10; t++) await client.put(keyIn(2, t), value(t));
    for (let t = 0; t < 100; t++) await new Promise((resolve) => setImmediate(resolve));
    expect(acked).toBe(0);
    c.fabric.dropTraffic(link!, false);
    await Promise.all(puts);
    expect(acked).toBe(20);
    for (let i = 0; i <= 20; i++) expect((await client.get(keyIn(0, i)))?.toString()).toBe(value(i));
  });

  test('flush: a full L0 is flushed by the Flush actor after a tail sync that reaches every backup', async () => {
    const c = await cluster();
    const client = c.client();
    let i = 0;
    while (primaryStore(c, 'r1').stats().flushCount === 0) await client.put(keyIn(1, i), value(i++));
    await c.settle();
    const primary = primaryStore(c, 'r1');
    const active = primary.logSegments().at(-1)!;
    for (const backup of await backupStores(c, 'r1')) {
      // The tail sync sealed the active segment partially on the backup: its prefix is there.
      const entry = backup.logSegments().find((e) => e.seq === active.seq);
      if (entry !== undefined) expect(entry.usedBytes).toBeGreaterThan(0);
      expect(backup.levelDescriptors()[0]!.length).toBeGreaterThan(0);
      expectEquivalent(primary, backup);
    }
  });

  test('compaction ships index segments; backups translate and install them, and never compact themselves', async () => {
    const c = await cluster();
    const client = c.client();
    for (let i = 0; i < 1500; i++) await client.put(keyIn(i % 3, i % 400), value(i, i));
    await c.settle();
    for (const regionId of ['r0', 'r1', 'r2']) {
      const primary = primaryStore(c, regionId);
      expect(primary.stats().compactionCount + primary.stats().trivialMoveCount).toBeGreaterThan(0);
      for (const backup of await backupStores(c, regionId)) {
        expect(backup.stats().compactionCount).toBe(0);
        expect(backup.stats().flushCount).toBe(0);
        expect(backup.stats().io.writtenBytes.index).toBeGreaterThan(0);
        expectEquivalent(primary, backup);
      }
    }
    const stats = await c.stats();
    expect(stats.backup.io.writtenBytes.index).toBeGreaterThan(0);
    expect(stats.fabric.writtenBytes).toBeGreaterThan(0);
  });

  test('build-index mode: backups index the sealed log themselves, flush and compact, and ship no index', async () => {
    const c = await cluster({ mode: 'build-index' });
    const client = c.client();
    for (let i = 0; i < 3000; i++) {
      const key = keyIn(i % 3, (i * 7919) % 500);
      if (i % 11 === 0) await client.delete(key);
      else await client.put(key, value(i));
    }
    await c.flush();
    const stats = await c.stats();
    for (const regionId of ['r0', 'r1', 'r2']) {
      const primary = primaryStore(c, regionId);
      const expected = await dump(primary);
      expect(expected.size).toBeGreaterThan(0);
      for (const backup of await backupStores(c, regionId)) {
        // Its own flushes and compactions wrote its own index segments...
        expect(backup.stats().flushCount).toBeGreaterThan(0);
        expect(backup.stats().compactionCount + backup.stats().trivialMoveCount).toBeGreaterThan(0);
        expect(backup.stats().io.writtenBytes.index).toBeGreaterThan(0);
        // ...and after the primaries' flush (whose tail sync reached it) it reads what the primary reads.
        expect(await dump(backup)).toEqual(expected);
      }
    }
    // Nothing was shipped but log bytes: no index buffer was ever written by a primary.
    for (const nodeId of c.nodeIds()) {
      for (const region of c.runtime(nodeId).backupRegionList()) {
        expect(region.stats.shippedIndexSegments).toBe(0);
        expect(region.stats.commits).toBe(0);
        expect(region.stats.sealedSegments).toBeGreaterThan(0);
      }
    }
    expect(stats.backup.io.writtenBytes.index).toBeGreaterThan(0);
  });

  test('trivial moves are mirrored with the same commit and no segments', async () => {
    const c = await cluster();
    const client = c.client();
    let i = 0;
    // Ascending keys: each flush lands after the previous one, so moves into an empty level happen.
    while (primaryStore(c, 'r2').stats().trivialMoveCount === 0 && i < 5000)
      await client.put(keyIn(2, i), value(i++));
    await c.settle();
    const primary = primaryStore(c, 'r2');
    expect(primary.stats().trivialMoveCount).toBeGreaterThan(0);
    for (const backup of await backupStores(c, 'r2')) expectEquivalent(primary, backup);
  });

  test('many levels: after thousands of overwrites every backup equals its primary level by level', async () => {
    const c = await cluster();
    const client = c.client();
    for (let i = 0; i < 8000; i++) await client.put(keyIn(0, (i * 7919) % 3000), value(i));
    await c.settle();
    const primary = primaryStore(c, 'r0');
    expect(primary.levelDescriptors().filter((l) => l.length > 0).length).toBeGreaterThanOrEqual(3);
    for (const backup of await backupStores(c, 'r0')) {
      expectEquivalent(primary, backup);
      // Reads on the backup resolve every pointer it holds (what the primary flushed).
      const rows = await backup.scan();
      expect(rows.length).toBeGreaterThan(0);
    }
    for (const region of c.runtime(c.regions()[0]!.backups[0]!).backupRegionList()) {
      expect(region.stats.refused).toBe(0);
    }
  });

  test('a new epoch fences the old one: its writes are never acknowledged, and the region continues at the new epoch', async () => {
    const c = await cluster();
    const client = c.client();
    for (let i = 0; i < 50; i++) await client.put(keyIn(0, i), value(i));
    const before = c.regions()[0]!;
    const oldSession = c.session(before.primary, 'r0')!;
    // The controller's move: same members, next epoch.
    const admin = c.coordinator.client({ name: 'admin' });
    const entry = (await admin.getRegion('r0'))!;
    const cas = await admin.compareAndSetRegion(entry.revision, {
      ...entry.config,
      epoch: entry.config.epoch + 1,
    });
    expect(cas.ok).toBe(true);
    await admin.close();
    // Backups fence their epoch-1 buffers as soon as they learn epoch 2 …
    for (let t = 0; t < 200 && c.session(before.primary, 'r0') === oldSession; t++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    // … so the old session can no longer acknowledge anything.
    await expect(oldSession.put(keyIn(0, 999), 'stale')).rejects.toThrow();
    expect(oldSession.isServing).toBe(false);
    // The node restarts its primary at epoch 2, and the region serves again with the same data.
    await client.put(keyIn(0, 1000), 'fresh');
    const now = c.session(before.primary, 'r0')!;
    expect(now).not.toBe(oldSession);
    expect(now.epoch).toBe(2);
    for (let i = 0; i < 50; i++) expect((await client.get(keyIn(0, i)))?.toString()).toBe(value(i));
    expect((await client.get(keyIn(0, 1000)))?.toString()).toBe('fresh');
    for (const b of before.backups) {
      expect(
        c
          .runtime(b)
          .backupRegionList()
          .filter((x) => x.regionId === 'r0')
          .map((x) => x.epoch),
      ).toEqual([2]);
    }
  });

  test('a write whose replication failed is reported as an unknown outcome, not a failure', async () => {
    const c = await cluster();
    const client = c.client({ operationTimeoutMs: 200 });
    await client.put(keyIn(1, 0), value(0));
    const r1 = c.regions()[1]!;
    const [link] = connectionsOf(c, r1.primary, r1.backups[1]!);
    c.fabric.failWrites(link!, true);
    await expect(client.put(keyIn(1, 1), value(1))).rejects.toBeInstanceOf(OutcomeUnknownError);
  });
});

test('dump helper sanity: an empty cluster scans empty', async () => {
  const c = await cluster({ nodes: 1, replicas: 1, regions: 1 });
  expect(await c.client().scan()).toEqual([]);
  expect((await dump(primaryStore(c, 'r0'))).size).toBe(0);
});

describe('local cluster: backup loss (PROTOCOL §6)', () => {
  test('a killed backup is removed at epoch + 1; its primaries resume acknowledging with the copies left', async () => {
    const c = await cluster();
    const client = c.client({ operationTimeoutMs: 10_000 });
    const acked = new Map<string, string>();
    for (let i = 0; i < 300; i++) {
      await client.put(keyIn(0, i), value(i));
      acked.set(keyIn(0, i), value(i));
    }
    const before = c.regions().find((r) => r.regionId === 'r0')!;
    expect(before.backups).toEqual(['n2', 'n3']);

    // Writes in flight while n3 dies end acknowledged or with an unknown outcome, never "failed".
    const inFlight = Array.from({ length: 50 }, (_, i) => {
      const key = keyIn(0, 1000 + i);
      return client.put(key, value(i, 1)).then(
        () => acked.set(key, value(i, 1)),
        (err: unknown) => {
          expect(err).toBeInstanceOf(OutcomeUnknownError);
        },
      );
    });
    await c.killNode('n3');
    await Promise.all(inFlight);
    await c.waitForRegions((map) => map.find((r) => r.regionId === 'r0')!.epoch > before.epoch);
    const after = c.regions().find((r) => r.regionId === 'r0')!;
    expect(after).toMatchObject({ epoch: before.epoch + 1, primary: 'n1', backups: ['n2'] });

    // The region serves again: new writes are acknowledged, every acknowledged one reads back.
    for (let i = 0; i < 300; i++) {
      await client.put(keyIn(0, 2000 + i), value(i, 2));
      acked.set(keyIn(0, 2000 + i), value(i, 2));
    }
    for (const [key, v] of acked) expect((await client.get(key))?.toString()).toBe(v);
    await c.flush();
    const primary = primaryStore(c, 'r0');
    const [backup] = await backupStores(c, 'r0');
    expectEquivalent(primary, backup!);
  });
});

describe('local cluster: replacement and re-sync (PROTOCOL §6–7)', () => {
  /** Every backup of every region whose primary lives equals its primary, level by level. */
  async function expectAllEquivalent(c: LocalCluster): Promise<void> {
    for (const config of c.regions()) {
      const primary = c.session(config.primary, config.regionId)?.store;
      if (primary === undefined) continue;
      for (const backup of await backupStores(c, config.regionId)) expectEquivalent(primary, backup);
    }
  }

  test('a killed backup is replaced by a free node, caught up online while the region serves, then joins', async () => {
    const c = await cluster({ nodes: 4, regions: 3, replicas: 3 });
    const client = c.client({ operationTimeoutMs: 10_000 });
    const acked = new Map<string, string>();
    const write = async (from: number, to: number, round: number, region?: number): Promise<void> => {
      for (let i = from; i < to; i++) {
        const key = keyIn(region ?? i % 3, i % 700);
        await client.put(key, value(i, round));
        acked.set(key, value(i, round));
      }
    };
    await write(0, 3000, 0);
    expect(c.regions().find((r) => r.regionId === 'r1')!.backups).toEqual(['n3', 'n4']);
    // Hold every connection n2 (r1's primary) opens to n1 from here on: the catch-up cannot finish.
    const held: Connection[] = [];
    const unwatch = c.fabric.watchConnections((connection) => {
      if (connection.localNodeId === 'n2' && connection.peerNodeId === 'n1') {
        c.fabric.dropTraffic(connection, true);
        held.push(connection);
      }
    });
    await c.killNode('n4');
    // r1 and r2 lose n4 at the next epoch and serve with the backup left; the only node holding
    // no copy of them joins (re-synced online, not yet acknowledging).
    await c.waitForRegions((map) =>
      map.every((r) => !r.backups.includes('n4') && r.primary !== 'n4' && !(r.joining ?? []).includes('n4')),
    );
    expect(c.regions().find((r) => r.regionId === 'r1')).toMatchObject({
      epoch: 2,
      backups: ['n3'],
      joining: ['n1'],
    });
    // The region acknowledges writes while its joiner is still being caught up.
    await write(3000, 3300, 1, 1);
    expect(held.length).toBeGreaterThan(0);
    expect(c.regions().find((r) => r.regionId === 'r1')).toMatchObject({ epoch: 2, joining: ['n1'] });
    unwatch();
    for (const connection of held) c.fabric.dropTraffic(connection, false);
    // Caught up: the controller makes it a backup at the next epoch, whose open re-syncs the delta.
    await c.waitForRegions((map) =>
      map.every((r) => r.backups.length === 2 && (r.joining ?? []).length === 0),
    );
    const map = c.regions();
    expect(map.find((r) => r.regionId === 'r1')).toMatchObject({ epoch: 3, backups: ['n3', 'n1'] });
    expect(map.find((r) => r.regionId === 'r2')).toMatchObject({ epoch: 3, backups: ['n1', 'n2'] });
    const r1Log = primaryStore(c, 'r1')
      .logSegments()
      .reduce((sum, e) => sum + (e.usedBytes ?? 0), 0);
    expect(c.session('n2', 'r1')!.resyncedBytes).toBeLessThan(r1Log); // only the delta at the join
    await write(3300, 6000, 2);
    for (const [key, v] of acked) expect((await client.get(key))?.toString()).toBe(v);
    await c.flush();
    await expectAllEquivalent(c);
    const [fresh] = (await backupStores(c, 'r1')).filter(
      (_, i) => map.find((r) => r.regionId === 'r1')!.backups[i] === 'n1',
    );
    expect(await dump(fresh!)).toEqual(await dump(primaryStore(c, 'r1')));
  });

  test('a backup that returns is re-synced from where it is, not from scratch', async () => {
    // replicas = nodes: no free node, so the region runs short until n4 comes back.
    const c = await cluster({ nodes: 4, regions: 3, replicas: 4, leaseTtlMs: 400 });
    const client = c.client({ operationTimeoutMs: 10_000 });
    const acked = new Map<string, string>();
    const write = async (from: number, to: number, round: number): Promise<void> => {
      for (let i = from; i < to; i++) {
        const key = keyIn(i % 3, i % 700);
        await client.put(key, value(i, round));
        acked.set(key, value(i, round));
      }
    };
    await write(0, 3000, 0);
    await c.killNode('n4');
    await c.waitForRegions((map) => map.every((r) => !r.backups.includes('n4')));
    expect(c.regions().map((r) => r.backups.length)).toEqual([2, 2, 2]);
    await write(3000, 4500, 1); // seals and compactions the returning node misses
    await c.restartNode('n4');
    await c.waitForRegions((map) => map.every((r) => r.backups.includes('n4')));
    for (const config of c.regions()) {
      const session = c.session(config.primary, config.regionId)!;
      const logBytes = session.store.logSegments().reduce((sum, e) => sum + (e.usedBytes ?? 0), 0);
      expect(session.resyncedBytes).toBeGreaterThan(0);
      expect(session.resyncedBytes).toBeLessThan(logBytes); // only what n4 missed (plus the levels)
    }
    await write(4500, 6000, 2);
    for (const [key, v] of acked) expect((await client.get(key))?.toString()).toBe(v);
    await c.flush();
    await expectAllEquivalent(c);
  });
});

describe('local cluster: primary loss (PROTOCOL §6–7)', () => {
  for (const mode of ['send-index', 'build-index'] as const) {
    test(`${mode}: after the primary's lease runs out a backup is promoted, rebases the other and serves every acknowledged write`, async () => {
      const c = await cluster({ mode, leaseTtlMs: 400 });
      const client = c.client({ operationTimeoutMs: 15_000 });
      const acked = new Map<string, string>();
      for (let i = 0; i < 2400; i++) {
        const key = keyIn(i % 3, i % 500);
        await client.put(key, value(i));
        acked.set(key, value(i));
      }
      const before = c.regions().find((r) => r.regionId === 'r0')!;
      expect(before).toMatchObject({ primary: 'n1', backups: ['n2', 'n3'] });
      // Writes in flight when the primary dies end acknowledged or unknown, never "failed".
      const inFlight = Array.from({ length: 40 }, (_, i) => {
        const key = keyIn(0, 5000 + i);
        return client.put(key, value(i, 7)).then(
          () => acked.set(key, value(i, 7)),
          (err: unknown) => expect(err).toBeInstanceOf(OutcomeUnknownError),
        );
      });
      // The coordinator expires n1's lease no earlier than its last keepalive's send time + TTL.
      const leaseEndsNoEarlierThan = c.runtime('n1').membership!.lastKeepaliveSentAtMs() + 400;
      await c.killNode('n1');
      await Promise.all(inFlight);
      await c.waitForRegions((map) => map.find((r) => r.regionId === 'r0')!.primary !== 'n1', 15_000);
      const promotedBy = c.clock.now();
      const after = c.regions().find((r) => r.regionId === 'r0')!;
      expect(after).toMatchObject({ epoch: before.epoch + 1, primary: 'n2', backups: ['n3'] });
      expect(promotedBy).toBeGreaterThanOrEqual(leaseEndsNoEarlierThan); // not before the old lease ran out
      const promotion = c.runtime('n2').promotions.find((p) => p.regionId === 'r0');
      expect(promotion).toBeDefined();

      // Every acknowledged write is there, through the new primary; new writes are acknowledged.
      for (const [key, v] of acked) expect((await client.get(key))?.toString()).toBe(v);
      for (let i = 0; i < 600; i++) {
        const key = keyIn(0, i % 500);
        await client.put(key, value(i, 9));
        acked.set(key, value(i, 9));
      }
      for (const [key, v] of acked) expect((await client.get(key))?.toString()).toBe(v);
      await c.flush();
      const primary = primaryStore(c, 'r0');
      const [backup] = await backupStores(c, 'r0');
      if (mode === 'send-index') expectEquivalent(primary, backup!);
      expect(await dump(backup!)).toEqual(await dump(primary));
      // The other regions lost n1 as a backup and kept serving.
      for (const r of c.regions()) expect(r.backups).not.toContain('n1');

      // n1 comes back: a backup of every region again — of r0 re-synced from scratch (its old
      // primary store may hold writes nobody acknowledged), of r1 and r2 from where it was.
      await c.restartNode('n1');
      await c.waitForRegions((map) => map.every((r) => r.backups.includes('n1')), 15_000);
      expect(c.runtime('n1').demotions).toEqual(['r0']);
      for (let i = 0; i < 600; i++) {
        const key = keyIn(i % 3, i % 500);
        await client.put(key, value(i, 11));
        acked.set(key, value(i, 11));
      }
      for (const [key, v] of acked) expect((await client.get(key))?.toString()).toBe(v);
      await c.flush();
      for (const config of c.regions()) {
        const p = primaryStore(c, config.regionId);
        const expected = await dump(p);
        for (const b of await backupStores(c, config.regionId)) {
          if (mode === 'send-index') expectEquivalent(p, b);
          expect(await dump(b)).toEqual(expected);
        }
      }
    });
  }
});

describe('local cluster: a stale primary (PROTOCOL §6)', () => {
  test('a primary paused past its lease is fenced when it wakes: it acknowledges nothing more and its late writes land nowhere', async () => {
    const c = await cluster({ leaseTtlMs: 400 });
    const client = c.client({ operationTimeoutMs: 15_000 });
    const acked = new Map<string, string>();
    for (let i = 0; i < 900; i++) {
      const key = keyIn(i % 3, i % 300);
      await client.put(key, value(i));
      acked.set(key, value(i));
    }
    const stale = c.session('n1', 'r0')!;
    const pause = c.pauseNode('n1', 1500);
    // Writes that reach the old primary while it is paused (a client that still routes to it).
    const late = Array.from({ length: 20 }, (_, i) =>
      stale.put(keyIn(0, 9000 + i), 'late').then(
        () => 'acknowledged',
        (err: unknown) => err,
      ),
    );
    await c.waitForRegions((map) => map.find((r) => r.regionId === 'r0')!.primary !== 'n1', 15_000);
    expect(c.regions().find((r) => r.regionId === 'r0')).toMatchObject({ primary: 'n2', epoch: 2 });
    // Still paused, its lease gone: it must not serve a read the new epoch has overtaken.
    await client.put(keyIn(0, 2), 'new epoch');
    await expect(stale.get(keyIn(0, 2))).rejects.toBeInstanceOf(WrongPrimaryError);
    await pause;
    const outcomes = await Promise.all(late);
    for (const outcome of outcomes) {
      expect(outcome).not.toBe('acknowledged');
      expect(outcome instanceof OutcomeUnknownError || outcome instanceof WrongPrimaryError).toBe(true);
    }
    // The old primary serves nothing any more; its late writes are nowhere in the new epoch.
    await expect(stale.get(keyIn(0, 1))).rejects.toBeInstanceOf(WrongPrimaryError);
    for (let i = 0; i < 20; i++) expect(await client.get(keyIn(0, 9000 + i))).toBeUndefined();
    for (const [key, v] of acked) expect((await client.get(key))?.toString()).toBe(v);
    await client.put(keyIn(0, 1), 'after');
    expect((await client.get(keyIn(0, 1)))?.toString()).toBe('after');
  });
});

describe('local cluster: partitions', () => {
  test('a backup cut off from its peers is replaced (its lease lives: the failed writes tell); nothing acknowledged is lost', async () => {
    const c = await cluster({ nodes: 4, regions: 3, replicas: 3, leaseTtlMs: 400 });
    const client = c.client({ operationTimeoutMs: 15_000 });
    const acked = new Map<string, string>();
    const write = async (from: number, to: number, round: number): Promise<void> => {
      for (let i = from; i < to; i++) {
        const key = keyIn(i % 3, i % 300);
        await client.put(key, value(i, round));
        acked.set(key, value(i, round));
      }
    };
    await write(0, 900, 0);
    c.partition('n4', 'peers'); // its lease lives: only the failed writes tell the primaries
    await write(900, 1800, 1);
    await c.waitForRegions((map) => map.every((r) => !r.backups.includes('n4')));
    c.heal();
    await write(1800, 2400, 2);
    for (const [key, v] of acked) expect((await client.get(key))?.toString()).toBe(v);
    await c.flush();
    for (const config of c.regions()) {
      const p = primaryStore(c, config.regionId);
      for (const b of await backupStores(c, config.regionId)) expect(await dump(b)).toEqual(await dump(p));
    }
  });

  test('a primary cut off from the coordinator stops serving once its lease runs out, and the region moves on', async () => {
    const c = await cluster({ leaseTtlMs: 400 });
    const client = c.client({ operationTimeoutMs: 15_000 });
    await client.put(keyIn(0, 1), 'before');
    const stale = c.session('n1', 'r0')!;
    c.partition('n1', 'coordinator');
    await c.waitForRegions((map) => map.find((r) => r.regionId === 'r0')!.primary !== 'n1', 15_000);
    await expect(stale.get(keyIn(0, 1))).rejects.toBeInstanceOf(WrongPrimaryError);
    await client.put(keyIn(0, 1), 'after');
    expect((await client.get(keyIn(0, 1)))?.toString()).toBe('after');
    c.heal();
  });
});
