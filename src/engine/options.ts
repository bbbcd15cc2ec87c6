/**
 * Store options: what a caller may set, the defaults, and the one validation every open runs. A
 * store created once keeps its segment size for life (the manifest records it); every other
 * option may change between opens. Keys and values arrive as strings (UTF-8) or byte arrays.
 */
import { InvalidArgumentError } from '../errors.js';
import { NO_PROBE, type Probe } from '../probe.js';
import type { Device } from './device.js';
import type { ManifestData, StoreRole } from './manifest.js';

export type Bytes = Uint8Array | string;
export type SyncPolicy = 'always' | 'seal';

export interface StoreOptions {
  /** Directory for a FileDevice (created if missing). Exactly one of `dir` and `device`. */
  dir?: string;
  /** A device to use; the caller keeps ownership (close() does not close it). */
  device?: Device;
  /** Fixed size of log and index segments (default 2 MiB). Fixed for the life of a store. */
  segmentBytes?: number;
  /** Size of L0 in index bytes before it is flushed to L1 (default 4 MiB). */
  l0Bytes?: number;
  /** Size ratio between consecutive levels (default 8). */
  growthFactor?: number;
  /** Number of on-device levels L1..Ln (default 5). */
  maxLevels?: number;
  /** 'always': a write resolves once durable (group commit); 'seal': durable at seal/flush/sync(). */
  syncPolicy?: SyncPolicy;
  maxKeyBytes?: number;
  maxValueBytes?: number;
  /** Decoded index blocks kept in memory (default 32 MiB). */
  blockCacheBytes?: number;
  /**
   * Flush a full L0 and run due compactions in the background by themselves (default true). When
   * false the owner decides: the `l0Full` hook announces a full L0, `flush()` flushes only, and
   * `dueCompaction()` + `compactLevelNow()` compact.
   */
  autoCompact?: boolean;
  /** Role of a new store; an existing store keeps the role its manifest records. */
  role?: StoreRole;
  /**
   * Backup only (ignored on a primary, which always replays): at open, replay the persisted log
   * segments from the manifest's `replayFrom` into L0 (local pointers), as a primary's recovery
   * does. Meant for Build-Index backups, whose L0 holds indexed records no level covers yet; then
   * Build-Index indexing (src/replication/backup-store.ts) continues right after the replayed
   * records. Without it a backup opens with an empty L0 (right for Send-Index backups, which hold
   * only shipped levels) and indexing resumes at `replayFrom`. Default false.
   */
  rebuildL0?: boolean;
  /**
   * Segments at the start of the device this store never allocates (the device holds other data
   * there). Give the same value at every open. The simulator gives each node a different count so
   * that replicas' layouts differ and every pointer translation is exercised. Default 0.
   */
  reservedSegments?: number;
  /** Manifest log rotation bound (ManifestLogOptions.rotateBytes); default 64 KiB. */
  manifestRotateBytes?: number;
  /** The simulator's defects (`no-l0-replay`, src/probe.ts). Default none. */
  probe?: Probe;
}

/** Every option with its value decided (defaults applied, the manifest's fixed ones taken). */
export interface ResolvedOptions {
  segmentBytes: number;
  l0Bytes: number;
  growthFactor: number;
  maxLevels: number;
  syncPolicy: SyncPolicy;
  maxKeyBytes: number;
  maxValueBytes: number;
  blockCacheBytes: number;
  autoCompact: boolean;
  rebuildL0: boolean;
  role: StoreRole;
  reservedSegments: number;
  probe: Probe;
}

const DEFAULTS = {
  segmentBytes: 2 * 1024 * 1024,
  l0Bytes: 4 * 1024 * 1024,
  growthFactor: 8,
  maxLevels: 5,
  syncPolicy: 'seal' as SyncPolicy,
  maxKeyBytes: 1024,
  maxValueBytes: 16 * 1024 * 1024,
  blockCacheBytes: 32 * 1024 * 1024,
};

