/**
 * The client protocol: how a TalosClient talks to a node over TCP. One connection carries many
 * operations at once: requests are pipelined and batched into frames, replies are batched back,
 * and each operation is matched to its reply by its request id.
 *
 * Frame: `u32 length | u8 kind | body`, the body one case of the FRAME table (schema.ts: the
 * tables below are the whole codec — encode, decode and validation):
 *   requests (1)  u16 count | (u32 id | request)*     client → node
 *   replies  (2)  u16 count | (u32 id | reply)*       node → client
 *   auth     (3)  u32 id | token (utf8; '' for none)  client → node, first on every connection
 *   goaway   (4)  u32 lastId | code | message         node → client, its last frame
 * Requests (an `op` byte, then): put regionId, key, value; get regionId, key; delete regionId, key;
 * scan regionId, gte, lt?, u32 limit, reverse; batch regionId, (del, key, value)* — atomic in the
 * region; snapshot regionId; cursor regionId, snapshot handle (0: its own), gte?, lt?, reverse,
 * values; next regionId, handle, count, rewind, seek?; release regionId, handle. Keys and values
 * are byte strings (a key at most 65535 bytes): binary keys travel as their bytes, string keys as
 * their UTF-8.
 * Replies (a `kind` byte, then): done (put, delete, batch, release, auth); value (get, found);
 * missing (get, not found); rows (scan: key, value pairs); handle (snapshot, cursor); page (next:
 * rows, and whether the cursor is at its end); error (code, message, regionId).
 *
 * Server-side cursors and snapshots (cursor-handles.ts) belong to the connection that opened
 * them: its handles name them, they close when it does, and one unused for the node's lease
 * (`handleLeaseMs`) is closed too (HANDLE_EXPIRED after that). The id 0 is never a
 * request's: an error under id 0 is about the connection (a request before authentication), and
 * the node closes the connection after it.
 *
 * GOAWAY (HTTP/2's): a node that closes a connection — it is stopping, or a frame was malformed —
 * says so last, with the id of the last request it started. Ids increase in the order the client
 * sent them, so every request after `lastId` certainly never ran, whatever the kernel took: the
 * client fails those as never sent (retried), and only the ones up to `lastId` that got no reply
 * are unknown. Without it, a batch written into a socket the node had just closed would be one
 * unknown outcome per operation.
 *
 * Batching. Each side coalesces what it has to send within one tick into one frame
 * (FrameBuilder): the client every operation issued in the tick to that node, the node every
 * reply that completed in the tick, whatever request frame it answered. A frame is sent at the end
 * of the tick (setImmediate), or at once when it passed FLUSH_FRAME_BYTES; a frame never passes
 * MAX_CLIENT_FRAME_BYTES (an item too large for any frame is refused with InvalidArgumentError
 * when it is added, before anything is sent). An item is encoded when it is added, so a value the
 * tables refuse fails that one operation alone.
 *
 * The client names the region (from its map); the node answers WRONG_PRIMARY when it does not
 * serve that region at the moment or the key lies outside it, so a stale map costs a retry.
 *
 * Authentication (client-server.ts): a TalosClient sends AUTH first on every connection and waits
 * for its answer before any request. A node that requires credentials serves nothing on a
 * connection until it is authenticated — by a client certificate from its CA (under TLS), or by an
 * AUTH whose token is in its token file; anything else is answered UNAUTHENTICATED and the
 * connection closed. A node that requires none answers AUTH with done whatever the token.
 * Under TLS (`tls.ts`) the whole stream — AUTH, keys, values — is inside the TLS session.
 */
import { assert } from '../assert.js';
import { InvalidArgumentError, TalosError } from '../errors.js';
import {
  bool,
  bytes,
  decode,
  type FieldType,
  list,
  optional,
  patchPrefix,
  str,
  struct,
  u32,
  variant,
  Writer,
} from '../replication/schema.js';

/** Largest frame either side accepts. */
export const MAX_CLIENT_FRAME_BYTES = 64 * 1024 * 1024;
/** A frame being filled is sent once it holds this many bytes, without waiting for the tick's end. */
export const FLUSH_FRAME_BYTES = 256 * 1024;
/** Most operations (or replies) in one frame. */
export const MAX_BATCH_COUNT = 0xffff;
export const MAX_KEY_BYTES = 0xffff;
export const MAX_VALUE_BYTES = MAX_CLIENT_FRAME_BYTES / 2;
/** The request id of replies about the connection rather than one request. */
export const CONNECTION_ID = 0;

const key = bytes(MAX_KEY_BYTES);
const value = bytes(MAX_VALUE_BYTES);
const regionId = str();

