/**
 * FileDevice: the byte space is one file (`data`) in a directory; metadata files sit beside it.
 * Durability uses fdatasync on the data file; metadata replacement is write temp + fsync + rename
 * + fsync of the directory, so a crash leaves either the old or the new file, never a mix.
 *
 * Nothing on a serving path waits for the disk on the JS thread (issue 15 item 1): every write,
 * fdatasync, rename, directory fsync, metadata open and unlink runs in libuv's thread pool through
 * `fs` callbacks. `write` and `appendMeta` queue their bytes (copied) on an IoLane and return at once
 * — data writes on one lane, metadata operations on another, each in issue order — and reads
 * overlay the data writes still queued, so a read sees every write issued before it. `sync()` (and
 * `syncMeta(name)`) wait for the writes queued before them to land, then fdatasync; concurrent
 * requests share one fdatasync per file (GroupSync). A queued write that fails is the lane's
 * failure: the next write or sync reports it (the store fail-stops). What stays synchronous, by
 * measurement (docs/bench/io.md): data reads — page-cache hits cost less than a thread-pool round
 * trip, and the read path is synchronous — and opening the device (mkdir, lock, open, fstat) and
 * reading its metadata files, once, before the store serves.
 * Appends to a metadata file (the manifest log) go through one fd per file, opened O_APPEND at
 * the first append and kept until the file is replaced, removed or the device closes; `syncMeta`
 * fdatasyncs it (the file's size is part of what fdatasync makes durable).
 *
 * One directory, one open device. Two handles on one directory would each keep their own log
 * head and manifest, and the last to close would silently overwrite the other's writes. Two
 * guards, both taken at open only (never on a read/write path), both released by close():
 *
 *  1. In this process: a registry of the directories held by open FileDevices, keyed by the
 *     resolved real path (so `a/../a`, a symlink and a relative path name one directory). The
 *     registry is the authority within the process; the LOCK file cannot be, since every handle of
 *     one process writes the same pid.
 *  2. Across processes: a `LOCK` file holding the owner's pid, created exclusively. It is written
 *     complete under a private temporary name and then hard-linked to `LOCK` — link(2) fails with
 *     EEXIST exactly as an O_EXCL create does, but a reader never sees a LOCK that exists and is
 *     still empty (with a bare O_EXCL create then write, a second process could read "" in between
 *     and mistake a live lock for a stale one). A LOCK whose pid is dead (`process.kill(pid, 0)`
 *     fails with ESRCH) was left by a crash and is taken over; one holding our own pid while the
 *     registry has no entry was left by a device of ours whose close never finished, and is taken
 *     over too.
 *
 * Limits: a stale lock whose pid has been reused by an unrelated live process is refused (remove
 * LOCK by hand); two processes taking over one stale lock at the same instant can race between
 * reading the dead pid and removing the file (the re-read just before removal narrows it).
 * Advisory locking (flock) would close both, but Node has no flock.
 *
 * Device failures: every fs error of a read, write, sync or metadata replace goes through
 * `classifyDeviceError`, so ENOSPC/EDQUOT surface as DiskFullError and EIO/EROFS/... as
 * DeviceIoError, each naming this directory and the operation; the store fail-stops on them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { assert } from '../assert.js';
import { classifyDeviceError, DeviceIoError, DeviceLockedError, type DeviceOperation } from '../errors.js';
import { cloneIoStats, type Device, emptyIoStats, type IoCategory, type IoStats } from './device.js';
import { GroupSync } from './group-sync.js';
import { IoLane } from './io-lane.js';
import { releaseLockFile, takeLockFile } from './lock-file.js';

/** Real paths of the directories held by open FileDevices of this process. */
const heldDirs = new Set<string>();

/** The device's data file in its directory: a directory holding one holds a store. */
export const DATA_FILE = 'data';

