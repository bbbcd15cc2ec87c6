/**
 * The write path of a primary store: validate, make room, append, then commit.
 *
 * A put or delete (`write`):
 * 1. Validation: the store is usable and not closing, it is a primary, the key and the value fit
 *    (KeyTooLargeError / ValueTooLargeError: nothing is appended).
 * 2. Room (`makeRoom`, re-checked after every wait since another write may take the room): a full
 *    L0 whose predecessor is still being flushed waits for that flush (back-pressure, compaction.ts);
 *    a running seal is waited for; a record that does not fit the active segment seals it. A write
 *    waiting here was admitted before any close: close() lets it append first (`makingRoom`).
 * 3. Append: the record goes into the value log's active segment (ValueLog.append).
 * 4. Commit: with a commit gate or a sync policy that waits (GroupCommit.waits), the write joins the
 *    pending group and resolves when its group is applied; otherwise it enters L0 at once. From the
 *    append on, any failure is OutcomeUnknownError: the record is in the log.
 */
import { KeyTooLargeError, OutcomeUnknownError, StoreClosedError, ValueTooLargeError } from '../errors.js';
import type { Compactor } from './compaction.js';
import { type FailStop, NotWritableError } from './fail-stop.js';
import type { GroupCommit } from './group-commit.js';
import type { LogPosition, StoreRole } from './manifest.js';
import { type Bytes, toKey, toValue } from './options.js';
import { recordBytes } from './record.js';
import type { ValueLog } from './value-log.js';

export interface WritePathDeps {
  role: StoreRole;
  segmentBytes: number;
  l0Bytes: number;
  maxKeyBytes: number;
  maxValueBytes: number;
  failStop: FailStop;
  valueLog: ValueLog;
  compactor: Compactor;
  commits: GroupCommit;
  /** Whether close() has begun: nothing new is appended from then on. */
  closing: () => boolean;
}

export class WritePath {
  /** Writes waiting to append (makeRoom): close() lets them append first. */
  readonly makingRoom = new Set<Promise<void>>();
  /** Key + value bytes accepted from users. */
  userBytes = 0;

  constructor(private readonly d: WritePathDeps) {}

  async write(key: Bytes, value: Bytes | null): Promise<void> {
    const { d } = this;
    d.failStop.check();
    if (d.closing()) throw new StoreClosedError(); // closing: nothing new is appended
    if (d.role !== 'primary') throw new NotWritableError(d.role);
    const k = toKey(key);
    const v = value === null ? null : toValue(value);
    if (k.length > d.maxKeyBytes) throw new KeyTooLargeError(k.length, d.maxKeyBytes);
    const valueBytes = v?.length ?? 0;
    const fitsSegment = d.segmentBytes - recordBytes(k.length, 0);
    if (valueBytes > d.maxValueBytes || valueBytes > fitsSegment) {
      throw new ValueTooLargeError(valueBytes, Math.min(d.maxValueBytes, fitsSegment));
    }
    const length = recordBytes(k.length, valueBytes);
    // Checked again after each wait: another write may have taken the room meanwhile.
    while (this.needsRoom(length)) {
      // Admitted before any close: close() waits for it to append (then commits it).
      const room = this.makeRoom(length);
      this.makingRoom.add(room);
      try {
        await room;
      } finally {
        this.makingRoom.delete(room);
      }
    }
    const keyString = k.toString('latin1');
    const entry = d.failStop.run(() => d.valueLog.append(k, v));
    this.userBytes += k.length + valueBytes;
    if (d.commits.waits) {
      const active = d.valueLog.active!;
      const position = { seq: active.seq, offset: entry.pointer - active.offset, lsn: entry.lsn };
      return new Promise<void>((resolve, reject) => {
        d.commits.enqueue({ key: keyString, entry, position, resolve, reject });
      });
    }
    try {
      d.failStop.run(() => {
        d.compactor.l0.insert(keyString, entry);
        d.compactor.afterApply();
      });
    } catch (err) {
      // The record is in the log (and in L0): whatever failed after it, the outcome is unknown.
      throw new OutcomeUnknownError(
        `write of ${JSON.stringify(keyString)} was appended, then the store failed`,
        {
          cause: err,
        },
      );
    }
  }

  /**
   * The log position from which replay must start to rebuild what is not in L0: the first record
   * appended but not yet applied (pending or in a gated group), else the log's tail.
   */
  firstUnappliedPosition(): LogPosition {
    const first = this.d.commits.firstUnapplied();
    if (first !== undefined) return { ...first.position };
    const active = this.d.valueLog.active!;
    return { seq: active.seq, offset: active.usedBytes, lsn: this.d.valueLog.nextLsn };
  }

  /** Whether L0 is full while the previous one is still being flushed (back-pressure). */
  private l0Blocked(): boolean {
    const { compactor } = this.d;
    return (
      compactor.l0.bytes >= this.d.l0Bytes &&
      compactor.frozen !== undefined &&
      compactor.background !== undefined
    );
  }

  /** Whether a write of `length` record bytes must wait before it appends (see makeRoom). */
  private needsRoom(length: number): boolean {
    const { valueLog } = this.d;
    return this.l0Blocked() || valueLog.sealing !== undefined || !valueLog.fits(length);
  }

  /** Waits until a record of `length` bytes can be appended: back-pressure, a seal. */
  private async makeRoom(length: number): Promise<void> {
    const { compactor, valueLog, failStop } = this.d;
    for (;;) {
      if (this.l0Blocked()) {
        // Back-pressure: L0 is full and the previous one is still being flushed — wait for that
        // flush only, not for the compactions the background job runs after it.
        await compactor.flushed();
      } else if (valueLog.sealing !== undefined) {
        // Nothing is appended while a seal runs (its failure is the store's: checked below).
        await valueLog.sealing.catch(() => {});
      } else if (!valueLog.fits(length)) {
        // The record does not fit the active segment: seal it (its failure is this write's).
        await failStop.runAsync(() => valueLog.seal());
      } else break;
      failStop.check();
    }
  }
}
