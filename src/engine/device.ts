/**
 * The storage port. A device is a flat, growable byte space addressed by 64-bit offsets (kept as
 * exact numbers below 2^53) plus a few small named metadata files (the manifest log and CURRENT):
 * each is replaced atomically (`writeMetaAtomic`) or grown by appends made durable by `syncMeta`.
 * The store divides the byte space into fixed-size segments; the device knows nothing of segments.
 *
 * The interface is synchronous on purpose: the engine is single-threaded and its reads hit the
 * page cache; a synchronous call costs ~1 µs where a thread-pool round trip costs ~10 µs. `sync()`
 * is the durability point: a write is durable only after a later `sync()` returned.
 *
 * Both implementations count bytes read and written per category, so I/O amplification is a
 * first-class metric (`Store.stats().io`).
 */
export type IoCategory = 'log' | 'index' | 'manifest';

export const IO_CATEGORIES: readonly IoCategory[] = ['log', 'index', 'manifest'];

export interface IoStats {
  readBytes: Record<IoCategory, number>;
  writtenBytes: Record<IoCategory, number>;
  readCount: number;
  writeCount: number;
  syncCount: number;
}

export interface Device {
  /** Human-readable location, used in error messages. */
  readonly name: string;
  /** Reads `length` bytes at `offset`; bytes never written read as zeros. */
  read(offset: number, length: number, category: IoCategory): Buffer;
  /** Writes `bytes` at `offset`. Not durable until `sync()`. */
  write(offset: number, bytes: Uint8Array, category: IoCategory): void;
  /** Makes every earlier `write` durable. */
  sync(): void;
  /** Reads a metadata file, or undefined when it does not exist. */
  readMeta(name: string): Buffer | undefined;
  /** Replaces a metadata file atomically and durably (temp + fsync + rename + dir fsync). */
  writeMetaAtomic(name: string, bytes: Uint8Array): void;
  /**
   * Appends to a metadata file (created empty when absent). Not durable until `syncMeta(name)`:
   * a crash may drop the unsynced tail or leave only a prefix of it (a torn append).
   */
  appendMeta(name: string, bytes: Uint8Array): void;
  /** Makes every earlier `appendMeta` to `name` durable (fdatasync of that file). */
  syncMeta(name: string): void;
  /**
   * Removes a metadata file; absent is fine. Not durable by itself (a crash may bring the file
   * back): callers remove only files nothing names any more.
   */
  removeMeta(name: string): void;
  io(): IoStats;
  close(): void;
}

export function emptyIoStats(): IoStats {
  return {
    readBytes: { log: 0, index: 0, manifest: 0 },
    writtenBytes: { log: 0, index: 0, manifest: 0 },
    readCount: 0,
    writeCount: 0,
    syncCount: 0,
  };
}

export function cloneIoStats(io: IoStats): IoStats {
  return {
    readBytes: { ...io.readBytes },
    writtenBytes: { ...io.writtenBytes },
    readCount: io.readCount,
    writeCount: io.writeCount,
    syncCount: io.syncCount,
  };
}
