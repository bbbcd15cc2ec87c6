/**
 * Wires a store's parts from its resolved options and recovered manifest, in dependency order:
 * segment allocator (the manifest's segments in use) → StoreEdits (maps, persist) → ValueLog →
 * VersionSet (levels, replayFrom) → Compactor (L0, flush, compaction) → GroupCommit (applies
 * committed groups to L0) → WritePath. Parts persist through StoreEdits, which reaches the value
 * log and the version set lazily, since they are built after it.
 */
import { Compactor } from './compaction.js';
import type { Device } from './device.js';
import type { FailStop } from './fail-stop.js';
import { GroupCommit } from './group-commit.js';
import type { StoreHooks } from './hooks.js';
import { createBlockCache } from './index-segment-reader.js';
import type { LogPosition, ManifestData } from './manifest.js';
import type { ManifestLog } from './manifest-log.js';
import type { ResolvedOptions } from './options.js';
import { SegmentAllocator } from './segment-allocator.js';
import { SnapshotRegistry } from './snapshot.js';
import { StoreEdits } from './store-edits.js';
import { ValueLog } from './value-log.js';
import { VersionSet } from './version-set.js';
import { WritePath } from './write-path.js';

export interface StoreParts {
  allocator: SegmentAllocator;
  edits: StoreEdits;
  valueLog: ValueLog;
  versions: VersionSet;
  snapshots: SnapshotRegistry;
  compactor: Compactor;
  commits: GroupCommit;
  writes: WritePath;
}

export interface StoreWiring {
  device: Device;
  options: ResolvedOptions;
  manifestLog: ManifestLog;
  manifest: ManifestData | undefined;
  hooks: StoreHooks;
  failStop: FailStop;
  /** Where replay must start to rebuild what is not in L0 (the store decides by role). */
  firstUnappliedPosition: () => LogPosition;
  /** Whether the store's close has begun. */
  closing: () => boolean;
}

export function assembleStore(w: StoreWiring): StoreParts {
  const { device, options: o, manifest, hooks, failStop } = w;
  const log = manifest?.log.map((e) => ({ ...e })) ?? [];
  const inUse = [...log.map((e) => e.offset), ...(manifest?.levels.flat().map((d) => d.offset) ?? [])];
  const allocator = new SegmentAllocator(
    o.segmentBytes,
    manifest?.allocatedSegmentCount ?? 0,
    inUse,
    o.reservedSegments,
  );
  // Assigned below, after `edits` (they persist through it; it reaches them lazily).
  let valueLog: ValueLog | undefined;
  let versions: VersionSet | undefined;
  const edits = new StoreEdits(
    {
      manifestLog: w.manifestLog,
      role: o.role,
      segmentBytes: o.segmentBytes,
      allocator,
      failStop,
      valueLog: () => valueLog!,
      versions: () => versions!,
    },
    manifest,
  );
  const persist = (): Promise<void> => edits.persist();
  valueLog = new ValueLog(device, allocator, hooks, o.segmentBytes, log, persist);
  versions = new VersionSet(
    device,
    createBlockCache(o.blockCacheBytes),
    allocator,
    o.l0Bytes,
    o.growthFactor,
    o.maxLevels,
    {
      levels: manifest?.levels ?? [],
      replayFrom: manifest === undefined ? { seq: 0, offset: 0, lsn: 1 } : { ...manifest.replayFrom },
      nextCompactionId: manifest?.nextCompactionId ?? 1,
    },
    persist,
  );
  const vl = valueLog;
  const compactor = new Compactor({
    device,
    allocator,
    hooks,
    versions,
    failStop,
    segmentBytes: o.segmentBytes,
    l0Bytes: o.l0Bytes,
    autoCompact: o.autoCompact,
    syncTail: (partial) => vl.syncTail(partial),
    firstUnappliedPosition: w.firstUnappliedPosition,
  });
  const commits = new GroupCommit(o.syncPolicy, failStop, valueLog, (batch) => {
    for (const p of batch) compactor.l0.insert(p.key, p.entry);
    compactor.afterApply();
  });
  const writes = new WritePath({
    role: o.role,
    segmentBytes: o.segmentBytes,
    l0Bytes: o.l0Bytes,
    maxKeyBytes: o.maxKeyBytes,
    maxValueBytes: o.maxValueBytes,
    failStop,
    valueLog,
    compactor,
    commits,
    closing: w.closing,
  });
  // Segments an install replaced are freed once no live snapshot reads them (snapshot.ts).
  const snapshots = new SnapshotRegistry((offset) => allocator.release(offset));
  versions.releaseSegment = (offset) => snapshots.release(offset);
  valueLog.nextLsn = versions.replayFrom.lsn;
  return { allocator, edits, valueLog, versions, compactor, commits, writes, snapshots };
}
