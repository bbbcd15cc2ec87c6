/**
 * The replication data plane end to end on the memory fabric, without actors: a primary store
 * with a RegionReplicator, two backups with BackupRegion handlers. Each test is a short story of
 * one protocol path (PROTOCOL §2–5); the properties check replica equivalence (§8.5) after many
 * compactions, in Send-Index mode and in Build-Index mode (backups index the log themselves; no
 * actors here, so their stores compact by themselves with autoCompact).
 */
import * as fc from 'fast-check';
import { SimDevice } from '../../src/engine/sim-device.js';
import { Store, StoreFailedError } from '../../src/engine/store.js';
import { OutcomeUnknownError, StaleEpochError } from '../../src/errors.js';
import { MemoryFabric } from '../../src/fabric/memory.js';
import { BackupLink, BackupRefusedError } from '../../src/replication/backup-link.js';
import { BackupRegion } from '../../src/replication/backup-region.js';
import type { ReplicationMessage, ReplicationMode } from '../../src/replication/messages.js';
import { RegionReplicator } from '../../src/replication/region-replicator.js';
import { propertyParams } from '../support/property.js';
import { expectEquivalent } from '../support/replicas.js';
import { dump, TINY } from '../support/store.js';

interface Setup {
  fabric: MemoryFabric;
  primary: Store;
  backups: Store[];
  regions: BackupRegion[];
  links: BackupLink[];
  replicator: RegionReplicator;
}

async function setUp(
  backupCount = 2,
  extra: Partial<Parameters<typeof Store.open>[0]> = {},
  mode: ReplicationMode = 'send-index',
): Promise<Setup> {
  const fabric = new MemoryFabric();
  const primary = await Store.open({ ...TINY, device: new SimDevice(), ...extra });
  const backups: Store[] = [];
  const regions: BackupRegion[] = [];
  for (let i = 0; i < backupCount; i++) {
    // Build-Index backups flush and compact by themselves here (no Flush/Compaction actors).
    const store = await Store.open({
      ...TINY,
      device: new SimDevice(),
      role: 'backup',
      ...(mode === 'build-index' ? { autoCompact: true, rebuildL0: true } : {}),
    });
    backups.push(store);
    await fabric.listen(`b${i}`, { nodeId: `b${i}` }, (connection) => {
      regions.push(new BackupRegion(connection, { nodeId: `b${i}`, openStore: async () => store }));
    });
  }
  const links: BackupLink[] = [];
  for (let i = 0; i < backupCount; i++) {
    const connection = await fabric.connect(`b${i}`, { nodeId: 'p', epoch: 1 });
    const link = new BackupLink(connection, {
      regionId: 'r0',
      epoch: 1,
      primaryNodeId: 'p',
      segmentBytes: TINY.segmentBytes!,
      logBufferCount: 4,
      mode,
      fromSegmentSeq: 0,
    });
    await link.open();
    links.push(link);
  }
  const replicator = new RegionReplicator({ store: primary, links, mode, fromSegmentSeq: 0 });
  replicator.start();
  return { fabric, primary, backups, regions, links, replicator };
}

async function settle(s: Setup): Promise<void> {
  await s.primary.settleCommits();
  await s.replicator.commitsInstalled();
  for (const region of s.regions) await region.idle();
}

