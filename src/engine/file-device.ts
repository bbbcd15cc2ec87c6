/**
 * FileDevice: the byte space is one file (`data`) in a directory; metadata files sit beside it.
 * Durability uses fdatasync on the data file; metadata replacement is write temp + fsync + rename
 * + fsync of the directory, so a crash leaves either the old or the new file, never a mix.
 * A `LOCK` file holding the owner's pid keeps two live processes from opening one directory.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { TalosError } from '../errors.js';
import { cloneIoStats, type Device, emptyIoStats, type IoCategory, type IoStats } from './device.js';

export class DeviceLockedError extends TalosError {
  constructor(dir: string, pid: number) {
    super('DEVICE_LOCKED', `${dir} is in use by process ${pid}`);
  }
}

export class FileDevice implements Device {
  readonly name: string;
  private readonly dir: string;
  private fd: number;
  private sizeBytes: number;
  private readonly stats = emptyIoStats();
  private closed = false;

  private constructor(dir: string) {
    this.dir = dir;
    this.name = dir;
    fs.mkdirSync(dir, { recursive: true });
    takeLock(dir);
    this.fd = fs.openSync(path.join(dir, 'data'), fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
    this.sizeBytes = fs.fstatSync(this.fd).size;
  }

  static open(dir: string): FileDevice {
    return new FileDevice(dir);
  }

  read(offset: number, length: number, category: IoCategory): Buffer {
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

  write(offset: number, bytes: Uint8Array, category: IoCategory): void {
    let done = 0;
    while (done < bytes.length) {
      done += fs.writeSync(this.fd, bytes, done, bytes.length - done, offset + done);
    }
    this.sizeBytes = Math.max(this.sizeBytes, offset + bytes.length);
    this.stats.writtenBytes[category] += bytes.length;
    this.stats.writeCount++;
  }

  sync(): void {
    fs.fdatasyncSync(this.fd);
    this.stats.syncCount++;
  }

  readMeta(name: string): Buffer | undefined {
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

  writeMetaAtomic(name: string, bytes: Uint8Array): void {
    const finalPath = path.join(this.dir, name);
    const tempPath = `${finalPath}.tmp`;
    const fd = fs.openSync(tempPath, 'w', 0o644);
    try {
      fs.writeSync(fd, bytes);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tempPath, finalPath);
    const dirFd = fs.openSync(this.dir, 'r');
    try {
      fs.fsyncSync(dirFd);
    } finally {
      fs.closeSync(dirFd);
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

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
    this.fd = -1;
    fs.rmSync(path.join(this.dir, 'LOCK'), { force: true });
  }
}

function takeLock(dir: string): void {
  const lockPath = path.join(dir, 'LOCK');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(lockPath, String(process.pid), { flag: 'wx' });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number(fs.readFileSync(lockPath, 'utf8'));
      if (owner === process.pid || !isAlive(owner)) {
        // A lock left by a crashed process (or by an unclosed device of ours): take it over.
        fs.rmSync(lockPath, { force: true });
        continue;
      }
      throw new DeviceLockedError(dir, owner);
    }
  }
  throw new DeviceLockedError(dir, -1);
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
