/**
 * The manifest log: the store's manifest kept as an append-only log of version edits, as LevelDB's
 * MANIFEST/VersionSet does (db/version_set.cc, db/log_format.h).
 *
 * Files (Device metadata files):
 * - `MANIFEST-<n>` (n = 000001, 000002, ...): CRC-framed records. The first is a snapshot (the
 *   whole ManifestData), each later one an edit: the difference between the previous and the next
 *   ManifestData (log segments added, sealed or removed; index segments added to or removed from
 *   levels; segment-map and index-map entries put or removed; replayFrom, nextCompactionId, the
 *   allocator's high-water mark, role, mapOwner when they change).
 * - `CURRENT`: the name of the live manifest file, replaced atomically.
 * - `MANIFEST` (legacy): the whole-file manifest of the format before this one, read when CURRENT
 *   is absent and removed by the first rotation (migration).
 *
 * Record: `[u32le payload length][u32le crc32c(payload)][payload]`, payload = a kind byte (1
 * snapshot, 2 edit) + the body (a snapshot: encodeManifest; an edit: JSON, keys in hex).
 *
 * Commit (`commit(next)`, asynchronous): one edit record appended and synced (appendMeta +
 * syncMeta: one fdatasync, shared by the commits due together). A commit that changes nothing
 * writes nothing. The manifest is never named by the
 * store before the commit returned, so an unsynced append was never relied on.
 *
 * Rotation: when the edits since the snapshot would exceed max(rotateBytes, the snapshot's size) —
 * so rewriting the snapshot costs at most as much as the edits it replaces — and at the first
 * commit after an open that found a torn tail, a legacy manifest or no manifest: the next file is
 * written whole with a snapshot of `next` (writeMetaAtomic: temp + fsync + rename + dir fsync),
 * then CURRENT is pointed at it (writeMetaAtomic), then the old file is removed. A crash before
 * CURRENT's replace leaves the old file current (the new one is overwritten by the next rotation);
 * after it, at worst an unreferenced old file (removed by the next rotation).
 *
 * Recovery (`open`): read CURRENT, then the snapshot and every edit after it. A bad last record
 * (incomplete header, a length past the end, a CRC mismatch on the file's last bytes, or a tail of
 * zeros) is a torn append that was never synced, hence never acknowledged: it is ignored, and the
 * next commit rotates so nothing is ever appended after it. A bad record followed by more data,
 * a bad first record (snapshots are written atomically) or a CURRENT naming a missing file is
 * CorruptManifestError.
 */
import { CorruptManifestError } from '../errors.js';
import { crc32c } from './crc.js';
import type { Device } from './device.js';
import { decodeManifest, encodeManifest, MANIFEST_NAME, type ManifestData } from './manifest.js';
import {
  applyEdit,
  cloneManifest,
  diffManifest,
  editFromJson,
  editToJson,
  isEmptyEdit,
  type ManifestEdit,
} from './manifest-edit.js';

export { applyEdit, cloneManifest, diffManifest, isEmptyEdit, type ManifestEdit } from './manifest-edit.js';

export const CURRENT_NAME = 'CURRENT';
/** The whole-file manifest written before the manifest log existed. */
export const LEGACY_MANIFEST_NAME = MANIFEST_NAME;
export const DEFAULT_MANIFEST_ROTATE_BYTES = 64 * 1024;

const HEADER_BYTES = 8;
const KIND_SNAPSHOT = 1;
const KIND_EDIT = 2;

export function manifestFileName(n: number): string {
  return `MANIFEST-${String(n).padStart(6, '0')}`;
}

export interface ManifestLogOptions {
  /**
   * Rotation bound: a new manifest file (starting with a snapshot) is started once the edits
   * since the last snapshot would exceed max(rotateBytes, the snapshot's size). Default 64 KiB.
   */
  rotateBytes?: number;
}

/** What a manifest log did since it was opened (for tests and measurements). */
export interface ManifestLogStats {
  edits: number;
  editBytes: number;
  snapshots: number;
  snapshotBytes: number;
  /** Commits that changed nothing, so wrote nothing. */
  unchanged: number;
}

export class ManifestLog {
  private readonly rotateBytes: number;
  /** The live file's number; 0 while there is none (a new store, or a legacy manifest). */
  private fileNumber: number;
  private snapshotBytes: number;
  /** Bytes of edits after the snapshot in the live file. */
  private editBytes: number;
  private last: ManifestData | undefined;
  /** The next commit writes a new file: none yet, a torn tail, a legacy manifest, a failed append. */
  private needsRotation: boolean;
  /** Files the next rotation removes besides the live one (left by a crash, or the legacy manifest). */
  private stale: string[];
  readonly stats: ManifestLogStats = { edits: 0, editBytes: 0, snapshots: 0, snapshotBytes: 0, unchanged: 0 };
  /** Commits in call order: settles when the last one queued has appended (or failed). */
  private queue: Promise<void> = Promise.resolve();
  /** The durability of the last edit appended to the live file (never rejects unobserved). */
  private lastSync: Promise<void> = Promise.resolve();

