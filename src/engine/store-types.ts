/** The store's public data shapes: read and scan options, scan results, statistics, version edits. */
import type { IoStats } from './device.js';
import type { IndexSegmentDescriptor } from './index-segment-reader.js';
import type { LogPosition, LogSegmentEntry, StoreRole } from './manifest.js';
import type { Bytes } from './options.js';
import type { RecoveryReport } from './recovery.js';
import type { StoreSnapshot } from './snapshot.js';
import type { LevelInstall } from './version-set.js';

export interface ReadOptions {
  /** Read as of this snapshot (Store.snapshot()). */
  snapshot?: StoreSnapshot;
}

export interface ScanOptions {
  gte?: Bytes;
  lt?: Bytes;
  limit?: number;
  reverse?: boolean;
}

export interface KeyValue {
  key: Buffer;
  value: Buffer;
}

export interface LevelStats {
  level: number;
  segmentCount: number;
  bytes: number;
  entryCount: number;
  maxBytes: number;
}

export interface StoreStats {
  role: StoreRole;
  nextLsn: number;
  l0: { entryCount: number; bytes: number; frozenEntryCount: number };
  levels: LevelStats[];
  logSegmentCount: number;
  segmentsInUse: number;
  flushCount: number;
  compactionCount: number;
  trivialMoveCount: number;
  /** Key + value bytes accepted from users. */
  userBytes: number;
  /** Device bytes written (all categories) ÷ userBytes. */
  writeAmplification: number;
  io: IoStats;
  recovery: RecoveryReport;
}

/** A version edit (ReplicaOps.applyEdit): each field given replaces the store's. */
export interface StoreEdit {
  log?: LogSegmentEntry[];
  segmentMap?: [number, number][];
  indexMap?: [number, number][];
  mapOwner?: string;
  /** Every level at once (sorted, non-overlapping); installed segments keep their readers. */
  levels?: IndexSegmentDescriptor[][];
  /** One level install (VersionSet.install); offsets are local. */
  install?: Omit<LevelInstall, 'beforePersist'>;
  replayFrom?: LogPosition;
  nextCompactionId?: number;
  /** Segments freed after the manifest write, in this order. */
  release?: number[];
}
