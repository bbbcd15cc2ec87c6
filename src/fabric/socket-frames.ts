/**
 * What the tcp fabric and the rdma fabric's connection-management channel share: a socket
 * listener, typed length-prefixed frames (type byte + payload), and the cluster-secret handshake
 * pieces — the secret from options, a file or TALOS_CLUSTER_SECRET, and the HMAC over (nonce, node
 * id, epoch) each side proves it holds the secret with, compared in constant time.
 *
 * With `tls` (tls.ts) the socket is mutual TLS: the listener refuses in the TLS handshake a peer
 * without a certificate from the CA (another CA, expired), the dialer verifies the listener's
 * certificate against the CA and the address dialed; then the cluster-secret handshake runs inside
 * the TLS session as a second factor, and every later byte is encrypted. A TLS refusal is
 * HandshakeRefusedError (final), not UnreachableError.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, connect as tlsConnect } from 'node:tls';
import { FabricError, HandshakeRefusedError, UnreachableError } from '../errors.js';
import { LengthPrefixedFrames } from './frames.js';
import { type TlsCredentials, tlsClientOptions, tlsRefusal, tlsServerOptions } from './tls.js';
import type { Handshake, Listener, ListenOptions } from './types.js';

/** Largest frame accepted (a write of a whole segment plus headers fits easily). */
const MAX_FRAME_BYTES = 256 * 1024 * 1024;

/**
 * Listens on host:port (mutual TLS with `tls`: `onSocket` sees only peers the CA verified); the
 * Listener reports `scheme://host:actualPort` and closes the server.
 */
export async function listenOnSocket(
  scheme: string,
  host: string,
  port: number,
  servers: Set<Server>,
  onSocket: (socket: Socket) => void,
  tls?: TlsCredentials,
): Promise<Listener> {
  const server =
    tls === undefined
      ? createServer(onSocket)
      : createTlsServer(tlsServerOptions(tls, true), onSocket).on('tlsClientError', () => {});
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  servers.add(server);
  const bound = server.address();
  const actual = typeof bound === 'object' && bound !== null ? bound.port : port;
  return {
    address: `${scheme}://${host}:${actual}`,
    close: () => {
      servers.delete(server);
      server.close();
    },
  };
}

/** The cluster secret: `secret`, else the contents of `secretFile`, else TALOS_CLUSTER_SECRET. */
export function clusterSecret(options: {
  secret?: string | Buffer;
  secretFile?: string;
}): Buffer | undefined {
  const secret =
    options.secret ??
    (options.secretFile !== undefined ? readFileSync(options.secretFile, 'utf8').trim() : undefined) ??
    process.env.TALOS_CLUSTER_SECRET;
  return secret === undefined || secret.length === 0 ? undefined : Buffer.from(secret);
}

/** HMAC-SHA256 over (nonce, node id, epoch), base64; '' without a secret. */
export function handshakeMac(
  secret: Buffer | undefined,
  nonce: Buffer,
  nodeId: string,
  epoch: number,
): string {
  if (secret === undefined) return '';
  return createHmac('sha256', secret).update(nonce).update(`\u0000${nodeId}\u0000${epoch}`).digest('base64');
}

/** Splits a byte stream into frames (also the rdma fabric's connection-management channel). `next()` for the handshake, then `onFrame` for the rest. */
export class FrameReader {
  private readonly frames = new LengthPrefixedFrames(MAX_FRAME_BYTES);
  private handler: ((type: number, payload: Buffer) => void) | undefined;
  private waiter: ((f: { type: number; payload: Buffer } | undefined) => void) | undefined;
  private ended = false;

  private readonly onData = (chunk: Buffer): void => {
    this.frames.push(chunk);
    this.drain();
  };

  constructor(private readonly socket: Socket) {
    socket.on('data', this.onData);
    const end = (): void => {
      this.ended = true;
      const waiter = this.waiter;
      this.waiter = undefined;
      waiter?.(undefined);
    };
    socket.on('end', end);
    socket.on('close', end);
  }