  private constructor(
    private readonly device: Device,
    options: ManifestLogOptions,
    state: {
      fileNumber: number;
      snapshotBytes: number;
      editBytes: number;
      last: ManifestData | undefined;
      needsRotation: boolean;
      stale: string[];
    },
  ) {
    this.rotateBytes = options.rotateBytes ?? DEFAULT_MANIFEST_ROTATE_BYTES;
    this.fileNumber = state.fileNumber;
    this.snapshotBytes = state.snapshotBytes;
    this.editBytes = state.editBytes;
    this.last = state.last;
    this.needsRotation = state.needsRotation;
    this.stale = state.stale;
  }

  /** Recovers the manifest of `device`: CURRENT → snapshot + edits, or the legacy whole file. */
  static open(device: Device, options: ManifestLogOptions = {}): ManifestLog {
    const current = device.readMeta(CURRENT_NAME);
    if (current === undefined) {
      const legacy = device.readMeta(LEGACY_MANIFEST_NAME);
      const last =
        legacy === undefined ? undefined : decodeManifest(legacy, `${device.name}/${LEGACY_MANIFEST_NAME}`);
      return new ManifestLog(device, options, {
        fileNumber: 0,
        snapshotBytes: 0,
        editBytes: 0,
        last,
        needsRotation: true,
        stale: legacy === undefined ? [] : [LEGACY_MANIFEST_NAME],
      });
    }
    const match = /^MANIFEST-(\d{6,})\n$/.exec(current.toString('latin1'));
    if (match === null) throw new CorruptManifestError(`${device.name}/${CURRENT_NAME}`, 'bad CURRENT');
    const fileNumber = Number.parseInt(match[1]!, 10);
    const name = manifestFileName(fileNumber);
    const where = `${device.name}/${name}`;
    const bytes = device.readMeta(name);
    if (bytes === undefined) throw new CorruptManifestError(where, 'named by CURRENT but missing');
    const replay = replayManifestLog(bytes, where);
    const stale = [LEGACY_MANIFEST_NAME];
    if (fileNumber > 1) stale.push(manifestFileName(fileNumber - 1));
    return new ManifestLog(device, options, {
      fileNumber,
      snapshotBytes: replay.snapshotBytes,
      editBytes: replay.validBytes - replay.snapshotBytes,
      last: replay.data,
      needsRotation: replay.validBytes < bytes.length,
      stale,
    });
  }

  /** The recovered (or last committed) manifest; undefined for a device that never had one. */
  get data(): ManifestData | undefined {
    return this.last === undefined ? undefined : cloneManifest(this.last);
  }

  /** Whether the device holds a manifest (recovered or committed). */
  get exists(): boolean {
    return this.last !== undefined;
  }

  /** The live manifest file's name (undefined before the first commit of a new or legacy store). */
  get fileName(): string | undefined {
    return this.fileNumber === 0 ? undefined : manifestFileName(this.fileNumber);
  }

  /**
   * Makes `next` the durable manifest: one synced edit, or a rotation to a new snapshot. `next` is
   * captured now; commits run in call order (each edit is the difference from the one before).
   * An edit's append runs as soon as the commits before it were appended, and its fdatasync is
   * shared with any other commit's that is due with it (Device.syncMeta, group sync); a rotation
   * waits for the in-flight syncs of the old file first. Resolves once `next` is durable. Callers
   * commit an edit naming segments only after those segments' data was synced.
   */
  commit(next: ManifestData): Promise<void> {
    const snapshot = cloneManifest(next);
    const step = this.queue.then(() => this.commitStep(snapshot));
    this.queue = step.then(
      () => {},
      () => {},
    );
    return step.then((r) => r.durable);
  }

  /** Appends (or rotates); resolves when the next commit may append, with this one's durability. */
  private async commitStep(next: ManifestData): Promise<{ durable: Promise<void> }> {
    const previous = this.last;
    if (previous === undefined || this.needsRotation) {
      await this.rotate(next);
      return { durable: Promise.resolve() };
    }
    const edit = diffManifest(previous, next);
    if (isEmptyEdit(edit)) {
      this.stats.unchanged++;
      // Nothing to write, but `next` (= the last edit appended) is durable only once that edit is.
      return { durable: this.lastSync };
    }
    const record = frame(KIND_EDIT, Buffer.from(JSON.stringify(editToJson(edit)), 'utf8'));
    if (this.editBytes + record.length > Math.max(this.rotateBytes, this.snapshotBytes)) {
      await this.rotate(next);
      return { durable: Promise.resolve() };
    }
    const name = manifestFileName(this.fileNumber);
    try {
      this.device.appendMeta(name, record);
    } catch (err) {
      // The file may now end with a partial record: never append after it.
      this.needsRotation = true;
      throw err;
    }
    this.editBytes += record.length;
    this.stats.edits++;
    this.stats.editBytes += record.length;
    this.last = cloneManifest(next);
    const durable = this.device.syncMeta(name).catch((err: unknown) => {
      this.needsRotation = true; // what the file holds past its last synced edit is unknown
      throw err;
    });
    durable.catch(() => {});
    this.lastSync = durable;
    return { durable };
  }