/** The field table of every request. */
export const REQUEST = variant('op', {
  put: [1, struct({ regionId, key, value })],
  get: [2, struct({ regionId, key })],
  delete: [3, struct({ regionId, key })],
  scan: [4, struct({ regionId, gte: key, lt: optional(key), limit: u32, reverse: bool })],
  batch: [5, struct({ regionId, operations: list(struct({ del: bool, key, value }), MAX_BATCH_COUNT) })],
  snapshot: [6, struct({ regionId })],
  cursor: [
    7,
    struct({ regionId, snapshot: u32, gte: optional(key), lt: optional(key), reverse: bool, values: bool }),
  ],
  next: [8, struct({ regionId, handle: u32, count: u32, rewind: bool, seek: optional(key) })],
  release: [9, struct({ regionId, handle: u32 })],
});
export type ClientRequest = FieldType<typeof REQUEST>;

/** The field table of every reply. */
export const REPLY = variant('kind', {
  done: [0, struct({})],
  value: [1, struct({ value })],
  missing: [2, struct({})],
  rows: [3, struct({ rows: list(struct({ key, value }), 0xffffffff) })],
  error: [4, struct({ code: str(), message: str(), regionId })],
  handle: [5, struct({ handle: u32 })],
  page: [6, struct({ rows: list(struct({ key, value }), 0xffffffff), done: bool })],
});
export type ClientReply = FieldType<typeof REPLY>;

const REQUEST_ITEM = struct({ id: u32, request: REQUEST });
const REPLY_ITEM = struct({ id: u32, reply: REPLY });
const REQUESTS = list(REQUEST_ITEM, MAX_BATCH_COUNT);
const REPLIES = list(REPLY_ITEM, MAX_BATCH_COUNT);

export const FRAME_KIND = { requests: 1, replies: 2, auth: 3, goaway: 4 } as const;

/** The field table of a frame's body. */
export const FRAME = variant('kind', {
  requests: [FRAME_KIND.requests, struct({ items: REQUESTS })],
  replies: [FRAME_KIND.replies, struct({ items: REPLIES })],
  auth: [FRAME_KIND.auth, struct({ id: u32, token: str() })],
  goaway: [FRAME_KIND.goaway, struct({ lastId: u32, code: str(), message: str() })],
});
export type ClientFrame = FieldType<typeof FRAME>;

export class ProtocolError extends TalosError {
  constructor(detail: string) {
    super('PROTOCOL', `client protocol: ${detail}`);
  }
}

/** Decodes a frame's body (after its length): ProtocolError for anything malformed. */
export function decodeFrame(body: Buffer): ClientFrame {
  return decode(FRAME, body, (detail) => new ProtocolError(`malformed frame: ${detail}`));
}

/** The kind byte of a frame's body, without decoding the rest (the authentication gate's look). */
export function frameKind(body: Buffer): number {
  return body[0] ?? 0;
}

/** A whole frame, length included (used for AUTH and for tests; batches use FrameBuilder). */
export function encodeFrame(frame: ClientFrame): Buffer {
  const w = new Writer(64);
  w.u32(0);
  FRAME.write(w, frame);
  const length = w.at - 4;
  if (length > MAX_CLIENT_FRAME_BYTES) throw new InvalidArgumentError(`frame of ${length} bytes`);
  w.buf.writeUInt32LE(length, 0);
  return w.finish();
}

/** Whether request id `id` was sent after `lastId` (ids increase mod 2^32, skipping 0). */
export function sentAfter(id: number, lastId: number): boolean {
  const distance = (id - lastId) >>> 0;
  return distance !== 0 && distance < 2 ** 31;
}

/** AUTH: the connection's credentials (an empty token when the client has none). */
export function encodeAuth(id: number, token: string): Buffer {
  return encodeFrame({ kind: 'auth', id, token });
}

/** An error reply for `err` (its code when typed, INTERNAL otherwise; the message cut to fit). */
export function errorReply(err: unknown, regionIdOfRequest: string): ClientReply {
  const code = err instanceof TalosError ? err.code : 'INTERNAL';
  const message = err instanceof Error ? err.message : String(err);
  return { kind: 'error', code, message: cutUtf8(message, 4096), regionId: regionIdOfRequest };
}

function cutUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  return `${Buffer.from(text)
    .subarray(0, maxBytes)
    .toString('utf8')
    .replace(/\ufffd$/, '')}…`;
}

/**
 * One requests or replies frame being filled, item by item. `add` encodes the item at once and
 * reports `false` when the frame is too full to take it (send the frame, then add again); an item
 * that fits no frame, or that the tables refuse, is an InvalidArgumentError and leaves the frame
 * as it was. `take` hands out the frame and starts the next.
 */
export class FrameBuilder<K extends 'requests' | 'replies'> {
  private w = new Writer(1024);
  private itemCount = 0;
  private readonly item: typeof REQUEST_ITEM | typeof REPLY_ITEM;
  private readonly countField: typeof REQUESTS.count;
  private readonly headerBytes: number;

