/**
 * A store directory's LOCK file (FileDevice): it holds the pid of the process that has the
 * directory open. Taking it links a temp file holding our pid to LOCK (atomic: exactly one taker
 * wins); a LOCK whose pid is not alive is stale and taken over once. A lock that reappears at once
 * has a live taker: DeviceLockedError. FileDevice's header says what this cannot rule out.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DeviceLockedError } from '../errors.js';

const LOCK_NAME = 'LOCK';

/** Creates `dir/LOCK` holding our pid, taking over a stale one; throws DeviceLockedError if it is live. */
export function takeLockFile(dir: string): void {
  const lockPath = path.join(dir, LOCK_NAME);
  const tempPath = path.join(dir, `${LOCK_NAME}.${process.pid}.tmp`);
  fs.writeFileSync(tempPath, String(process.pid), { mode: 0o644 });
  try {
    // Two rounds: take a stale lock over once; a lock that reappears at once has a live taker.
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        fs.linkSync(tempPath, lockPath);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const text = readLockText(lockPath);
      if (text === undefined) continue; // removed meanwhile by its owner's close
      const owner = Number.parseInt(text, 10);
      // Our pid here without a registry entry: a device of ours whose close never finished.
      if (owner !== process.pid && isAlive(owner)) throw new DeviceLockedError(dir, owner);
      if (readLockText(lockPath) === text) fs.rmSync(lockPath, { force: true });
    }
    throw new DeviceLockedError(dir, Number.parseInt(readLockText(lockPath) ?? '-1', 10));
  } finally {
    fs.rmSync(tempPath, { force: true });
  }
}

export function releaseLockFile(dir: string): void {
  fs.rmSync(path.join(dir, LOCK_NAME), { force: true });
}

/** A LOCK file's text (the owner's pid), undefined when the file is gone. */
function readLockText(lockPath: string): string | undefined {
  try {
    return fs.readFileSync(lockPath, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Whether a process with this pid exists (EPERM: it exists, owned by another user). */
function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
