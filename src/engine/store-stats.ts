/** A store's statistics (Store.stats): L0 and level shapes, job counts, I/O and write amplification. */
import type { Compactor } from './compaction.js';
import { cloneIoStats, type Device } from './device.js';
import type { StoreRole } from './manifest.js';
import type { RecoveryReport } from './recovery.js';
import type { SegmentAllocator } from './segment-allocator.js';
import type { StoreStats } from './store-types.js';
import type { ValueLog } from './value-log.js';
import { sum, type VersionSet } from './version-set.js';
import type { WritePath } from './write-path.js';

export interface StoreStatsSources {
  role: StoreRole;
  device: Device;
  valueLog: ValueLog;
  versions: VersionSet;
  compactor: Compactor;
  allocator: SegmentAllocator;
  /** Its user bytes so far (read at each call). */
  writes: WritePath;
  recovery: RecoveryReport;
}

export function storeStats(s: StoreStatsSources): StoreStats {
  const io = cloneIoStats(s.device.io());
  const written = io.writtenBytes.log + io.writtenBytes.index + io.writtenBytes.manifest;
  const { compactor, versions } = s;
  const { userBytes } = s.writes;
  return {
    role: s.role,
    nextLsn: s.valueLog.nextLsn,
    l0: {
      entryCount: compactor.l0.size,
      bytes: compactor.l0.bytes,
      frozenEntryCount: compactor.frozen?.memtable.size ?? 0,
    },
    levels: versions.levels.map((segments, i) => ({
      level: i + 1,
      segmentCount: segments.length,
      bytes: sum(segments.map((seg) => seg.descriptor.usedBytes)),
      entryCount: sum(segments.map((seg) => seg.descriptor.entryCount)),
      maxBytes: versions.levelMaxBytes(i + 1),
    })),
    logSegmentCount: s.valueLog.log.length,
    segmentsInUse: s.allocator.inUseCount,
    flushCount: compactor.flushCount,
    compactionCount: compactor.compactionCount,
    trivialMoveCount: compactor.trivialMoveCount,
    userBytes,
    writeAmplification: userBytes === 0 ? 0 : written / userBytes,
    io,
    recovery: { ...s.recovery, corruptSegments: [...s.recovery.corruptSegments] },
  };
}