  constructor(private readonly kind: K) {
    this.item = kind === 'requests' ? REQUEST_ITEM : REPLY_ITEM;
    this.countField = kind === 'requests' ? REQUESTS.count : REPLIES.count;
    this.headerBytes = 4 + 1 + this.countField.minBytes;
    this.reset();
  }

  get count(): number {
    return this.itemCount;
  }

  /** Bytes of the frame so far, length prefix included. */
  get byteLength(): number {
    return this.w.at;
  }

  add(item: K extends 'requests' ? FieldType<typeof REQUEST_ITEM> : FieldType<typeof REPLY_ITEM>): boolean {
    if (this.itemCount === MAX_BATCH_COUNT) return false;
    const mark = this.w.at;
    try {
      this.item.write(this.w, item as never);
    } catch (err) {
      this.w.at = mark;
      throw err;
    }
    if (this.w.at - 4 > MAX_CLIENT_FRAME_BYTES) {
      const itemBytes = this.w.at - mark;
      this.w.at = mark;
      if (this.itemCount > 0) return false;
      throw new InvalidArgumentError(`${this.kind} item of ${itemBytes} bytes exceeds the frame limit`);
    }
    this.itemCount++;
    return true;
  }

  /** The frame filled so far (undefined when empty); the builder starts a new one. */
  take(): Buffer | undefined {
    if (this.itemCount === 0) return undefined;
    const { w } = this;
    w.buf.writeUInt32LE(w.at - 4, 0);
    patchPrefix(w, 5, this.countField, this.itemCount);
    const frame = w.finish();
    this.w = new Writer(Math.min(Math.max(1024, frame.length), FLUSH_FRAME_BYTES * 2));
    this.reset();
    return frame;
  }

  private reset(): void {
    this.itemCount = 0;
    this.w.u32(0);
    this.w.u8(FRAME_KIND[this.kind]);
    this.countField.write(this.w, 0);
    assert(this.w.at === this.headerBytes, 'a frame header is length, kind and count');
  }
}

/**
 * Splits a byte stream into frame bodies (after their u32 length). A chunk holding many frames
 * is sliced, not copied; chunks are joined only when a frame spans them. A length of 0 or above
 * MAX_CLIENT_FRAME_BYTES is a ProtocolError: the stream cannot be parsed past it.
 */
export class FrameSplitter {
  private chunks: Buffer[] = [];
  private buffered = 0;

  push(chunk: Buffer, onFrame: (body: Buffer) => void): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    while (this.buffered >= 4) {
      let head = this.chunks[0]!;
      if (head.length < 4) head = this.join();
      const length = head.readUInt32LE(0);
      if (length < 1 || length > MAX_CLIENT_FRAME_BYTES) throw new ProtocolError(`frame of ${length} bytes`);
      if (this.buffered < 4 + length) return;
      if (head.length < 4 + length) head = this.join();
      const body = head.subarray(4, 4 + length);
      if (head.length === 4 + length) this.chunks.shift();
      else this.chunks[0] = head.subarray(4 + length);
      this.buffered -= 4 + length;
      onFrame(body);
    }
  }

  private join(): Buffer {
    const all = Buffer.concat(this.chunks);
    this.chunks = [all];
    return all;
  }
}

/**
 * Coalesces the items added within one tick into frames (FrameBuilder) and hands each finished
 * frame to `send`: at the end of the tick (setImmediate, so every operation or reply produced by
 * the tick's callbacks and microtasks joins it), or at once when the frame passed
 * FLUSH_FRAME_BYTES or is full. `add` throws what FrameBuilder.add throws, leaving the frame as
 * it was; when it returns, the item is in the frame `send` will get next.
 */
export class FrameBatcher<K extends 'requests' | 'replies'> {
  private readonly builder: FrameBuilder<K>;
  private scheduled = false;

  constructor(
    kind: K,
    private readonly send: (frame: Buffer, itemCount: number) => void,
  ) {
    this.builder = new FrameBuilder(kind);
  }

  /** Items waiting in the frame being filled. */
  get pendingCount(): number {
    return this.builder.count;
  }

  add(item: Parameters<FrameBuilder<K>['add']>[0]): void {
    if (!this.builder.add(item)) {
      this.flush();
      const added = this.builder.add(item);
      assert(added, 'an empty frame takes any item that fits a frame');
    }
    if (this.builder.byteLength >= FLUSH_FRAME_BYTES) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushAtTickEnd);
    }
  }

  /** Sends the frame being filled now (nothing when it is empty). */
  flush(): void {
    const count = this.builder.count;
    const frame = this.builder.take();
    if (frame !== undefined) this.send(frame, count);
  }

  private readonly flushAtTickEnd = (): void => {
    this.scheduled = false;
    this.flush();
  };
}
