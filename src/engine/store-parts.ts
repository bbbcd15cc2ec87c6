/**
 * Wires a store's parts from its resolved options and recovered manifest, in dependency order:
 * segment allocator (the manifest's segments in use) → StoreEdits (maps, persist) → ValueLog →
 * VersionSet (levels, replayFrom) → Compactor (L0, flush, compaction) → GroupCommit (applies
 * committed groups to L0) → WritePath → SnapshotRegistry; then what works over them: the read
 * path's, the integrity checks' and the statistics' sources, the replica operations
 * (store-replica.ts) and the recovery an opened store runs (recovery.ts). Parts persist through
 * StoreEdits, which reaches the value log and the version set lazily, since they are built after it.
 */
import { Compactor } from './compaction.js';
import type { Device } from './device.js';
import type { FailStop } from './fail-stop.js';
import { GroupCommit } from './group-commit.js';
import type { StoreHooks } from './hooks.js';
import { createBlockCache } from './index-segment-reader.js';
import type { LogPosition, ManifestData, StoreRole } from './manifest.js';
import type { ManifestLog } from './manifest-log.js';
import type { ResolvedOptions } from './options.js';
import type { ReadPathDeps } from './read-path.js';
import { type RecoveryReport, recoverStore } from './recovery.js';
import { SegmentAllocator } from './segment-allocator.js';
import { SnapshotRegistry } from './snapshot.js';
import { StoreEdits } from './store-edits.js';
import type { IntegrityDeps } from './store-integrity.js';
import { type IndexedPosition, StoreReplica } from './store-replica.js';
import type { StoreStatsSources } from './store-stats.js';
import { ValueLog } from './value-log.js';
import { VersionSet } from './version-set.js';
import { WritePath } from './write-path.js';

/** The parts that hold durable state: allocator, maps and manifest writes, log, levels. */
interface DurableParts {
  allocator: SegmentAllocator;
  edits: StoreEdits;
  valueLog: ValueLog;
  versions: VersionSet;
}

/** The parts that run jobs on the durable ones: L0 and its flush and compactions, the write path. */
interface JobParts {
  snapshots: SnapshotRegistry;
  compactor: Compactor;
  commits: GroupCommit;
  writes: WritePath;
}

/** What works over the parts: each the sources of one job. */
interface PartViews {
  reads: ReadPathDeps;
  integrity: IntegrityDeps;
  stats: StoreStatsSources;
  replica: StoreReplica;
  /** Recovers the opened store (recovery.ts); `existing`: the device held a manifest. */
  recover: (existing: boolean) => Promise<void>;
}

export type StoreParts = DurableParts & JobParts & PartViews;

export interface StoreWiring {
  device: Device;
  options: ResolvedOptions;
  manifestLog: ManifestLog;
  manifest: ManifestData | undefined;
  hooks: StoreHooks;
  failStop: FailStop;
  /** Whether the store's close has begun. */
  closing: () => boolean;
  /** Ends the instance without the closing flush (ReplicaOps.rewriteManifestAndAbandon). */
  abandon: () => Promise<void>;
}

export function assembleStore(w: StoreWiring): StoreParts {
  const durable = assembleDurable(w);
  const indexed: IndexedPosition = { position: { ...durable.versions.replayFrom } };
  const jobs = assembleJobs(w, durable, indexed);
  durable.valueLog.nextLsn = durable.versions.replayFrom.lsn;
  return { ...durable, ...jobs, ...assembleViews(w, { ...durable, ...jobs }, indexed) };
}

function assembleDurable(w: StoreWiring): DurableParts {
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
  return { allocator, edits, valueLog, versions };
}

function assembleJobs(w: StoreWiring, d: DurableParts, indexed: IndexedPosition): JobParts {
  const { device, options: o, hooks, failStop } = w;
  const { allocator, valueLog, versions } = d;
  // Assigned below, after the compactor (which asks it where replay starts, lazily).
  let writes: WritePath | undefined;
  const compactor = new Compactor({
    device,
    allocator,
    hooks,
    versions,
    failStop,
    segmentBytes: o.segmentBytes,
    l0Bytes: o.l0Bytes,
    autoCompact: o.autoCompact,
    syncTail: (partial) => valueLog.syncTail(partial),
    firstUnappliedPosition: () => firstUnappliedPosition(o.role, indexed, writes!),
  });
  const commits = new GroupCommit(o.syncPolicy, failStop, valueLog, (batch) => {
    for (const p of batch) compactor.l0.insert(p.key, p.entry);
    compactor.afterApply();
  });
  writes = new WritePath({
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
  return { compactor, commits, writes, snapshots };
}

function assembleViews(w: StoreWiring, p: DurableParts & JobParts, indexed: IndexedPosition): PartViews {
  const { device, options: o, failStop } = w;
  const { allocator, edits, valueLog, versions, compactor, writes } = p;
  const integrity: IntegrityDeps = { device, failStop, valueLog, versions };
  const report: RecoveryReport = { replayedRecordCount: 0, replayedBytes: 0, corruptSegments: [] };
  const replica = new StoreReplica({
    role: o.role,
    device,
    allocator,
    failStop,
    valueLog,
    versions,
    compactor,
    edits,
    integrity,
    indexed,
    abandon: w.abandon,
  });
  const recover = (existing: boolean): Promise<void> =>
    recoverStore(
      {
        device,
        segmentBytes: o.segmentBytes,
        valueLog,
        compactor,
        replayFrom: versions.replayFrom,
        report,
        probe: o.probe,
      },
      {
        role: o.role,
        existing,
        rebuildL0: o.rebuildL0,
        persist: () => edits.persist(),
        resumeIndexingAt: (position) => {
          indexed.position = position;
        },
      },
    );
  return {
    reads: { maxKeyBytes: o.maxKeyBytes, compactor, versions, valueLog },
    integrity,
    stats: { role: o.role, device, valueLog, versions, compactor, allocator, writes, recovery: report },
    replica,
    recover,
  };
}

/**
 * The log position from which replay must start to rebuild what is not in L0: on a primary the
 * first record appended but not yet applied, else the log's tail (WritePath); on a backup the
 * position after the last record indexed.
 */
function firstUnappliedPosition(role: StoreRole, indexed: IndexedPosition, writes: WritePath): LogPosition {
  // A backup has no active segment: what it indexed is all in L0 (or frozen, or in a level).
  if (role === 'backup') return { ...indexed.position };
  return writes.firstUnappliedPosition();
}
