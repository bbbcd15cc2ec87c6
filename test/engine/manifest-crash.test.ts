/**
 * Crashes at every manifest-log boundary of a store's life (each edit's append and its sync, each
 * step of a rotation: the new snapshot file, CURRENT, the old file's removal), on a primary that
 * seals, flushes and compacts, and on a Send-Index backup installing shipped log segments, index
 * segments and compaction commits. After each crash: the recovered manifest is exactly the last
 * durable one (or, at a sync, the one being committed), and nothing acknowledged is lost — every
 * acknowledged write of the primary reads back; every shipped log segment and compaction the
 * backup acknowledged is there and every segment it names verifies.
 */
import { SimDevice } from '../../src/engine/sim-device.js';
import { Store } from '../../src/engine/store.js';
import { TalosError } from '../../src/errors.js';
import { type BackupStore, backupStore } from '../../src/replication/backup-store.js';
import { canon, MetaCrashView, peek } from '../support/manifest.js';
import { levelEntries } from '../support/replicas.js';
import { TINY } from '../support/store.js';

jest.setTimeout(120_000);

const OPTIONS = { ...TINY, syncPolicy: 'always' as const, manifestRotateBytes: 1024 };
const WRITES = 400;
const keyOf = (i: number): string => `key-${(i * 7) % 331}`;
const valueFor = (i: number): string => `value-${i}-${'x'.repeat(10 + (i % 40))}`;

const CRASHES = [
  { keepProbability: 0, tearProbability: 0 },
  { keepProbability: 1, tearProbability: 1 },
  { keepProbability: 0.5, tearProbability: 0.5 },
];

const isCrash = (err: unknown): boolean =>
  err instanceof TalosError && ['DEVICE_CRASHED', 'STORE_FAILED', 'OUTCOME_UNKNOWN'].includes(err.code);

/** Runs the primary workload on `view` until it ends or the view crashes; returns what was acknowledged. */
async function primaryWorkload(view: MetaCrashView) {
  const acked = new Map<string, string>();
  let inFlight: { key: string; value: string } | undefined;
  try {
    const store = await Store.open({ ...OPTIONS, device: view });
    for (let i = 0; i < WRITES; i++) {
      inFlight = { key: keyOf(i), value: valueFor(i) };
      await store.put(inFlight.key, inFlight.value);
      acked.set(inFlight.key, inFlight.value);
      inFlight = undefined;
      if (i % 50 === 49) await store.flush();
    }
    await store.close();
  } catch (err) {
    if (!isCrash(err)) throw err;
  }
  // Let an abandoned store's background work fail against the dead view.
  await new Promise((resolve) => setImmediate(resolve));
  return { acked, inFlight };
}

describe('manifest crash points: a primary', () => {
  it('at every append, sync and rotation step: the last durable manifest, no acknowledged write lost', async () => {
    const probe = new MetaCrashView(new SimDevice(), undefined);
    await primaryWorkload(probe);
    const total = probe.metaOps;
    expect(total).toBeGreaterThan(40);
    const hit = new Set<string>();
    for (const [c, crash] of CRASHES.entries()) {
      for (let at = 1; at <= total; at++) {
        const sim = new SimDevice({ seed: at * 7 + c });
        const view = new MetaCrashView(sim, at, crash);
        const { acked, inFlight } = await primaryWorkload(view);
        if (view.crashed === undefined) continue; // the workload's ops differ a little run to run
        hit.add(view.crashed.action);
        const where = `crash at meta op ${at}/${total} (${view.crashed.action} ${view.crashed.name}, ${JSON.stringify(crash)})`;
        const manifest = canon(peek(sim));
        if (!view.allowed.map(canon).includes(manifest))
          throw new Error(`${where}: recovered a manifest never durable`);
        const store = await Store.open({ ...OPTIONS, device: sim });
        for (const [key, value] of acked) {
          const got = (await store.get(key))?.toString();
          const ok = got === value || (inFlight?.key === key && got === inFlight.value);
          if (!ok)
            throw new Error(`${where}: ${key} = ${got?.slice(0, 20)}, acknowledged ${value.slice(0, 20)}`);
        }
        expect(store.verifyPersisted()).toBeUndefined();
        await store.put('after', 'crash');
        await store.close();
        const again = await Store.open({ ...OPTIONS, device: sim });
        expect((await again.get('after'))?.toString()).toBe('crash');
        await again.close();
      }
    }
    expect([...hit].sort()).toEqual(['append', 'remove', 'replace', 'sync']);
  });
});

