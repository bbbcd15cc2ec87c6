/**
 * Server-side snapshots and cursors of one client connection (client-protocol.ts: the snapshot,
 * cursor, next and release requests). Each is an engine object of the region's serving session —
 * a StoreSnapshot, or a StoreCursor over its own implicit snapshot or over one of the
 * connection's snapshots — named by a handle (a number, never 0, never reused on the connection).
 *
 * - They belong to the connection: `closeAll` (its socket closed) closes every cursor and
 *   releases every snapshot, so a client that went away holds nothing on the node.
 * - Lease: a handle unused for `leaseMs` is closed the same way; using it afterwards is
 *   HANDLE_EXPIRED (a client that stalls longer than the lease opens a new cursor). Each use
 *   renews it.
 * - A page (`next`) holds at most `count` rows and stops early past PAGE_BYTES of keys and values,
 *   so a reply always fits a frame; `done` says the cursor is at its end.
 * - A cursor's reads fail as the engine's do: after a failover its store is closed (STORE_CLOSED),
 *   a released snapshot is SNAPSHOT_RELEASED. Those handles stay until released or expired.
 */
import type { RegionSession } from '../cluster/client.js';
import type { RegionCursor, RegionCursorOptions, RegionSnapshot } from '../cluster/cluster-cursor.js';
import { InvalidArgumentError, TalosError } from '../errors.js';

/** A page stops adding rows once it holds this many bytes of keys and values. */
export const PAGE_BYTES = 1024 * 1024;
/** Expired handles a connection remembers by number. */
const MAX_EXPIRED_KEPT = 1024;
/** Rows taken from a cursor at a time while a page fills. */
const PAGE_RUN = 64;
/** Most rows one page may ask for. */
export const MAX_PAGE_ROWS = 0xffff;

export class HandleExpiredError extends TalosError {
  constructor(handle: number) {
    super('HANDLE_EXPIRED', `handle ${handle} was closed after its lease ran out unused`);
  }
}

export class UnknownHandleError extends TalosError {
  constructor(handle: number) {
    super('UNKNOWN_HANDLE', `no handle ${handle} on this connection`);
  }
}

interface Held {
  regionId: string;
  cursor?: RegionCursor;
  snapshot?: RegionSnapshot;
  timer: NodeJS.Timeout;
}

export interface CursorRequest {
  /** A snapshot handle of this connection, or 0: the cursor takes its own. */
  snapshot: number;
  gte?: Buffer | undefined;
  lt?: Buffer | undefined;
  reverse: boolean;
  values: boolean;
}

export class ConnectionHandles {
  private nextHandle = 1;
  private readonly held = new Map<number, Held>();
  /** Handles closed by their lease (so a late use says why): the latest MAX_EXPIRED_KEPT only. */
  private readonly expired = new Set<number>();
  private closed = false;

  constructor(
    private readonly leaseMs: number,
    /** Told +1 / −1 as handles open and close (the node's gauge). */
    private readonly onCount?: (delta: number) => void,
  ) {
    if (!(leaseMs > 0)) throw new InvalidArgumentError(`handleLeaseMs must be > 0, got ${leaseMs}`);
  }

  get count(): number {
    return this.held.size;
  }

  openSnapshot(regionId: string, session: RegionSession): number {
    if (session.snapshot === undefined) throw new InvalidArgumentError('this session has no snapshots');
    return this.add({ regionId, snapshot: session.snapshot() });
  }

  openCursor(regionId: string, session: RegionSession, request: CursorRequest): number {
    if (session.iterator === undefined) throw new InvalidArgumentError('this session has no cursors');
    const options: RegionCursorOptions = { reverse: request.reverse, values: request.values };
    if (request.gte !== undefined) options.gte = request.gte;
    if (request.lt !== undefined) options.lt = request.lt;
    if (request.snapshot !== 0) {
      const snapshot = this.use(request.snapshot).snapshot;
      if (snapshot === undefined)
        throw new InvalidArgumentError(`handle ${request.snapshot} is not a snapshot`);
      options.snapshot = snapshot;
    }
    return this.add({ regionId, cursor: session.iterator(options) });
  }

  /**
   * Up to `count` rows of cursor `handle` (after a rewind or a seek, when asked). Rows are taken in
   * runs of PAGE_RUN; a region cursor hands out fewer than asked only at its end (engine cursors).
   */
  async page(
    handle: number,
    count: number,
    rewind: boolean,
    seek: Buffer | undefined,
  ): Promise<{ rows: { key: Buffer; value: Buffer }[]; done: boolean }> {
    const cursor = this.use(handle).cursor;
    if (cursor === undefined) throw new InvalidArgumentError(`handle ${handle} is not a cursor`);
    if (!(count >= 1 && count <= MAX_PAGE_ROWS)) {
      throw new InvalidArgumentError(`a page is 1 to ${MAX_PAGE_ROWS} rows, not ${count}`);
    }
    if (rewind) cursor.rewind();
    if (seek !== undefined) cursor.seek(seek);
    const rows: { key: Buffer; value: Buffer }[] = [];
    let bytes = 0;
    while (rows.length < count && bytes < PAGE_BYTES) {
      const want = Math.min(PAGE_RUN, count - rows.length);
      const entries = await cursor.nextv(want);
      for (const entry of entries) {
        rows.push(entry);
        bytes += entry.key.length + entry.value.length;
      }
      if (entries.length < want) return { rows, done: true };
    }
    return { rows, done: false };
  }

  /** Closes a cursor or releases a snapshot; releasing what is gone already is no error. */
  release(handle: number): void {
    const held = this.held.get(handle);
    if (held === undefined) return;
    this.drop(handle, held);
  }

  /** The connection closed: everything it held goes. */
  closeAll(): void {
    this.closed = true;
    for (const [handle, held] of this.held) this.drop(handle, held);
  }

  private add(entry: Omit<Held, 'timer'>): number {
    if (this.closed) {
      entry.cursor?.close();
      entry.snapshot?.release();
      throw new TalosError('CONNECTION_CLOSED', 'the connection closed');
    }
    const handle = this.nextHandle++;
    this.held.set(handle, { ...entry, timer: this.leaseTimer(handle) });
    this.onCount?.(1);
    return handle;
  }

  private use(handle: number): Held {
    const held = this.held.get(handle);
    if (held === undefined) {
      throw this.expired.has(handle) ? new HandleExpiredError(handle) : new UnknownHandleError(handle);
    }
    clearTimeout(held.timer);
    held.timer = this.leaseTimer(handle);
    return held;
  }

  private leaseTimer(handle: number): NodeJS.Timeout {
    const timer = setTimeout(() => {
      const held = this.held.get(handle);
      if (held === undefined) return;
      this.expired.add(handle);
      // A long-lived connection must not accumulate them: the oldest is forgotten (UNKNOWN_HANDLE).
      if (this.expired.size > MAX_EXPIRED_KEPT) this.expired.delete(this.expired.values().next().value!);
      this.drop(handle, held);
    }, this.leaseMs);
    timer.unref();
    return timer;
  }

  private drop(handle: number, held: Held): void {
    clearTimeout(held.timer);
    this.held.delete(handle);
    held.cursor?.close();
    held.snapshot?.release();
    this.onCount?.(-1);
  }
}