  private async rotate(next: ManifestData): Promise<void> {
    this.needsRotation = true; // until CURRENT names the new file
    // The old file's fd closes below: no fdatasync of it may still run.
    await this.lastSync.catch(() => {});
    const nextNumber = this.fileNumber + 1;
    const name = manifestFileName(nextNumber);
    const snapshot = frame(KIND_SNAPSHOT, encodeManifest(next));
    await this.device.writeMetaAtomic(name, snapshot);
    await this.device.writeMetaAtomic(CURRENT_NAME, Buffer.from(`${name}\n`, 'latin1'));
    const old = this.fileNumber;
    this.fileNumber = nextNumber;
    this.snapshotBytes = snapshot.length;
    this.editBytes = 0;
    this.last = cloneManifest(next);
    this.needsRotation = false;
    this.lastSync = Promise.resolve();
    this.stats.snapshots++;
    this.stats.snapshotBytes += snapshot.length;
    const remove = old === 0 ? this.stale : [manifestFileName(old), ...this.stale];
    this.stale = [];
    for (const file of remove) this.device.removeMeta(file);
  }
}

/** The manifest a device holds, or undefined for a device that never had one. */
export function readManifest(device: Device): ManifestData | undefined {
  return ManifestLog.open(device).data;
}

// ───────────────────────────── records ─────────────────────────────

function frame(kind: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + 1 + body.length);
  out[HEADER_BYTES] = kind;
  body.copy(out, HEADER_BYTES + 1);
  const payload = out.subarray(HEADER_BYTES);
  out.writeUInt32LE(payload.length, 0);
  out.writeUInt32LE(crc32c(payload), 4);
  return out;
}

export function encodeSnapshotRecord(data: ManifestData): Buffer {
  return frame(KIND_SNAPSHOT, encodeManifest(data));
}

export function encodeEditRecord(edit: ManifestEdit): Buffer {
  return frame(KIND_EDIT, Buffer.from(JSON.stringify(editToJson(edit)), 'utf8'));
}

export interface ManifestLogReplay {
  data: ManifestData;
  /** Bytes of the valid prefix (snapshot + intact edits); less than the file when its tail was torn. */
  validBytes: number;
  snapshotBytes: number;
  editCount: number;
}

/** Replays a manifest file: its snapshot, then each intact edit; a torn last record is ignored. */
export function replayManifestLog(bytes: Buffer, where: string): ManifestLogReplay {
  let pos = 0;
  let data: ManifestData | undefined;
  let snapshotBytes = 0;
  let editCount = 0;
  while (pos < bytes.length) {
    const record = readRecord(bytes, pos);
    if (typeof record === 'string') {
      if (data !== undefined && isTornTail(bytes, pos)) break;
      throw new CorruptManifestError(where, `record at byte ${pos}: ${record}`);
    }
    const kind = record.payload[0];
    const body = record.payload.subarray(1);
    if (data === undefined) {
      if (kind !== KIND_SNAPSHOT) throw new CorruptManifestError(where, 'does not start with a snapshot');
      data = decodeManifest(body, where);
      snapshotBytes = record.end;
    } else {
      if (kind !== KIND_EDIT) throw new CorruptManifestError(where, `record at byte ${pos}: kind ${kind}`);
      data = applyEdit(data, parseEdit(body, where, pos));
      editCount++;
    }
    pos = record.end;
  }
  if (data === undefined) throw new CorruptManifestError(where, 'empty');
  return { data, validBytes: pos, snapshotBytes, editCount };
}

function readRecord(bytes: Buffer, pos: number): { payload: Buffer; end: number } | string {
  if (pos + HEADER_BYTES > bytes.length) return 'incomplete header';
  const length = bytes.readUInt32LE(pos);
  const end = pos + HEADER_BYTES + length;
  if (length === 0) return 'empty record';
  if (end > bytes.length) return `length ${length} runs past the end`;
  const payload = bytes.subarray(pos + HEADER_BYTES, end);
  if (crc32c(payload) !== bytes.readUInt32LE(pos + 4)) return 'crc mismatch';
  return { payload, end };
}

/**
 * Whether the bad record at `pos` is a torn last append: it claims to reach the end of the file
 * (or past it), or everything from it on is zeros (a file extended whose data never landed).
 */
function isTornTail(bytes: Buffer, pos: number): boolean {
  if (pos + HEADER_BYTES > bytes.length) return true;
  const length = bytes.readUInt32LE(pos);
  if (length > 0 && pos + HEADER_BYTES + length >= bytes.length) return true;
  for (let i = pos; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

function parseEdit(body: Buffer, where: string, pos: number): ManifestEdit {
  try {
    return editFromJson(JSON.parse(body.toString('utf8')));
  } catch (err) {
    throw new CorruptManifestError(where, `edit at byte ${pos}: ${(err as Error).message}`);
  }
}