/** Applies the defaults and validates; InvalidArgumentError names the first bad option. */
export function resolveOptions(options: StoreOptions, manifest: ManifestData | undefined): ResolvedOptions {
  const resolved: ResolvedOptions = {
    segmentBytes: manifest?.segmentBytes ?? options.segmentBytes ?? DEFAULTS.segmentBytes,
    l0Bytes: options.l0Bytes ?? DEFAULTS.l0Bytes,
    growthFactor: options.growthFactor ?? DEFAULTS.growthFactor,
    maxLevels: options.maxLevels ?? DEFAULTS.maxLevels,
    syncPolicy: options.syncPolicy ?? DEFAULTS.syncPolicy,
    maxKeyBytes: options.maxKeyBytes ?? DEFAULTS.maxKeyBytes,
    maxValueBytes: options.maxValueBytes ?? DEFAULTS.maxValueBytes,
    blockCacheBytes: options.blockCacheBytes ?? DEFAULTS.blockCacheBytes,
    autoCompact: options.autoCompact ?? true,
    rebuildL0: options.rebuildL0 ?? false,
    role: manifest?.role ?? options.role ?? 'primary',
    reservedSegments: options.reservedSegments ?? 0,
    probe: options.probe ?? NO_PROBE,
  };
  validateOptions(resolved, options, manifest);
  return resolved;
}

function validateOptions(
  store: ResolvedOptions,
  options: StoreOptions,
  manifest: ManifestData | undefined,
): void {
  const positiveInt = (name: string, value: number): void => {
    if (!Number.isSafeInteger(value) || value <= 0)
      throw new InvalidArgumentError(`${name} must be a positive integer`);
  };
  positiveInt('segmentBytes', store.segmentBytes);
  positiveInt('l0Bytes', store.l0Bytes);
  positiveInt('maxLevels', store.maxLevels);
  positiveInt('maxKeyBytes', store.maxKeyBytes);
  positiveInt('maxValueBytes', store.maxValueBytes);
  if (!(store.growthFactor >= 2)) throw new InvalidArgumentError('growthFactor must be >= 2');
  if (store.syncPolicy !== 'always' && store.syncPolicy !== 'seal') {
    throw new InvalidArgumentError(`syncPolicy must be 'always' or 'seal', got ${String(store.syncPolicy)}`);
  }
  if (store.maxKeyBytes > 0xffff) throw new InvalidArgumentError('maxKeyBytes must be <= 65535');
  if (store.segmentBytes < 4096 || store.segmentBytes < 4 * store.maxKeyBytes + 256) {
    throw new InvalidArgumentError('segmentBytes must be >= 4096 and >= 4 * maxKeyBytes + 256');
  }
  if (store.segmentBytes > 0xffffffff) throw new InvalidArgumentError('segmentBytes must be < 4 GiB');
  if (
    manifest !== undefined &&
    options.segmentBytes !== undefined &&
    options.segmentBytes !== manifest.segmentBytes
  ) {
    throw new InvalidArgumentError(
      `segmentBytes=${options.segmentBytes} differs from the store's ${manifest.segmentBytes} (fixed at creation)`,
    );
  }
  if (manifest !== undefined && manifest.levels.length > store.maxLevels) {
    throw new InvalidArgumentError(
      `the store has ${manifest.levels.length} levels; maxLevels=${store.maxLevels} is too few`,
    );
  }
}

export function toKey(key: Bytes): Buffer {
  if (typeof key === 'string') return Buffer.from(key, 'utf8');
  if (key instanceof Uint8Array)
    return Buffer.isBuffer(key) ? key : Buffer.from(key.buffer, key.byteOffset, key.length);
  throw new InvalidArgumentError('keys must be strings or Uint8Arrays');
}

export function toValue(value: Bytes): Buffer {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (value instanceof Uint8Array)
    return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.length);
  throw new InvalidArgumentError('values must be strings or Uint8Arrays');
}