export class FileDevice implements Device {
  readonly name: string;
  private readonly dir: string;
  /** The registry key: the directory's real path. */
  private readonly realDir: string;
  private fd: number;
  private sizeBytes: number;
  private readonly stats = emptyIoStats();
  private closed = false;
  private closing: Promise<void> | undefined;
  /** Data-file writes, run in order in the thread pool. */
  private readonly dataLane = new IoLane();
  /** Data writes queued or running, oldest first: reads overlay them until they landed. */
  private readonly pendingWrites: { offset: number; bytes: Buffer }[] = [];
  /** Metadata-file operations (append, replace, remove, the append fds' opens and closes), in order. */
  private readonly metaLane = new IoLane();
  /** Open append fds of metadata files, by name, each with its group sync. */
  private readonly metaFds = new Map<string, { fd: number; syncs: GroupSync }>();
  /** The data file's group sync: the writes queued before it land, then one fdatasync. */
  private readonly dataSyncs = new GroupSync(async () => {
    await this.dataLane.drained();
    await this.fdatasync(this.fd);
  });

  private constructor(dir: string) {
    this.dir = dir;
    this.name = dir;
    fs.mkdirSync(dir, { recursive: true });
    this.realDir = fs.realpathSync(dir);
    if (heldDirs.has(this.realDir)) throw new DeviceLockedError(dir, process.pid);
    heldDirs.add(this.realDir);
    let lockTaken = false;
    try {
      takeLockFile(dir);
      lockTaken = true;
      this.fd = fs.openSync(path.join(dir, DATA_FILE), fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
      try {
        this.sizeBytes = fs.fstatSync(this.fd).size;
      } catch (err) {
        fs.closeSync(this.fd);
        throw err;
      }
    } catch (err) {
      // A failed open holds nothing: a later open of this directory must not find it locked.
      if (lockTaken) releaseLockFile(dir);
      heldDirs.delete(this.realDir);
      throw err;
    }
  }

  static open(dir: string): FileDevice {
    return new FileDevice(dir);
  }

  read(offset: number, length: number, category: IoCategory): Buffer {
    const out = this.classified('read', () => this.readRaw(offset, length, category));
    this.overlayPending(out, offset);
    return out;
  }

  /**
   * Queues the write for the thread pool and returns at once; the bytes are copied (the caller may
   * reuse its buffer). Reads see them at once (overlayPending); `sync()` waits for them to land.
   */
  write(offset: number, bytes: Uint8Array, category: IoCategory): void {
    this.checkWritable('write', this.dataLane);
    const entry = { offset, bytes: Buffer.from(bytes) };
    this.pendingWrites.push(entry);
    this.sizeBytes = Math.max(this.sizeBytes, offset + bytes.length);
    this.stats.writtenBytes[category] += bytes.length;
    this.stats.writeCount++;
    const landed = this.dataLane.push(async () => {
      try {
        await writeAll(this.fd, entry.bytes, offset);
      } catch (err) {
        throw classifyDeviceError(err, this.name, 'write');
      } finally {
        assert(this.pendingWrites[0] === entry, 'data writes land in the order they were queued');
        this.pendingWrites.shift();
      }
    });
    landed.catch(() => {}); // kept as the lane's failure: the next write or sync reports it
  }

  sync(): Promise<void> {
    if (this.closed) return Promise.reject(this.closedError('sync'));
    return this.dataSyncs.request();
  }

  /**
   * Reads a metadata file (at open: the manifest). Every metadata operation queued before it must
   * have landed — `settled()` — or the read could miss an append still in the pool.
   */
  readMeta(name: string): Buffer | undefined {
    assert(
      !this.metaLane.busy,
      `FileDevice ${this.dir}: readMeta(${name}) while metadata operations are in flight (await settled() first)`,
    );
    return this.classified('read', () => this.readMetaRaw(name));
  }

  writeMetaAtomic(name: string, bytes: Uint8Array): Promise<void> {
    if (this.closed) return Promise.reject(this.closedError('meta'));
    const copy = Buffer.from(bytes);
    return this.metaLane.push(async () => {
      try {
        await this.closeMetaFd(name); // the name is about to point at a new file
        await this.writeMetaRaw(name, copy);
      } catch (err) {
        throw classifyDeviceError(err, this.name, 'meta');
      }
    });
  }

  /** Queues an append (opening the file's append fd at its first); `syncMeta(name)` makes it durable. */
  appendMeta(name: string, bytes: Uint8Array): void {
    this.checkWritable('meta', this.metaLane);
    const copy = Buffer.from(bytes);
    this.stats.writtenBytes.manifest += copy.length;
    this.stats.writeCount++;
    const landed = this.metaLane.push(async () => {
      try {
        let meta = this.metaFds.get(name);
        if (meta === undefined) {
          const fd = await call<number>((cb) => fs.open(path.join(this.dir, name), 'a', 0o644, cb));
          meta = { fd, syncs: new GroupSync(() => this.fdatasync(fd)) };
          this.metaFds.set(name, meta);
        }
        await writeAll(meta.fd, copy, null);
      } catch (err) {
        throw classifyDeviceError(err, this.name, 'meta');
      }
    });
    landed.catch(() => {}); // kept as the lane's failure: the next syncMeta reports it
  }

  async syncMeta(name: string): Promise<void> {
    if (this.closed) throw this.closedError('sync');
    await this.metaLane.drained(); // the appends queued before this call have landed
    const meta = this.metaFds.get(name);
    if (meta === undefined) return; // nothing appended through this device: nothing to sync
    await meta.syncs.request();
  }

  /** Queues the removal (an unlink in the pool); not durable by itself (see Device.removeMeta). */
  removeMeta(name: string): void {
    this.checkWritable('meta', this.metaLane);
    const removed = this.metaLane.push(async () => {
      try {
        await this.closeMetaFd(name);
        await call<void>((cb) => fs.unlink(path.join(this.dir, name), cb));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // absent is fine
        throw classifyDeviceError(err, this.name, 'meta');
      }
    });
    removed.catch(() => {});
  }

  /** Resolves once every write and metadata operation queued before it reached the file (not its sync). */
  async settled(): Promise<void> {
    await Promise.all([this.dataLane.settled(), this.metaLane.settled()]);
  }

  /** Closes a metadata file's append fd — once no fdatasync runs on it (the fd must not be reused under it). */
  private async closeMetaFd(name: string): Promise<void> {
    const meta = this.metaFds.get(name);
    if (meta === undefined) return;
    this.metaFds.delete(name);
    await meta.syncs.idle();
    try {
      await call<void>((cb) => fs.close(meta.fd, cb));
    } catch {
      // Nothing synced is lost by a failed close of an append fd.
    }
  }

  /** Copies the bytes of queued writes that overlap [offset, offset + out.length) over `out`, oldest first. */
  private overlayPending(out: Buffer, offset: number): void {
    for (const w of this.pendingWrites) {
      const from = Math.max(offset, w.offset);
      const to = Math.min(offset + out.length, w.offset + w.bytes.length);
      if (from < to) w.bytes.copy(out, from - offset, from - w.offset, to - w.offset);
    }
  }

  /** Refuses a new operation on a closed device or after a queued one failed (the failure is the answer). */
  private checkWritable(operation: DeviceOperation, lane: IoLane): void {
    if (this.closed) throw this.closedError(operation);
    if (lane.failure !== undefined) throw lane.failure;
  }

  /** An operation on a closed device: a DeviceIoError (EBADF), as the fs call on a closed fd would fail. */
  private closedError(operation: DeviceOperation): DeviceIoError {
    return new DeviceIoError(this.name, operation, 'EBADF', {
      cause: new Error(`device ${this.dir} is closed`),
    });
  }

  /** One fdatasync of `fd` in the thread pool, counted and classified. */
  private fdatasync(fd: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      fs.fdatasync(fd, (err) => {
        if (err !== null) {
          reject(classifyDeviceError(err, this.name, 'sync'));
          return;
        }
        this.stats.syncCount++;
        resolve();
      });
    });
  }

  /** Runs an fs call, turning a device failure (ENOSPC, EIO...) into its typed error. */
  private classified<T>(operation: DeviceOperation, call: () => T): T {
    try {
      return call();
    } catch (err) {
      throw classifyDeviceError(err, this.name, operation);
    }
  }

  private readRaw(offset: number, length: number, category: IoCategory): Buffer {
    const out = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const n = fs.readSync(this.fd, out, done, length - done, offset + done);
      if (n === 0) {
        out.fill(0, done); // past end of file: never-written bytes read as zeros
        break;
      }
      done += n;
    }
    this.stats.readBytes[category] += length;
    this.stats.readCount++;
    return out;
  }

  private readMetaRaw(name: string): Buffer | undefined {
    try {
      const bytes = fs.readFileSync(path.join(this.dir, name));
      this.stats.readBytes.manifest += bytes.length;
      this.stats.readCount++;
      return bytes;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** Temp file + fsync + rename + directory fsync, every step in the thread pool. */
  private async writeMetaRaw(name: string, bytes: Uint8Array): Promise<void> {
    const finalPath = path.join(this.dir, name);
    const tempPath = `${finalPath}.tmp`;
    const fd = await call<number>((cb) => fs.open(tempPath, 'w', 0o644, cb));
    try {
      await writeAll(fd, bytes, null);
      await call<void>((cb) => fs.fsync(fd, cb));
    } finally {
      await call<void>((cb) => fs.close(fd, cb));
    }
    await call<void>((cb) => fs.rename(tempPath, finalPath, cb));
    const dirFd = await call<number>((cb) => fs.open(this.dir, 'r', cb));
    try {
      await call<void>((cb) => fs.fsync(dirFd, cb));
    } finally {
      await call<void>((cb) => fs.close(dirFd, cb));
    }
    this.stats.writtenBytes.manifest += bytes.length;
    this.stats.writeCount++;
    this.stats.syncCount += 2;
  }

  io(): IoStats {
    return cloneIoStats(this.stats);
  }

  /** Size of the data file in bytes. */
  get dataBytes(): number {
    return this.sizeBytes;
  }

  /**
   * Refuses new operations at once; lets the queued ones land (as a killed process's writes stay in
   * the page cache), then closes the fds and releases the directory. Idempotent: every call returns
   * the one close.
   */
  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    this.closed = true;
    this.closing = (async () => {
      try {
        await this.settled();
        await this.dataSyncs.idle();
        for (const meta of this.metaFds.values()) await meta.syncs.idle();
        for (const { fd } of this.metaFds.values()) {
          try {
            fs.closeSync(fd);
          } catch {
            // An append fd that fails to close loses nothing synced; the data fd's close still runs.
          }
        }
        this.metaFds.clear();
        fs.closeSync(this.fd);
      } finally {
        this.fd = -1;
        // Released even when closing the fd failed: the handle is unusable either way.
        try {
          releaseLockFile(this.dir);
        } finally {
          assert(
            heldDirs.delete(this.realDir),
            `FileDevice ${this.dir}: closed without holding its directory`,
          );
        }
      }
    })();
    return this.closing;
  }
}

/** Writes all of `bytes` at `position` (null: at the fd's offset, O_APPEND) in the thread pool. */
async function writeAll(fd: number, bytes: Uint8Array, position: number | null): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const at = position === null ? null : position + done;
    done += await call<number>((cb) => fs.write(fd, bytes, done, bytes.length - done, at, cb));
  }
}

/** Runs an `fs` callback call in the thread pool as a promise (fs callbacks, not fs.promises: no FileHandle per call). */
function call<T>(start: (cb: (err: NodeJS.ErrnoException | null, value?: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    start((err, value) => {
      if (err !== null && err !== undefined) reject(err);
      else resolve(value as T);
    });
  });
}
