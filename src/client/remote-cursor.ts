/**
 * A region's snapshot and cursor on a node, seen from TalosClient (the client protocol's
 * snapshot, cursor, next and release requests; the node's side is src/server/cursor-handles.ts).
 *
 * - Both are opened by a request sent when they are created — synchronously when the node's
 *   connection is open — so an operation issued after the creation reaches the node after it
 *   (one connection, requests in order): an iterator's implicit snapshot is taken at its creation.
 *   A cursor over a remote snapshot is opened once the snapshot's handle came back.
 * - A cursor reads in pages: `next` asks for a page of PAGE_ROWS rows, `nextv(n)` for up to n
 *   (at most MAX_PAGE_ROWS); its `limit` bounds what it asks for. `seek` and `rewind` drop the
 *   rows buffered and travel with the next page request.
 * - Handles live on one connection of one node: a snapshot is read on the node that took it (a
 *   cursor of another node's session over it is SNAPSHOT_MOVED), and a broken connection takes
 *   them along (UNKNOWN_HANDLE; the node also closes a handle unused for its lease:
 *   HANDLE_EXPIRED). Take new ones; the client does not re-open them by itself.
 * - `close` / `release` send a release and do not wait for it longer than the close does; a
 *   failed release is harmless (the node closes handles with their connection or lease).
 */
import type { AsyncCursor, RegionCursorOptions, RegionSnapshot } from '../cluster/cluster-cursor.js';
import type { CursorEntry } from '../engine/store.js';
import { InvalidArgumentError, SnapshotReleasedError, TalosError } from '../errors.js';
import { keyBytesOf } from '../keys.js';
import { type ClientReply, type ClientRequest, ProtocolError } from '../server/client-protocol.js';

/** Sends a read request to the region's node: the reply, or the typed error it carried. */
export type RemoteCall = (request: ClientRequest) => Promise<ClientReply>;

/** Rows a `next()` asks for at a time. */
export const PAGE_ROWS = 128;
/** Most rows one page request may ask for (the node's bound). */
export const MAX_PAGE_ROWS = 0xffff;

function handleOf(reply: ClientReply, what: string): number {
  if (reply.kind !== 'handle') throw new ProtocolError(`a ${reply.kind} reply to ${what}`);
  return reply.handle;
}

export class RemoteSnapshot implements RegionSnapshot {
  /** The node's handle, once it answered. */
  readonly opened: Promise<number>;
  private released = false;

  constructor(
    readonly nodeId: string,
    private readonly regionId: string,
    private readonly call: RemoteCall,
  ) {
    this.opened = call({ op: 'snapshot', regionId }).then((reply) => handleOf(reply, 'a snapshot'));
    this.opened.catch(() => {}); // observed by the cursors that read through it
  }

  get isReleased(): boolean {
    return this.released;
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.opened.then(
      (handle) => this.call({ op: 'release', regionId: this.regionId, handle }).catch(() => {}),
      () => {},
    );
  }
}

export class RemoteCursor implements AsyncCursor {
  private readonly handle: Promise<number>;
  private rows: CursorEntry[] = [];
  private at = 0;
  /** The node said the cursor is at its end (until a seek or rewind). */
  private done = false;
  private pendingRewind = false;
  private pendingSeek: Buffer | undefined;
  /** Rows received over the cursor's life, against `limit` (seeks do not reset it, as the engine's). */
  private received = 0;
  private readonly limit: number;
  private closed = false;

  constructor(
    private readonly regionId: string,
    private readonly call: RemoteCall,
    options: RegionCursorOptions,
  ) {
    const limit = options.limit ?? -1;
    this.limit = limit < 0 ? Number.POSITIVE_INFINITY : limit;
    const snapshot = options.snapshot;
    if (snapshot !== undefined && !(snapshot instanceof RemoteSnapshot)) {
      throw new InvalidArgumentError('a remote cursor reads through a remote snapshot');
    }
    if (snapshot?.isReleased) throw new SnapshotReleasedError();
    const open = (snapshotHandle: number): Promise<number> =>
      call({
        op: 'cursor',
        regionId,
        snapshot: snapshotHandle,
        reverse: options.reverse ?? false,
        values: options.values ?? true,
        ...(options.gte === undefined ? {} : { gte: keyBytesOf(options.gte) }),
        ...(options.lt === undefined ? {} : { lt: keyBytesOf(options.lt) }),
      }).then((reply) => handleOf(reply, 'a cursor'));
    // Sent now (not a microtask later) when there is no snapshot to wait for: see the header.
    this.handle = snapshot === undefined ? open(0) : snapshot.opened.then(open);
    this.handle.catch(() => {}); // surfaces from the first read
  }

  async next(): Promise<CursorEntry | undefined> {
    if (this.at >= this.rows.length && !(await this.fill(PAGE_ROWS))) return undefined;
    return this.rows[this.at++];
  }

  async nextv(size: number): Promise<CursorEntry[]> {
    if (!(size >= 0)) throw new InvalidArgumentError('nextv size must be >= 0');
    if (size === 0) return [];
    if (this.at >= this.rows.length && !(await this.fill(Math.min(size, MAX_PAGE_ROWS)))) return [];
    const out = this.rows.slice(this.at, this.at + size);
    this.at += out.length;
    return out;
  }

  async all(): Promise<CursorEntry[]> {
    const out: CursorEntry[] = [];
    for (;;) {
      const page = await this.nextv(MAX_PAGE_ROWS);
      if (page.length === 0) return out;
      for (const entry of page) out.push(entry);
    }
  }

  seek(target: Uint8Array | string): void {
    this.check();
    this.reposition();
    this.pendingSeek = keyBytesOf(target);
  }

  rewind(): void {
    this.check();
    this.reposition();
    this.pendingRewind = true;
    this.pendingSeek = undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.rows = [];
    try {
      const handle = await this.handle;
      await this.call({ op: 'release', regionId: this.regionId, handle });
    } catch {
      // Never opened, or the connection is gone: the node holds nothing of it then.
    }
  }

  /** Fetches the next page into `rows`; false when the cursor is at its end. */
  private async fill(want: number): Promise<boolean> {
    this.check();
    const left = this.limit - this.received;
    if (this.done || left <= 0) return false;
    const handle = await this.handle;
    const request: ClientRequest = {
      op: 'next',
      regionId: this.regionId,
      handle,
      count: Math.max(1, Math.min(want, left, MAX_PAGE_ROWS)),
      rewind: this.pendingRewind,
      ...(this.pendingSeek === undefined ? {} : { seek: this.pendingSeek }),
    };
    this.pendingRewind = false;
    this.pendingSeek = undefined;
    const reply = await this.call(request);
    this.check();
    if (reply.kind !== 'page') throw new ProtocolError(`a ${reply.kind} reply to next`);
    // Copies: the reply's bytes are views into the connection's receive buffer.
    this.rows = reply.rows.map((row) => ({ key: Buffer.from(row.key), value: Buffer.from(row.value) }));
    this.at = 0;
    this.received += this.rows.length;
    this.done = reply.done;
    return this.rows.length > 0;
  }

  private reposition(): void {
    // What was buffered and not handed out does not count against the limit.
    this.received -= this.rows.length - this.at;
    this.rows = [];
    this.at = 0;
    this.done = false;
  }

  private check(): void {
    if (this.closed) throw new TalosError('CURSOR_CLOSED', 'the cursor is closed');
  }
}