describe('replication data plane (memory fabric)', () => {
  test('open: the backup registers K log buffers and two index buffers', async () => {
    const s = await setUp(1);
    expect(s.regions).toHaveLength(1);
    expect(s.regions[0]!.regionId).toBe('r0');
    expect(s.regions[0]!.epoch).toBe(1);
  });

  test('put: acknowledged only after the bytes are in every backup buffer at the same offset', async () => {
    const s = await setUp(2);
    await s.primary.put('k1', 'v1');
    const tail = s.primary.logSegments().at(-1)!;
    expect(tail.seq).toBe(0);
    expect((await s.primary.get('k1'))?.toString()).toBe('v1');
    expect(s.links.every((l) => l.writtenBytes > 0)).toBe(true);
    expect(s.links[0]!.writtenBytes).toBe(s.links[1]!.writtenBytes);
  });

  test('seal: full segments are persisted and mapped at every backup', async () => {
    const s = await setUp(2, { l0Bytes: 1 << 20 });
    for (let i = 0; i < 100; i++) await s.primary.put(`k${i}`, 'x'.repeat(100));
    await settle(s);
    const sealed = s.primary.logSegments().filter((e) => e.usedBytes !== null);
    expect(sealed.length).toBeGreaterThan(2);
    for (const backup of s.backups) {
      const map = new Map(backup.replica.segmentMapEntries());
      for (const e of sealed) expect(map.has(e.offset)).toBe(true);
      const persisted = backup.logSegments();
      for (const e of sealed) {
        const local = persisted.find((p) => p.seq === e.seq)!;
        expect(local.usedBytes).toBe(e.usedBytes);
        expect(backup.replica.readLogSegment(e.seq).equals(s.primary.replica.readLogSegment(e.seq))).toBe(
          true,
        );
      }
    }
  });

  test('back-pressure: with K buffers, a backup that stops persisting holds the primary after K segments', async () => {
    const s = await setUp(1, { l0Bytes: 1 << 20 });
    // Stall the backup: its message handling waits on a promise we control.
    let release!: () => void;
    const stalled = new Promise<void>((resolve) => (release = resolve));
    const region = s.regions[0]! as unknown as { queue: Promise<void> };
    region.queue = region.queue.then(() => stalled);
    let acked = 0;
    const puts = Array.from({ length: 300 }, (_, i) =>
      s.primary.put(`k${i}`, 'x'.repeat(100)).then(() => acked++),
    );
    for (let i = 0; i < 50; i++) await new Promise((resolve) => setImmediate(resolve));
    const segmentsWritten = s.primary.logSegments().length;
    expect(segmentsWritten).toBeGreaterThan(5);
    expect(acked).toBeLessThan(300);
    release();
    await Promise.all(puts);
    expect(acked).toBe(300);
  });

  test('flush and compaction: index segments are shipped, translated and installed', async () => {
    const s = await setUp(2);
    for (let i = 0; i < 400; i++) await s.primary.put(`k${String(i % 150).padStart(3, '0')}`, `v${i}`);
    await s.primary.compactAll();
    await settle(s);
    expect(s.regions.every((r) => r.stats.shippedIndexSegments > 0 && r.stats.commits > 0)).toBe(true);
    for (const backup of s.backups) {
      expectEquivalent(s.primary, backup);
      expect(await dump(backup)).toEqual(await dump(s.primary));
    }
  });

  test('after the replicator stops, no write is acknowledged until the next one starts (seed 923763848)', async () => {
    const s = await setUp(2);
    await s.primary.put('before', 'v');
    const written = s.links.map((l) => l.writtenBytes);
    // A write its session admitted before stopping may reach its commit only afterwards.
    s.replicator.stop();
    await expect(s.primary.put('late', 'v')).rejects.toBeInstanceOf(OutcomeUnknownError);
    await expect(s.primary.delete('before')).rejects.toBeInstanceOf(OutcomeUnknownError);
    expect(await s.primary.get('late')).toBeUndefined();
    expect((await s.primary.get('before'))?.toString()).toBe('v');
    expect(s.links.map((l) => l.writtenBytes)).toEqual(written);
    // The next replicator's gate replaces the refusing one; the old one cannot remove it.
    const next = new RegionReplicator({
      store: s.primary,
      links: s.links,
      mode: 'send-index',
      fromSegmentSeq: 0,
    });
    next.start();
    s.replicator.stop();
    await s.primary.put('after', 'v');
    expect(s.links.every((l, i) => l.writtenBytes > written[i]!)).toBe(true);
  });

  test('a message with a stale epoch is refused; the link fails and later writes are not acknowledged', async () => {
    const s = await setUp(1);
    await s.primary.put('before', 'v');
    // A newer configuration (epoch 2) reached the backup; this primary's link still says epoch 1.
    s.regions[0]!.epoch = 2;
    const failures: unknown[] = [];
    s.links[0]!.onFailure((err) => failures.push(err));
    // Tail sync → SegmentSealed{epoch 1} → Refused{STALE_EPOCH}: the flush cannot complete
    // safely, so the primary store fail-stops with the stale epoch as the cause.
    const flushed = await s.primary.flush().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(flushed).toBeInstanceOf(StoreFailedError);
    expect((flushed as StoreFailedError).cause).toBeInstanceOf(StaleEpochError);
    await settle(s).catch(() => {});
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(s.regions[0]!.stats.refused).toBe(1);
    expect(failures).toHaveLength(1);
    expect(failures[0]).toBeInstanceOf(StaleEpochError);
    await expect(s.primary.put('after', 'v')).rejects.toBeInstanceOf(StoreFailedError);
    // Nothing after the refusal reached the backup's log.
    expect(s.regions[0]!.stats.sealedSegments).toBe(0);
  });

  test('build-index: backups index sealed segments themselves and compact; no index segment is shipped', async () => {
    const s = await setUp(2, {}, 'build-index');
    for (let i = 0; i < 600; i++) {
      const key = `k${String((i * 7) % 409).padStart(3, '0')}`;
      if (i % 13 === 0) await s.primary.delete(key);
      else await s.primary.put(key, `v${i}-${'x'.repeat(i % 50)}`);
    }
    // Tail sync: the records of the active segment reach the backups' L0 too.
    await s.primary.flush();
    await settle(s);
    expect(s.primary.stats().compactionCount + s.primary.stats().trivialMoveCount).toBeGreaterThan(0);
    for (const [i, backup] of s.backups.entries()) {
      expect(s.regions[i]!.mode).toBe('build-index');
      expect(s.regions[i]!.stats).toMatchObject({ shippedIndexSegments: 0, commits: 0, refused: 0 });
      expect(s.regions[i]!.stats.sealedSegments).toBeGreaterThan(5);
      // Levels of its own, built from its own flushes, pointing into its own segments.
      expect(backup.stats().flushCount).toBeGreaterThan(3);
      expect(backup.levelDescriptors().flat().length).toBeGreaterThan(0);
      expect(await dump(backup)).toEqual(await dump(s.primary));
      await backup.flush();
      expect(backup.stats().l0.entryCount).toBe(0);
      expect(await dump(backup)).toEqual(await dump(s.primary));
    }
  });

  test('build-index: an index segment or a compaction commit is refused with MODE_MISMATCH', async () => {
    const s = await setUp(2, {}, 'build-index');
    await s.primary.put('k', 'v');
    const failures: unknown[][] = [[], []];
    s.links.forEach((link, i) => {
      link.onFailure((err) => failures[i]!.push(err));
    });
    const installed = s.links[0]!.commit({
      compactionId: 1,
      srcLevel: 0,
      dstLevel: 1,
      newSegments: [],
      removedSegments: [],
      trivialMove: true,
      replayFrom: { seq: 0, offset: 0, lsn: 1 },
    });
    await expect(installed).rejects.toBeInstanceOf(BackupRefusedError);
    await expect(installed).rejects.toThrow(/MODE_MISMATCH/);
    // BackupLink never ships index segments in this mode; send one by hand.
    const send = (s.links[1]! as unknown as { send(m: ReplicationMessage): void }).send.bind(s.links[1]!);
    send({
      type: 'IndexSegment',
      regionId: 'r0',
      epoch: 1,
      compactionId: 1,
      dstLevel: 1,
      ordinal: 0,
      primarySegment: 4096,
      usedBytes: 10,
      crc32c: 0,
      slot: 0,
    });
    for (const region of s.regions) await region.idle();
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    for (const [i, region] of s.regions.entries()) {
      expect(region.stats.refused).toBe(1);
      expect(region.stats.shippedIndexSegments + region.stats.commits).toBe(0);
      expect(failures[i]).toHaveLength(1);
      expect(failures[i]![0]).toBeInstanceOf(BackupRefusedError);
      expect(String((failures[i]![0] as Error).message)).toMatch(/MODE_MISMATCH/);
    }
  });

  test('property: random puts/deletes with many compactions keep every backup equivalent (§8.5)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({ key: fc.nat({ max: 80 }), value: fc.option(fc.nat({ max: 300 }), { freq: 5 }) }),
          { minLength: 1, maxLength: 400, size: 'max' },
        ),
        async (ops) => {
          const s = await setUp(2);
          const model = new Map<string, string>();
          for (const op of ops) {
            const key = `key${op.key}`;
            if (op.value === null) {
              await s.primary.delete(key);
              model.delete(key);
            } else {
              const value = 'v'.repeat(op.value % 40) + op.value;
              await s.primary.put(key, value);
              model.set(key, value);
            }
          }
          await s.primary.compactAll();
          await settle(s);
          const expected = new Map(
            [...model].map(([k, v]) => [Buffer.from(k).toString('hex'), Buffer.from(v).toString('hex')]),
          );
          expect(await dump(s.primary)).toEqual(expected);
          for (const backup of s.backups) {
            expectEquivalent(s.primary, backup);
            expect(await dump(backup)).toEqual(expected);
          }
        },
      ),
      propertyParams('data plane equivalence', 25),
    );
  });

  test('property (build-index): random puts/deletes leave every backup with the same data as the primary', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({ key: fc.nat({ max: 80 }), value: fc.option(fc.nat({ max: 300 }), { freq: 5 }) }),
          { minLength: 1, maxLength: 400, size: 'max' },
        ),
        async (ops) => {
          const s = await setUp(2, {}, 'build-index');
          const model = new Map<string, string>();
          for (const op of ops) {
            const key = `key${op.key}`;
            if (op.value === null) {
              await s.primary.delete(key);
              model.delete(key);
            } else {
              const value = 'v'.repeat(op.value % 40) + op.value;
              await s.primary.put(key, value);
              model.set(key, value);
            }
          }
          await s.primary.compactAll();
          await settle(s);
          const expected = new Map(
            [...model].map(([k, v]) => [Buffer.from(k).toString('hex'), Buffer.from(v).toString('hex')]),
          );
          expect(await dump(s.primary)).toEqual(expected);
          for (const [i, backup] of s.backups.entries()) {
            expect(s.regions[i]!.stats.shippedIndexSegments).toBe(0);
            // The levels differ in shape from the primary's (own flush points): compare data only.
            expect(await dump(backup)).toEqual(expected);
            await backup.compactAll();
            expect(await dump(backup)).toEqual(expected);
          }
        },
      ),
      propertyParams('data plane build-index equivalence', 25),
    );
  });
});