  /** The next frame (handshake phase), or undefined when the stream ended first. */
  next(): Promise<{ type: number; payload: Buffer } | undefined> {
    const frameNow = this.take();
    if (frameNow !== undefined) return Promise.resolve(frameNow);
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  /**
   * Stops reading (the connection parses the stream itself from here) and returns the bytes that
   * arrived after the last frame taken, in order.
   */
  release(): Buffer[] {
    this.socket.off('data', this.onData);
    return this.frames.release();
  }

  onFrame(handler: (type: number, payload: Buffer) => void): void {
    this.handler = handler;
    for (let f = this.take(); f !== undefined; f = this.take()) handler(f.type, f.payload);
  }

  private drain(): void {
    while (this.waiter !== undefined || this.handler !== undefined) {
      const f = this.take();
      if (f === undefined) return;
      if (this.waiter !== undefined) {
        const waiter = this.waiter;
        this.waiter = undefined;
        waiter(f);
      } else this.handler!(f.type, f.payload);
    }
  }

  /** The next frame; a malformed one ends the connection (nothing past it can be parsed). */
  private take(): { type: number; payload: Buffer } | undefined {
    let body: Buffer | undefined;
    try {
      body = this.frames.take();
    } catch (err) {
      this.socket.destroy(err as Error);
      return undefined;
    }
    return body === undefined ? undefined : { type: body.readUInt8(0), payload: body.subarray(1) };
  }
}

export function frame(type: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32LE(payload.length + 1, 0);
  header.writeUInt8(type, 4);
  return Buffer.concat([header, payload]);
}

export function macEquals(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

// ─────────────────────────── the cluster-secret handshake ───────────────────────────
//   CHALLENGE  listener → dialer  nonce(32) | listener's node id
//   HELLO      dialer → listener  JSON {nodeId, epoch, nonce (the dialer's), mac, ...extra}
//   WELCOME    listener → dialer  JSON {mac over the dialer's nonce, ...extra} (the listener proves
//              the secret too)
//   REFUSED    listener → dialer  reason (then close)
// Until WELCOME nothing else is read, so a peer without the secret never gets further. The
// fabrics number their own frames from FIRST_FABRIC_FRAME on.

export const CHALLENGE = 1;
export const HELLO = 2;
export const WELCOME = 3;
export const REFUSED = 4;
export const FIRST_FABRIC_FRAME = 5;

/** What the listener learned from a HELLO it accepted. */
export interface AcceptedHello {
  nodeId: string;
  epoch: number;
  /** The HELLO's whole JSON (the fabric's extra fields). */
  fields: Record<string, unknown>;
}

/**
 * Dialing side: connects, answers the CHALLENGE with a HELLO (`helloExtra()` adds the fabric's
 * fields, called once the challenge arrived), checks the WELCOME's proof of the secret. Resolves
 * with the socket, its frame reader, the peer's node id and the WELCOME's fields; rejects with
 * UnreachableError or HandshakeRefusedError (the socket destroyed).
 */
export async function dialHandshake(args: {
  address: string;
  host: string;
  port: number;
  timeoutMs: number;
  secret: Buffer | undefined;
  handshake: Handshake;
  helloExtra?: () => Record<string, unknown>;
  /** Mutual TLS (the dialer's certificate and key are required). */
  tls?: TlsCredentials;
}): Promise<{ socket: Socket; reader: FrameReader; peerNodeId: string; welcome: Record<string, unknown> }> {
  const { address, handshake, secret, tls } = args;
  const socket =
    tls === undefined
      ? createConnection({ host: args.host, port: args.port })
      : tlsConnect(tlsClientOptions(tls, args.host, args.port));
  socket.setNoDelay(true);
  // Surfaced as the connect's failure or the connection's close; a TLS refusal is remembered.
  let tlsRefused: string | undefined;
  socket.on('error', (err) => {
    tlsRefused ??= tlsRefusal(err);
  });
  const unreachable = (): FabricError =>
    tlsRefused === undefined
      ? new UnreachableError(address)
      : new HandshakeRefusedError(`TLS with ${address}: ${tlsRefused}`);
  const reader = new FrameReader(socket);
  const timer = setTimeout(() => socket.destroy(new UnreachableError(address)), args.timeoutMs);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once(tls === undefined ? 'connect' : 'secureConnect', resolve);
      socket.once('error', () => reject(unreachable()));
    });
    const challenge = await reader.next();
    if (challenge === undefined && tls !== undefined && tlsRefused === undefined) {
      // Under TLS 1.3 the listener verifies our certificate after our side finished the handshake;
      // a refusal shows here only as a close, before the CHALLENGE a TLS listener sends at once.
      throw new HandshakeRefusedError(
        `TLS with ${address}: closed right after the TLS handshake (our certificate refused: another CA, expired?)`,
      );
    }
    if (challenge === undefined || challenge.type !== CHALLENGE || challenge.payload.length < 32) {
      throw unreachable();
    }
    const serverNonce = challenge.payload.subarray(0, 32);
    const peerNodeId = challenge.payload.subarray(32).toString('utf8');
    const clientNonce = randomBytes(32);
    const hello = {
      ...args.helloExtra?.(),
      nodeId: handshake.nodeId,
      epoch: handshake.epoch,
      nonce: clientNonce.toString('base64'),
      mac: handshakeMac(secret, serverNonce, handshake.nodeId, handshake.epoch),
    };
    socket.write(frame(HELLO, Buffer.from(JSON.stringify(hello))));
    const answer = await reader.next();
    if (answer === undefined) {
      throw new HandshakeRefusedError(
        tlsRefused === undefined ? `${address} closed the connection` : `TLS with ${address}: ${tlsRefused}`,
      );
    }
    if (answer.type === REFUSED) throw new HandshakeRefusedError(answer.payload.toString('utf8'));
    if (answer.type !== WELCOME) throw new HandshakeRefusedError('unexpected handshake reply');
    let welcome: Record<string, unknown>;
    try {
      welcome = JSON.parse(answer.payload.toString('utf8')) as Record<string, unknown>;
    } catch {
      throw new HandshakeRefusedError('malformed handshake reply');
    }
    if (
      secret !== undefined &&
      !macEquals(String(welcome.mac), handshakeMac(secret, clientNonce, peerNodeId, 0))
    ) {
      throw new HandshakeRefusedError(`${address} did not prove the cluster secret`);
    }
    return { socket, reader, peerNodeId, welcome };
  } catch (err) {
    socket.destroy();
    if (err instanceof FabricError) throw err;
    throw new UnreachableError(address);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Listening side, on a new socket: sends the CHALLENGE, reads the HELLO (nothing else), checks
 * the secret and the listener's `accept`, then `welcome(hello)` returns the WELCOME's extra fields
 * or a refusal reason, and `accepted(reader, hello)` builds the connection (it may read more
 * frames first). A socket that fails or stalls past `timeoutMs` is destroyed; `abandoned()` runs
 * whenever the handshake does not end in `accepted` completing.
 */
export function answerHandshake(
  socket: Socket,
  args: {
    secret: Buffer | undefined;
    options: ListenOptions;
    timeoutMs: number;
    isClosed: () => boolean;
    welcome: (hello: AcceptedHello) => Record<string, unknown> | string;
    accepted: (reader: FrameReader, hello: AcceptedHello) => Promise<boolean> | boolean;
    abandoned?: () => void;
  },
): void {
  socket.setNoDelay(true);
  const reader = new FrameReader(socket);
  const nonce = randomBytes(32);
  let done = false;
  const abandon = (): void => {
    if (done) return;
    done = true;
    args.abandoned?.();
  };
  const timer = setTimeout(() => {
    abandon();
    socket.destroy();
  }, args.timeoutMs);
  const refuse = (reason: string): void => {
    abandon();
    socket.end(frame(REFUSED, Buffer.from(reason)));
    setTimeout(() => socket.destroy(), 100);
  };
  socket.on('error', () => {});
  socket.on('close', abandon);
  socket.write(frame(CHALLENGE, Buffer.concat([nonce, Buffer.from(args.options.nodeId)])));
  void (async () => {
    try {
      const helloFrame = await reader.next();
      if (helloFrame === undefined || helloFrame.type !== HELLO) {
        abandon();
        return void socket.destroy();
      }
      let fields: Record<string, unknown>;
      try {
        fields = JSON.parse(helloFrame.payload.toString('utf8')) as Record<string, unknown>;
      } catch {
        return refuse('malformed handshake');
      }
      const { nodeId, epoch, mac } = fields;
      if (typeof nodeId !== 'string' || typeof epoch !== 'number' || typeof fields.nonce !== 'string') {
        return refuse('malformed handshake');
      }
      if (args.isClosed()) return refuse('fabric is closed');
      if (
        args.secret !== undefined &&
        !macEquals(String(mac), handshakeMac(args.secret, nonce, nodeId, epoch))
      ) {
        return refuse('authentication failed: wrong or missing cluster secret');
      }
      const verdict = args.options.accept ? args.options.accept({ nodeId, epoch }) : true;
      if (verdict !== true) return refuse(verdict);
      const hello: AcceptedHello = { nodeId, epoch, fields };
      const extra = args.welcome(hello);
      if (typeof extra === 'string') return refuse(extra);
      const proof = handshakeMac(args.secret, Buffer.from(fields.nonce, 'base64'), args.options.nodeId, 0);
      socket.write(frame(WELCOME, Buffer.from(JSON.stringify({ ...extra, mac: proof }))));
      const ok = await args.accepted(reader, hello);
      clearTimeout(timer);
      if (ok) done = true;
      else {
        abandon();
        socket.destroy();
      }
    } catch {
      clearTimeout(timer);
      abandon();
      socket.destroy();
    }
  })();
}
