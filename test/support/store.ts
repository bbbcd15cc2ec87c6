import type { CompactionCommittedEvent } from '../../src/engine/hooks.js';
import { SimDevice } from '../../src/engine/sim-device.js';
import { Store, type StoreOptions } from '../../src/engine/store.js';
import { backupStore } from '../../src/replication/backup-store.js';

/** Tiny sizes so that seals, flushes and compactions through several levels happen constantly. */
export const TINY: Omit<StoreOptions, 'device' | 'dir'> = {
  segmentBytes: 4096,
  l0Bytes: 1024,
  growthFactor: 2,
  maxLevels: 4,
  maxKeyBytes: 64,
  blockCacheBytes: 64 * 1024,
};

export async function openTiny(device: SimDevice = new SimDevice(), extra: Partial<StoreOptions> = {}) {
  const store = await Store.open({ ...TINY, device, ...extra });
  return { store, device };
}

/** Full scan of a store as a Map of hex key → hex value. */
export async function dump(store: Store): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const { key, value } of await store.scan()) out.set(key.toString('hex'), value.toString('hex'));
  return out;
}

export function sortedEntries(model: Map<string, string>): [string, string][] {
  return [...model.entries()].sort((a, b) =>
    Buffer.compare(Buffer.from(a[0], 'hex'), Buffer.from(b[0], 'hex')),
  );
}

/** What `ship` wired: the compaction commits seen, and a wait for the backup to catch up. */
export interface Shipping {
  commits: CompactionCommittedEvent[];
  /** Resolves once every hook event so far was handled by the backup; rethrows the first failure. */
  idle(): Promise<void>;
}

const backupQueues = new WeakMap<Store, { queue: Promise<void>; failure: unknown }>();

/** Runs `op` on `backup` after every operation queued on it before (a BackupRegion's queue). */
export function onBackupQueue(backup: Store, op: () => unknown): Promise<void> {
  let q = backupQueues.get(backup);
  if (q === undefined) {
    q = { queue: Promise.resolve(), failure: undefined };
    backupQueues.set(backup, q);
  }
  const state = q;
  state.queue = state.queue.then(async () => {
    if (state.failure !== undefined) return;
    try {
      await op();
    } catch (err) {
      state.failure = err;
    }
  });
  return state.queue;
}

/** Waits for every operation queued on `backup` (onBackupQueue); rethrows the first failure. */
export async function backupIdle(backup: Store): Promise<void> {
  const q = backupQueues.get(backup);
  if (q === undefined) return;
  await q.queue;
  if (q.failure !== undefined) throw q.failure;
}

/**
 * Wires a primary's hooks to a backup, as the replication actors do: one backup operation at a
 * time, in event order (the hook's bytes copied at the event).
 */
export function ship(primary: Store, backup: Store): Shipping {
  const commits: CompactionCommittedEvent[] = [];
  primary.hooks.on('segmentSealed', (e) => {
    const bytes = Buffer.from(e.bytes);
    void onBackupQueue(backup, () =>
      backupStore(backup).writeShippedLogSegment({
        seq: e.seq,
        primarySegmentOffset: e.segmentOffset,
        bytes,
        crc32c: e.crc32c,
      }),
    );
  });
  primary.hooks.on('indexSegmentWritten', (e) => {
    const bytes = Buffer.from(e.bytes);
    void onBackupQueue(backup, () =>
      backupStore(backup).writeShippedIndexSegment({ primarySegmentOffset: e.segmentOffset, bytes }),
    );
  });
  primary.hooks.on('compactionCommitted', (e) => {
    commits.push(e);
    void onBackupQueue(backup, () => backupStore(backup).installShippedCompaction(e));
  });
  return { commits, idle: () => backupIdle(backup) };
}
