/**
 * The write path of a primary store: validate, make room, append, then commit.
 *
 * A batch (`batch`; a put or delete is a batch of one, `write`):
 * 1. Validation: the store is usable and not closing, it is a primary, every key and value fits and
 *    the batch fits one segment (KeyTooLargeError / ValueTooLargeError / BatchTooLargeError:
 *    nothing is appended; write-batch.ts).
 * 2. Room (`makeRoom`, re-checked after every wait since another write may take the room): a full
 *    L0 whose predecessor is still being flushed waits for that flush (back-pressure, compaction.ts);
 *    a running seal is waited for; a record that does not fit the active segment seals it. A write
 *    waiting here was admitted before any close: close() lets it append first (`makingRoom`).
 * 3. Append: the records go into the value log's active segment in one step (appendBatch).
 * 4. Commit: with a commit gate or a sync policy that waits (GroupCommit.waits), the write joins the
 *    pending group and resolves when its group is applied; otherwise it enters L0 at once. From the
 *    append on, any failure is OutcomeUnknownError: the record is in the log.
 */
import { OutcomeUnknownError, StoreClosedError } from '../errors.js';
import type { Compactor } from './compaction.js';
import { type FailStop, NotWritableError } from './fail-stop.js';
import type { GroupCommit } from './group-commit.js';
import type { LogPosition, StoreRole } from './manifest.js';
import type { IndexEntry } from './memtable.js';
import type { Bytes } from './options.js';
import type { ValueLog } from './value-log.js';
import { appendBatch, type BatchOperation, describeKey, prepareBatch } from './write-batch.js';

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

  write(key: Bytes, value: Bytes | null): Promise<void> {
    const op: BatchOperation = value === null ? { type: 'del', key } : { type: 'put', key, value };
    return this.batch([op]);
  }

  /**
   * Applies `operations` atomically (write-batch.ts): validated whole first (one bad entry rejects
   * the batch, nothing written), appended as one run of records in one step, acknowledged as one.
   * A put or delete is a batch of one.
   */
  async batch(operations: readonly BatchOperation[]): Promise<void> {
    const { d } = this;
    d.failStop.check();
    if (d.closing()) throw new StoreClosedError(); // closing: nothing new is appended
    if (d.role !== 'primary') throw new NotWritableError(d.role);
    const prepared = prepareBatch(operations, d);
    if (prepared.writes.length === 0) return;
    const length = prepared.recordBytes;
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
    const entries = d.failStop.run(() => appendBatch(d.valueLog, prepared));
    this.userBytes += prepared.userBytes;
    const keys = prepared.writes.map((w) => w.key.toString('latin1'));
    if (d.commits.waits) return this.enqueueBatch(keys, entries);
    try {
      d.failStop.run(() => {
        for (let i = 0; i < keys.length; i++) d.compactor.l0.insert(keys[i]!, entries[i]!);
        d.compactor.afterApply();
      });
    } catch (err) {
      // The records are in the log (and in L0): whatever failed after them, the outcome is unknown.
      const what = describeKey(prepared.writes[0]!.key);
      throw new OutcomeUnknownError(`write of ${what} was appended, then the store failed`, { cause: err });
    }
  }

  /** Hands an appended batch to group commit: one group, one answer (write-batch.ts). */
  private enqueueBatch(keys: string[], entries: IndexEntry[]): Promise<void> {
    const { d } = this;
    const active = d.valueLog.active!;
    return new Promise<void>((resolve, reject) => {
      const last = entries.length - 1;
      for (let i = 0; i <= last; i++) {
        const entry = entries[i]!;
        const position = { seq: active.seq, offset: entry.pointer - active.offset, lsn: entry.lsn };
        // Every record rejects the one promise (settling twice is a no-op); the last resolves it.
        d.commits.enqueue({ key: keys[i]!, entry, position, resolve: i === last ? resolve : noop, reject });
      }
    });
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

function noop(): void {}
