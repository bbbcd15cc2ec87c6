/**
 * Streaming cursors: ordered iteration over a snapshot, one entry at a time.
 *
 * A cursor reads one snapshot (snapshot.ts): its own, taken at creation (implicit) and released by
 * `close()`, or one the caller passed and still owns. It keeps one merging iterator open over the
 * snapshot's sources — L0's clone, the frozen L0 and one lazy iterator per level, each reading
 * index blocks on demand — so `next` costs one merge step, never a re-merge of every level per
 * page (mergeStreams: newest lsn wins per key). Tombstones are skipped; values are read from the
 * value log only when asked for (`values`).
 *
 * Bounds are byte-order key bounds (gt/gte/lt/lte). Internally a cursor works on a half-open
 * range [lower, upper) of latin1 key strings (memtable.ts): `gt x` is `gte x·00` and `lte x` is
 * `lt x·00`, since x·00 is the first key after x in byte order. `seek(target)` rebuilds the merge
 * from the target (the first key ≥ target forward, ≤ target in reverse); a target outside the
 * bounds ends the cursor. `rewind()` restarts at the bounds.
 * `limit` counts the entries yielded over the cursor's life (seeks do not reset it).
 */
import { assert } from '../assert.js';
import { InvalidArgumentError, SnapshotReleasedError } from '../errors.js';
import type { IndexEntry } from './memtable.js';
import { mergeStreams } from './merge.js';
import { type Bytes, toKey } from './options.js';
import type { StoreSnapshot } from './snapshot.js';

export interface CursorOptions {
  gt?: Bytes;
  gte?: Bytes;
  lt?: Bytes;
  lte?: Bytes;
  reverse?: boolean;
  /** Entries yielded at most (default: no limit; a negative limit means none too, as in levelup). */
  limit?: number;
  /** Read values (default true); false yields keys with empty values, no value-log reads. */
  values?: boolean;
  /** Read this snapshot (the caller releases it) instead of one taken for the cursor. */
  snapshot?: StoreSnapshot;
}

export interface CursorEntry {
  key: Buffer;
  value: Buffer;
}

/** Reads the value an index entry names (ValueLog.readValue). */
export type ValueReader = (entry: IndexEntry, key: Buffer) => Buffer;

/** The half-open latin1 key range [lower, upper) the bounds describe; undefined: unbounded. */
export interface KeyRange {
  lower: string | undefined;
  upper: string | undefined;
}

/**
 * Turns gt/gte/lt/lte into [lower, upper) (see the header). Given both, gte wins over gt and lte
 * over lt, as abstract-level specifies.
 */
export function keyRange(options: Pick<CursorOptions, 'gt' | 'gte' | 'lt' | 'lte'>): KeyRange {
  const latin1 = (k: Bytes): string => toKey(k).toString('latin1');
  let lower: string | undefined;
  if (options.gte !== undefined) lower = latin1(options.gte);
  else if (options.gt !== undefined) lower = `${latin1(options.gt)}\u0000`;
  let upper: string | undefined;
  if (options.lte !== undefined) upper = `${latin1(options.lte)}\u0000`;
  else if (options.lt !== undefined) upper = latin1(options.lt);
  return { lower, upper };
}

/** What every cursor offers (a store's, a cluster's: src/cluster/cluster-cursor.ts). */
export interface Cursor {
  next(): CursorEntry | undefined;
  nextv(size: number): CursorEntry[];
  all(): CursorEntry[];
  seek(target: Bytes): void;
  /** Restarts at the start of the cursor's bounds. */
  rewind(): void;
  close(): void;
}

export class StoreCursor implements Cursor {
  private readonly range: KeyRange;
  private readonly reverse: boolean;
  private readonly limit: number;
  private readonly values: boolean;
  private merged: Iterator<[string, IndexEntry]> | undefined;
  /** Where the merge (re)starts on the next read: set at creation and by seek, opened lazily. */
  private restart: KeyRange | undefined;
  private yielded = 0;
  private closed = false;

  constructor(
    private readonly snapshot: StoreSnapshot,
    /** The cursor took the snapshot for itself and releases it on close. */
    private readonly ownsSnapshot: boolean,
    private readonly readValue: ValueReader,
    options: CursorOptions,
  ) {
    this.range = keyRange(options);
    this.reverse = options.reverse ?? false;
    const limit = options.limit ?? -1;
    if (typeof limit !== 'number' || Number.isNaN(limit))
      throw new InvalidArgumentError('limit must be a number');
    this.limit = limit < 0 ? Number.POSITIVE_INFINITY : limit;
    this.values = options.values ?? true;
    // Opened on the first read: a cursor over a snapshot released meanwhile fails there, not here.
    this.restart = this.range;
  }

  /** The next entry in order, or undefined at the end (of the range, or of the limit). */
  next(): CursorEntry | undefined {
    this.check();
    if (this.restart !== undefined) {
      this.merged = this.open(this.restart);
      this.restart = undefined;
    }
    if (this.yielded >= this.limit || this.merged === undefined) return undefined;
    for (;;) {
      const step = this.merged.next();
      if (step.done) {
        this.merged = undefined;
        return undefined;
      }
      const [key, entry] = step.value;
      if (entry.tombstone) continue;
      this.yielded++;
      const keyBytes = Buffer.from(key, 'latin1');
      const value = this.values ? this.readValue(entry, keyBytes) : EMPTY;
      return { key: keyBytes, value };
    }
  }

  /** Up to `size` next entries (fewer only at the end). */
  nextv(size: number): CursorEntry[] {
    if (!(size >= 0)) throw new InvalidArgumentError('nextv size must be >= 0');
    const out: CursorEntry[] = [];
    while (out.length < size) {
      const entry = this.next();
      if (entry === undefined) break;
      out.push(entry);
    }
    return out;
  }

  /** Every remaining entry. */
  all(): CursorEntry[] {
    return this.nextv(Number.POSITIVE_INFINITY);
  }

  /** Repositions at the first key ≥ `target` (≤ in reverse) within the bounds (see the header). */
  seek(target: Bytes): void {
    this.check();
    const t = toKey(target).toString('latin1');
    const { lower, upper } = this.range;
    this.merged = undefined;
    this.restart = undefined;
    // A target outside the bounds ends the cursor (as memory-level and classic-level do).
    if ((lower !== undefined && t < lower) || (upper !== undefined && t >= upper)) return;
    this.restart = this.reverse ? { lower, upper: `${t}\u0000` } : { lower: t, upper };
  }

  /** Restarts at the first entry of the bounds (the last, in reverse); the limit's count stays. */
  rewind(): void {
    this.check();
    this.merged = undefined;
    this.restart = this.range;
  }

  /** Ends the cursor (and its own snapshot). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.merged = undefined;
    this.restart = undefined;
    if (this.ownsSnapshot) this.snapshot.release();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private open(range: KeyRange): Iterator<[string, IndexEntry]> | undefined {
    const { lower, upper } = range;
    if (lower !== undefined && upper !== undefined && lower >= upper) return undefined;
    const streams = this.snapshot.streams(lower, upper, this.reverse);
    assert(streams.length > 0, 'a snapshot has at least its L0');
    return mergeStreams(streams, this.reverse);
  }

  private check(): void {
    if (this.closed) throw new SnapshotReleasedError();
    this.snapshot.check();
  }
}

const EMPTY = Buffer.alloc(0);
