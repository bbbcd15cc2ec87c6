/**
 * The client protocol: how a TalosClient talks to a node over TCP. One connection carries many
 * requests at once, matched to replies by request id.
 *
 * Frame: `u32 length | u8 op | u32 requestId | body`; strings are `u32 length | bytes` (keys and
 * region ids latin1, messages utf8).
 *   PUT     regionId, key, value            → OK (empty)
 *   GET     regionId, key                   → OK u8 found | value
 *   DELETE  regionId, key                   → OK (empty)
 *   SCAN    regionId, gte, u8 hasLt, lt, u32 limit, u8 reverse → OK u32 count | (key, value)*
 *   AUTH    token (utf8; empty for none)     → OK (empty) | ERROR UNAUTHENTICATED (then close)
 *   OK      body as above
 *   ERROR   code, message, regionId
 * The client names the region (from its map); the node answers WRONG_PRIMARY when it does not
 * serve that region at the moment or the key lies outside it, so a stale map costs a retry.
 *
 * Authentication (client-server.ts): a TalosClient sends AUTH first on every connection and waits
 * for its answer before any request. A node that requires credentials serves nothing on a
 * connection until it is authenticated — by a client certificate from its CA (under TLS), or by an
 * AUTH whose token is in its token file; anything else is answered UNAUTHENTICATED and the
 * connection closed. A node that requires none answers AUTH with OK whatever the token.
 * Under TLS (`tls.ts`) the whole stream — AUTH, keys, values — is inside the TLS session.
 */
import { TalosError } from '../errors.js';
import { LengthPrefixedFrames } from '../fabric/frames.js';

export const OP = { PUT: 1, GET: 2, DELETE: 3, SCAN: 4, AUTH: 5, OK: 0x81, ERROR: 0x82 } as const;

/** Largest frame either side accepts. */
export const MAX_CLIENT_FRAME_BYTES = 64 * 1024 * 1024;

export type ClientRequest =
  | { op: 'put'; regionId: string; key: string; value: Buffer }
  | { op: 'get'; regionId: string; key: string }
  | { op: 'delete'; regionId: string; key: string }
  | { op: 'scan'; regionId: string; gte: string; lt?: string; limit: number; reverse: boolean };

export class ProtocolError extends TalosError {
  constructor(detail: string) {
    super('PROTOCOL', `client protocol: ${detail}`);
  }
}

class Writer {
  private readonly parts: Buffer[] = [];
  u8(v: number): this {
    const b = Buffer.alloc(1);
    b.writeUInt8(v);
    this.parts.push(b);
    return this;
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.parts.push(b);
    return this;
  }
  bytes(v: Uint8Array): this {
    this.u32(v.length);
    this.parts.push(Buffer.from(v));
    return this;
  }
  str(v: string, encoding: BufferEncoding = 'latin1'): this {
    return this.bytes(Buffer.from(v, encoding));
  }
  frame(op: number, requestId: number): Buffer {
    const body = Buffer.concat(this.parts);
    const header = Buffer.alloc(9);
    header.writeUInt32LE(body.length + 5, 0);
    header.writeUInt8(op, 4);
    header.writeUInt32LE(requestId, 5);
    return Buffer.concat([header, body]);
  }
}

export class Reader {
  private pos = 0;
  constructor(private readonly buf: Buffer) {}
  u8(): number {
    this.need(1);
    return this.buf.readUInt8(this.pos++);
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  bytes(): Buffer {
    const n = this.u32();
    this.need(n);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return Buffer.from(v);
  }
  str(encoding: BufferEncoding = 'latin1'): string {
    return this.bytes().toString(encoding);
  }
  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw new ProtocolError('truncated frame');
  }
}

export function encodeRequest(requestId: number, request: ClientRequest): Buffer {
  const w = new Writer().str(request.regionId);
  switch (request.op) {
    case 'put':
      return w.str(request.key).bytes(request.value).frame(OP.PUT, requestId);
    case 'get':
      return w.str(request.key).frame(OP.GET, requestId);
    case 'delete':
      return w.str(request.key).frame(OP.DELETE, requestId);
    case 'scan':
      return w
        .str(request.gte)
        .u8(request.lt === undefined ? 0 : 1)
        .str(request.lt ?? '')
        .u32(request.limit)
        .u8(request.reverse ? 1 : 0)
        .frame(OP.SCAN, requestId);
  }
}

/** AUTH: the connection's credentials (an empty token when the client has none). */
export function encodeAuth(requestId: number, token: string): Buffer {
  return new Writer().str(token, 'utf8').frame(OP.AUTH, requestId);
}

export function decodeAuth(body: Buffer): string {
  return new Reader(body).str('utf8');
}

export function decodeRequest(op: number, body: Buffer): ClientRequest {
  const r = new Reader(body);
  const regionId = r.str();
  switch (op) {
    case OP.PUT:
      return { op: 'put', regionId, key: r.str(), value: r.bytes() };
    case OP.GET:
      return { op: 'get', regionId, key: r.str() };
    case OP.DELETE:
      return { op: 'delete', regionId, key: r.str() };
    case OP.SCAN: {
      const gte = r.str();
      const hasLt = r.u8() === 1;
      const lt = r.str();
      const limit = r.u32();
      const reverse = r.u8() === 1;
      return { op: 'scan', regionId, gte, ...(hasLt ? { lt } : {}), limit, reverse };
    }
    default:
      throw new ProtocolError(`unknown request op ${op}`);
  }
}

export const encodeOk = (requestId: number, fill: (w: Writer) => void = () => {}): Buffer => {
  const w = new Writer();
  fill(w);
  return w.frame(OP.OK, requestId);
};

export function encodeError(requestId: number, err: unknown, regionId: string): Buffer {
  const code = err instanceof TalosError ? err.code : 'INTERNAL';
  const message = err instanceof Error ? err.message : String(err);
  return new Writer().str(code, 'utf8').str(message, 'utf8').str(regionId).frame(OP.ERROR, requestId);
}

/** Splits a byte stream into `{op, requestId, body}` frames (ProtocolError on a malformed one). */
export class FrameSplitter {
  private readonly frames = new LengthPrefixedFrames(MAX_CLIENT_FRAME_BYTES, 5);

  push(chunk: Buffer, onFrame: (op: number, requestId: number, body: Buffer) => void): void {
    this.frames.push(chunk);
    for (;;) {
      let frame: Buffer | undefined;
      try {
        frame = this.frames.take();
      } catch (err) {
        throw new ProtocolError((err as Error).message);
      }
      if (frame === undefined) return;
      onFrame(frame.readUInt8(0), frame.readUInt32LE(1), frame.subarray(5));
    }
  }
}
