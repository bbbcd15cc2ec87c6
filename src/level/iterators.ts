/**
 * abstract-level iterators and snapshots over engine cursors (src/engine/cursor.ts).
 *
 * Each abstract-level iterator owns one `StoreCursor`: a merging iterator kept open over one
 * snapshot, so `_next`, `_nextv` and `_all` advance it and `_seek` repositions it — real seeks, no
 * emulation by re-scanning. The cursor reads the snapshot the caller passed (`{ snapshot }`, a
 * `LevelSnapshot`) or takes its own at creation (abstract-level's implicit snapshots); closing the
 * iterator closes the cursor and releases that snapshot. abstract-level counts `limit` itself; the
 * cursor enforces it too (the same count), which costs nothing and keeps the engine honest.
 */
import {
  AbstractIterator,
  AbstractKeyIterator,
  AbstractSnapshot,
  AbstractValueIterator,
} from 'abstract-level';
import type { AsyncCursor } from '../cluster/cluster-cursor.js';
import type { Cursor, CursorEntry, CursorOptions } from '../engine/store.js';

/** A snapshot handle an adapter's reads take: a StoreSnapshot, or a cluster's (one per region). */
export interface SnapshotHandle {
  release(): void;
}

/** Cursor options with the adapter's own snapshot handle type. */
export type SourceCursorOptions<S> = Omit<CursorOptions, 'snapshot'> & { snapshot?: S };

/** What an adapter's iterators read through: a cursor factory (Store.iterator, or a cluster's). */
export interface CursorSource<S = unknown> {
  iterator(options: SourceCursorOptions<S>): Cursor | AsyncCursor;
}

/** The range and ordering options abstract-level hands to `_iterator` (keys already encoded). */
export interface LevelRangeOptions {
  gt?: Buffer;
  gte?: Buffer;
  lt?: Buffer;
  lte?: Buffer;
  reverse?: boolean;
  limit?: number;
  keys?: boolean;
  values?: boolean;
  snapshot?: unknown;
}

/** An explicit snapshot (db.snapshot()): it holds an engine snapshot until closed. */
// abstract-level's typings declare only the public API; these constructors take (db, options).
const SnapshotBase = AbstractSnapshot as unknown as new (options: { owner: unknown }) => AbstractSnapshot;
type Db = unknown;
const EntryIteratorBase = AbstractIterator as unknown as new (
  db: Db,
  options: unknown,
) => AbstractIterator<Db, Buffer, Buffer>;
const KeyIteratorBase = AbstractKeyIterator as unknown as new (
  db: Db,
  options: unknown,
) => AbstractKeyIterator<Db, Buffer>;
const ValueIteratorBase = AbstractValueIterator as unknown as new (
  db: Db,
  options: unknown,
) => AbstractValueIterator<Db, Buffer, Buffer>;

/** An explicit snapshot (db.snapshot()): it holds an engine (or cluster) snapshot until closed. */
export class LevelSnapshot extends SnapshotBase {
  constructor(
    readonly handle: SnapshotHandle,
    options: { owner: unknown },
  ) {
    super(options);
  }

  async _close(): Promise<void> {
    this.handle.release();
  }
}

/** The snapshot handle an operation's `{ snapshot }` option names, if any. */
export function snapshotHandleOf<S>(snapshot: unknown): S | undefined {
  return snapshot instanceof LevelSnapshot ? (snapshot.handle as S) : undefined;
}

/** Cursor options for abstract-level's (already encoded) range options. */
export function cursorOptions<S>(options: LevelRangeOptions, values: boolean): SourceCursorOptions<S> {
  const out: SourceCursorOptions<S> = {
    reverse: options.reverse === true,
    limit: options.limit ?? -1,
    values,
  };
  if (options.gt !== undefined) out.gt = options.gt;
  if (options.gte !== undefined) out.gte = options.gte;
  if (options.lt !== undefined) out.lt = options.lt;
  if (options.lte !== undefined) out.lte = options.lte;
  const snapshot = snapshotHandleOf<S>(options.snapshot);
  if (snapshot !== undefined) out.snapshot = snapshot;
  return out;
}

export class LevelEntryIterator<S = unknown> extends EntryIteratorBase {
  private readonly cursor: Cursor | AsyncCursor;
  private readonly keys: boolean;

  constructor(db: Db, source: CursorSource<S>, options: LevelRangeOptions) {
    super(db, options);
    this.keys = options.keys !== false;
    this.cursor = source.iterator(cursorOptions<S>(options, options.values !== false));
  }

  private entry(e: CursorEntry): [Buffer, Buffer] {
    return [(this.keys ? e.key : undefined) as Buffer, e.value];
  }

  async _next(): Promise<[Buffer, Buffer] | undefined> {
    const e = await this.cursor.next();
    return e === undefined ? undefined : this.entry(e);
  }

  async _nextv(size: number): Promise<[Buffer, Buffer][]> {
    return (await this.cursor.nextv(size)).map((e) => this.entry(e));
  }

  async _all(): Promise<[Buffer, Buffer][]> {
    return (await this.cursor.all()).map((e) => this.entry(e));
  }

  _seek(target: Buffer): void {
    this.cursor.seek(target);
  }

  async _close(): Promise<void> {
    await this.cursor.close();
  }
}

export class LevelKeyIterator<S = unknown> extends KeyIteratorBase {
  private readonly cursor: Cursor | AsyncCursor;

  constructor(db: Db, source: CursorSource<S>, options: LevelRangeOptions) {
    super(db, options);
    this.cursor = source.iterator(cursorOptions<S>(options, false));
  }

  async _next(): Promise<Buffer | undefined> {
    return (await this.cursor.next())?.key;
  }

  async _nextv(size: number): Promise<Buffer[]> {
    return (await this.cursor.nextv(size)).map((e) => e.key);
  }

  async _all(): Promise<Buffer[]> {
    return (await this.cursor.all()).map((e) => e.key);
  }

  _seek(target: Buffer): void {
    this.cursor.seek(target);
  }

  async _close(): Promise<void> {
    await this.cursor.close();
  }
}

export class LevelValueIterator<S = unknown> extends ValueIteratorBase {
  private readonly cursor: Cursor | AsyncCursor;

  constructor(db: Db, source: CursorSource<S>, options: LevelRangeOptions) {
    super(db, options);
    this.cursor = source.iterator(cursorOptions<S>(options, true));
  }

  async _next(): Promise<Buffer | undefined> {
    return (await this.cursor.next())?.value;
  }

  async _nextv(size: number): Promise<Buffer[]> {
    return (await this.cursor.nextv(size)).map((e) => e.value);
  }

  async _all(): Promise<Buffer[]> {
    return (await this.cursor.all()).map((e) => e.value);
  }

  _seek(target: Buffer): void {
    this.cursor.seek(target);
  }

  async _close(): Promise<void> {
    await this.cursor.close();
  }
}
