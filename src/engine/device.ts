/**
 * The storage port. A device is a flat, growable byte space addressed by 64-bit offsets (kept as
 * exact numbers below 2^53) plus a few small named metadata files (the manifest log and CURRENT):
 * each is replaced atomically (`writeMetaAtomic`) or grown by appends made durable by `syncMeta`.
 * The store divides the byte space into fixed-size segments; the device knows nothing of segments.
 *
 * The waits are asynchronous (issue 15 item 1, docs/bench/io.md): `sync()`, `syncMeta()`,
 * `writeMetaAtomic()` and `close()` return promises, and `write`, `appendMeta` and `removeMeta`
 * only queue their work — a FileDevice runs all of it in libuv's thread pool (fs callbacks), so no
 * write, fdatasync, rename or unlink blocks the JS thread. A read sees every write issued before it,
 * landed or not. Concurrent `sync()` (or `syncMeta(name)`) requests share one fdatasync per file
 * (GroupSync). `sync()` is the durability point: a write is durable only after a `sync()` called
 * after it resolved. Reads stay synchronous (page-cache hits; the read path is synchronous).
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
  /** Makes every earlier `write` durable; concurrent calls share one fdatasync (group sync). */
  sync(): Promise<void>;
  /** Reads a metadata file, or undefined when it does not exist. */
  readMeta(name: string): Buffer | undefined;
  /** Replaces a metadata file atomically and durably (temp + fsync + rename + dir fsync). */
  writeMetaAtomic(name: string, bytes: Uint8Array): Promise<void>;
  /**
   * Appends to a metadata file (created empty when absent). Not durable until `syncMeta(name)`:
   * a crash may drop the unsynced tail or leave only a prefix of it (a torn append).
   */
  appendMeta(name: string, bytes: Uint8Array): void;
  /** Makes every earlier `appendMeta` to `name` durable (fdatasync of that file, shared like `sync`). */
  syncMeta(name: string): Promise<void>;
  /**
   * Removes a metadata file; absent is fine. Not durable by itself (a crash may bring the file
   * back): callers remove only files nothing names any more.
   */
  removeMeta(name: string): void;
  /**
   * Resolves once every write and metadata operation issued before it reached the file (not
   * durably: that is `sync`/`syncMeta`). `readMeta` requires it: a store awaits it before it reads
   * its manifest, so a device reused by a new incarnation reads what the last one queued.
   */
  settled(): Promise<void>;
  io(): IoStats;
  /** Lets the queued operations land, then releases the device; idempotent (one close for every call). */
  close(): Promise<void>;
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