/** A primary shipping to a backup on `view`, as the replication layer does (Send-Index). */
async function backupWorkload(view: MetaCrashView) {
  const primary = await Store.open({
    ...TINY,
    syncPolicy: 'always',
    device: new SimDevice({ name: 'primary' }),
  });
  const shipped: { seq: number; usedBytes: number }[] = [];
  let installed = 0;
  let backup: Store | undefined;
  let dead = false;
  // One backup operation at a time, in hook order (a BackupRegion's queue); each acknowledged
  // (recorded) only once it resolved.
  let queue: Promise<void> = Promise.resolve();
  const onBackup = (f: (b: BackupStore) => Promise<unknown> | unknown): void => {
    queue = queue.then(async () => {
      if (dead || backup === undefined) return;
      try {
        await f(backupStore(backup));
      } catch (err) {
        if (!isCrash(err)) throw err;
        dead = true;
      }
    });
  };
  try {
    backup = await Store.open({ ...TINY, manifestRotateBytes: 1024, role: 'backup', device: view });
  } catch (err) {
    if (!isCrash(err)) throw err;
    dead = true;
  }
  onBackup((b) => b.setMapOwner('primary'));
  primary.hooks.on('segmentSealed', (e) =>
    onBackup(async (b) => {
      await b.writeShippedLogSegment({
        seq: e.seq,
        primarySegmentOffset: e.segmentOffset,
        bytes: Buffer.from(e.bytes),
        crc32c: e.crc32c,
      });
      shipped.push({ seq: e.seq, usedBytes: e.usedBytes });
    }),
  );
  primary.hooks.on('indexSegmentWritten', (e) =>
    onBackup((b) =>
      b.writeShippedIndexSegment({ primarySegmentOffset: e.segmentOffset, bytes: Buffer.from(e.bytes) }),
    ),
  );
  primary.hooks.on('compactionCommitted', (e) =>
    onBackup(async (b) => {
      await b.installShippedCompaction(e);
      installed = e.compactionId;
    }),
  );
  for (let i = 0; i < WRITES; i++) await primary.put(keyOf(i), valueFor(i));
  await primary.flush();
  await primary.close();
  await queue;
  return { shipped, installed };
}

describe('manifest crash points: a Send-Index backup', () => {
  it('at every append, sync and rotation step: shipped segments and commits it acknowledged survive', async () => {
    const probe = new MetaCrashView(new SimDevice(), undefined);
    const { installed } = await backupWorkload(probe);
    expect(installed).toBeGreaterThan(5);
    const total = probe.metaOps;
    const hit = new Set<string>();
    for (const [c, crash] of CRASHES.entries()) {
      for (let at = 1; at <= total; at++) {
        const sim = new SimDevice({ seed: at * 13 + c });
        const view = new MetaCrashView(sim, at, crash);
        const { shipped, installed: acked } = await backupWorkload(view);
        if (view.crashed === undefined) continue;
        hit.add(view.crashed.action);
        const where = `backup crash at meta op ${at}/${total} (${view.crashed.action} ${view.crashed.name})`;
        if (!view.allowed.map(canon).includes(canon(peek(sim))))
          throw new Error(`${where}: manifest never durable`);
        if (peek(sim) === undefined) continue; // crashed while creating the store: nothing acknowledged
        const backup = await Store.open({ ...TINY, device: sim });
        expect(backup.role).toBe('backup');
        expect(backup.verifyPersisted()).toBeUndefined();
        const segments = new Map(backup.logSegments().map((s) => [s.seq, s.usedBytes] as const));
        for (const s of shipped) {
          if (!((segments.get(s.seq) ?? -1) >= s.usedBytes))
            throw new Error(`${where}: shipped segment ${s.seq} lost`);
        }
        expect(backup.replica.lastCompactionId()).toBeGreaterThanOrEqual(acked);
        levelEntries(backup); // every installed index segment reads
        await backup.close();
      }
    }
    expect([...hit].sort()).toEqual(['append', 'remove', 'replace', 'sync']);
  });

  it('installs a shipped compaction with one device sync and one manifest sync, not one per segment', async () => {
    const device = new SimDevice({ name: 'backup' });
    const primary = await Store.open({ ...TINY, device: new SimDevice() });
    const backup = await Store.open({ ...TINY, role: 'backup', device });
    const perCommit: number[] = [];
    let segments = 0;
    let mostSegments = 0;
    let before = device.io().syncCount;
    let queue: Promise<void> = Promise.resolve();
    const then = (f: () => Promise<unknown> | unknown): void => {
      queue = queue.then(async () => {
        await f();
      });
    };
    primary.hooks.on('segmentSealed', (e) => {
      const bytes = Buffer.from(e.bytes);
      then(async () => {
        await backupStore(backup).writeShippedLogSegment({
          seq: e.seq,
          primarySegmentOffset: e.segmentOffset,
          bytes,
        });
        before = device.io().syncCount;
      });
    });
    primary.hooks.on('indexSegmentWritten', (e) => {
      const bytes = Buffer.from(e.bytes);
      then(() => {
        backupStore(backup).writeShippedIndexSegment({ primarySegmentOffset: e.segmentOffset, bytes });
        segments++;
      });
    });
    primary.hooks.on('compactionCommitted', (e) => {
      then(async () => {
        await backupStore(backup).installShippedCompaction(e);
        perCommit.push(device.io().syncCount - before);
        before = device.io().syncCount;
        mostSegments = Math.max(mostSegments, segments);
        segments = 0;
      });
    });
    for (let i = 0; i < 3000; i++) await primary.put(`k${(i * 7919) % 1500}`, 'v');
    await primary.flush();
    // Due compactions are bounded jobs (a few segments each): a whole-level merge makes one commit
    // of many segments.
    await primary.compactAll();
    await queue;
    expect(mostSegments).toBeGreaterThanOrEqual(3); // one sync per segment would exceed the bound below
    // Each commit: at most one data sync (none for a trivial move) + one manifest edit sync
    // (a rotation: two atomic replaces, counted as one sync each by SimDevice).
    for (const n of perCommit) expect(n).toBeLessThanOrEqual(3);
    await primary.close();
    await backup.close();
  });
});
