/**
 * Group commit: with syncPolicy 'always' or a commit gate, an appended write waits. Every write
 * appended in the same turn goes together (one `setImmediate` collects them): one tail write +
 * fdatasync ('always'; asynchronous, and shared with every other durability request due on the
 * device — group sync) and, at the same time, the commit gate when replication holds one
 * (PROTOCOL §3.3: a group is acknowledged only once every backup holds its tail). The gate is
 * called at commit, in log order, with the tail as it is then. Once both settled the group
 * reaches L0 in log order and its callers are acknowledged. Groups settle in commit order; a gate
 * rejection, a failed sync or a store that failed meanwhile rejects the group as
 * OutcomeUnknownError (its records are in the log) — see fail-stop.ts.
 */
import { assert } from '../assert.js';
import { StoreClosedError } from '../errors.js';
import { type FailStop, rejectAppended, StoreFailedError } from './fail-stop.js';
import type { IndexSegmentWrittenEvent } from './hooks.js';
import type { LogPosition } from './manifest.js';
import type { IndexEntry } from './memtable.js';
import type { SyncPolicy } from './options.js';
import type { ValueLog } from './value-log.js';

export interface PendingWrite {
  key: string;
  entry: IndexEntry;
  /** Where the record starts in the log: the replay position if it is not in L0 when L0 freezes. */
  position: LogPosition;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** The log's unacknowledged tail handed to a commit gate: the active segment's used prefix. */
export interface CommitTail {
  seq: number;
  segmentOffset: number;
  usedBytes: number;
  /** View of the active segment's bytes [0, usedBytes); copy before keeping past the call. */
  bytes: Buffer;
}

/**
 * Replication's hold on acknowledgement (PROTOCOL §3.3): a group of writes reaches L0 and is
 * acknowledged only when the gate's promise for its tail resolves; a rejection fails the group.
 * Gates resolve in call order.
 */
export type CommitGate = (tail: CommitTail) => Promise<void>;

/** Awaited by compaction after each index segment it writes (PROTOCOL §5.2: shipping back-pressure). */
export type ShipGate = (event: IndexSegmentWrittenEvent) => Promise<void>;

export class GroupCommit {
  /** Appended, not yet handed to commit (group commit collects them). */
  pending: PendingWrite[] = [];
  /** Groups handed to the commit gate, oldest first, not yet in L0. */
  readonly inflight: PendingWrite[][] = [];
  /** Settles once every group handed to the gate so far has settled. */
  chain: Promise<void> = Promise.resolve();
  gate: CommitGate | undefined;
  private scheduled = false;

  constructor(
    private readonly syncPolicy: SyncPolicy,
    private readonly failStop: FailStop,
    private readonly valueLog: ValueLog,
    /** Inserts a committed group's entries into L0 (and freezes or announces a full L0). */
    private readonly applyToL0: (batch: PendingWrite[]) => void,
  ) {}

  /** Whether an appended write must wait for a group commit before it is acknowledged. */
  get waits(): boolean {
    return this.syncPolicy === 'always' || this.gate !== undefined;
  }

  /** The first record appended but not applied (pending or in a gated group), if any. */
  firstUnapplied(): PendingWrite | undefined {
    return this.inflight[0]?.[0] ?? this.pending[0];
  }

  /** Queues an appended write; the commit runs on the next turn. */
  enqueue(write: PendingWrite): void {
    this.pending.push(write);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (!this.failStop.closed) this.commitPending();
    });
  }

  /** Commits every write appended since the last commit as one group (see the header). */
  commitPending(): void {
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    if (this.failStop.error !== undefined) {
      // Fail-stop: appended before the failure, acknowledged never.
      rejectAppended(batch, new StoreFailedError(this.failStop.error));
      return;
    }
    // Not applied until it settles: a freeze meanwhile replays from its first record.
    this.inflight.push(batch);
    const waits: Promise<void>[] = [];
    if (this.syncPolicy === 'always') {
      waits.push(this.failStop.runAsync(() => this.valueLog.syncTail(false)));
    }
    if (this.gate !== undefined) {
      const active = this.valueLog.active!;
      waits.push(
        this.gate({
          seq: active.seq,
          segmentOffset: active.offset,
          usedBytes: active.usedBytes,
          bytes: active.buf.subarray(0, active.usedBytes),
        }).catch((err: unknown) => {
          throw err ?? new Error('commit gate rejected');
        }),
      );
    }
    const settled = Promise.all(waits);
    settled.catch(() => {}); // observed in the chain below
    const settle = (err: unknown): void => {
      assert(this.inflight[0] === batch, 'commits settle in log order');
      this.inflight.shift();
      if (err !== undefined) rejectAppended(batch, err);
      else this.applyBatch(batch);
    };
    this.chain = this.chain.then(() =>
      settled.then(
        () => settle(undefined),
        (err: unknown) => settle(err ?? new Error('commit failed')),
      ),
    );
  }

  private applyBatch(batch: PendingWrite[]): void {
    // close() drains the commit chain before it closes, so a group settles on a closed store only
    // after an abandon (promotion, reset) — never a definite failure, its records are in the log.
    if (this.failStop.closed) {
      rejectAppended(batch, new StoreClosedError());
      return;
    }
    // Fail-stop: a group released by the gate after the store failed is not acknowledged either.
    if (this.failStop.error !== undefined) {
      rejectAppended(batch, new StoreFailedError(this.failStop.error));
      return;
    }
    try {
      this.failStop.run(() => this.applyToL0(batch));
    } catch (err) {
      rejectAppended(batch, err);
      return;
    }
    for (const p of batch) p.resolve();
  }
}
