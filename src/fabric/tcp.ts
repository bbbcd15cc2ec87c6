/**
 * The TCP fabric: the Fabric contract (types.ts) over one TCP connection per peer pair, for
 * deployments without an RDMA NIC. The receiving side places written bytes straight into the
 * registered region as frames arrive — no protocol code runs on receipt — and acknowledges each
 * write; one ordered byte stream per connection gives RC ordering (a message sent after a write
 * completed arrives after the bytes are in place).
 *
 * Frames: `u32 length | u8 type | payload`.
 *   CHALLENGE  server → client  nonce(32) | server node id
 *   HELLO      client → server  JSON {nodeId, epoch, nonce (the client's), mac}
 *   WELCOME    server → client  mac over the client's nonce (the server proves the secret too)
 *   REFUSED    server → client  reason (then close)
 *   WRITE      regionKey u32 | offset u64 | writeId u32 | bytes
 *   WRITE_ACK  writeId u32 | status u8 (0 placed, 1 revoked/unknown, 2 out of bounds)
 *   MESSAGE    bytes
 *   CLOSE      (the peer closed on purpose)
 *
 * Authentication: with a cluster secret (`secret`, or the file `secretFile`, or TALOS_CLUSTER_SECRET),
 * the server sends a fresh nonce and accepts only a HELLO whose HMAC-SHA256 over (nonce, node id,
 * epoch) matches; the listener's `accept` then sees the handshake. Until WELCOME nothing else is
 * read, so a peer without the secret never reaches a region. Without a secret, connections are
 * not authenticated (single-host development).
 *
 * Back-pressure: frames queue while the socket's buffer is above `highWaterBytes` and flow again
 * on 'drain'. A connection that breaks fails its pending writes (ConnectionClosedError) and tells
 * both sides' close handlers once.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import {
  ConnectionClosedError,
  FabricError,
  HandshakeRefusedError,
  RegionRevokedError,
  UnreachableError,
  WriteOutOfBoundsError,
} from '../errors.js';
import { EndpointBase } from './endpoint.js';
import { LengthPrefixedFrames } from './frames.js';
import type { Connection, Fabric, Handshake, Listener, ListenOptions, RemoteRegion } from './types.js';

const CHALLENGE = 1;
const HELLO = 2;
const WELCOME = 3;
const REFUSED = 4;
const WRITE = 5;
const WRITE_ACK = 6;
const MESSAGE = 7;
const CLOSE = 8;

const ACK_OK = 0;
const ACK_REVOKED = 1;
const ACK_BOUNDS = 2;

/** Largest frame accepted (a write of a whole segment plus headers fits easily). */
const MAX_FRAME_BYTES = 256 * 1024 * 1024;

export interface TcpFabricOptions {
  /** Cluster secret for the HMAC handshake. */
  secret?: string | Buffer;
  /** A file holding the secret (read once). */
  secretFile?: string;
  /** Connect and handshake deadline (default 5000 ms). */
  connectTimeoutMs?: number;
  /** Socket buffer level above which frames wait for 'drain' (default 8 MiB). */
  highWaterBytes?: number;
}

export class TcpFabric implements Fabric {
  readonly kind = 'tcp' as const;
  private readonly secret: Buffer | undefined;
  private readonly servers = new Set<Server>();
  private readonly connections = new Set<TcpConnection>();
  private closed = false;

  constructor(readonly options: TcpFabricOptions = {}) {
    const secret =
      options.secret ??
      (options.secretFile !== undefined ? readFileSync(options.secretFile, 'utf8').trim() : undefined) ??
      process.env.TALOS_CLUSTER_SECRET;
    this.secret = secret === undefined || secret.length === 0 ? undefined : Buffer.from(secret);
  }

  async listen(
    address: string,
    options: ListenOptions,
    onConnection: (connection: Connection) => void,
  ): Promise<Listener> {
    if (this.closed) throw new FabricError('FABRIC_CLOSED', 'fabric is closed');
    const { host, port } = parseTcpAddress(address);
    const server = createServer((socket) => this.serve(socket, options, onConnection));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.servers.add(server);
    const bound = server.address();
    const actual = typeof bound === 'object' && bound !== null ? bound.port : port;
    return {
      address: `tcp://${host}:${actual}`,
      close: () => {
        this.servers.delete(server);
        server.close();
      },
    };
  }

  async connect(address: string, handshake: Handshake): Promise<Connection> {
    if (this.closed) throw new FabricError('FABRIC_CLOSED', 'fabric is closed');
    const { host, port } = parseTcpAddress(address);
    const timeoutMs = this.options.connectTimeoutMs ?? 5000;
    const socket = createConnection({ host, port });
    socket.setNoDelay(true);
    socket.on('error', () => {}); // surfaced as the connect's failure or the connection's close
    const reader = new FrameReader(socket);
    const fail = (err: Error): never => {
      socket.destroy();
      throw err;
    };
    const timer = setTimeout(() => socket.destroy(new UnreachableError(address)), timeoutMs);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', () => reject(new UnreachableError(address)));
      });
      const challenge = await reader.next();
      if (challenge === undefined || challenge.type !== CHALLENGE || challenge.payload.length < 32) {
        return fail(new UnreachableError(address));
      }
      const serverNonce = challenge.payload.subarray(0, 32);
      const peerNodeId = challenge.payload.subarray(32).toString('utf8');
      const clientNonce = randomBytes(32);
      const hello = {
        nodeId: handshake.nodeId,
        epoch: handshake.epoch,
        nonce: clientNonce.toString('base64'),
        mac: this.mac(serverNonce, handshake.nodeId, handshake.epoch),
      };
      socket.write(frame(HELLO, Buffer.from(JSON.stringify(hello))));
      const answer = await reader.next();
      if (answer === undefined) return fail(new HandshakeRefusedError(`${address} closed the connection`));
      if (answer.type === REFUSED) return fail(new HandshakeRefusedError(answer.payload.toString('utf8')));
      if (answer.type !== WELCOME) return fail(new HandshakeRefusedError('unexpected handshake reply'));
      if (
        this.secret !== undefined &&
        !macEquals(answer.payload.toString('utf8'), this.mac(clientNonce, peerNodeId, 0))
      ) {
        return fail(new HandshakeRefusedError(`${address} did not prove the cluster secret`));
      }
      const connection = new TcpConnection(this, socket, reader, handshake.nodeId, peerNodeId);
      this.connections.add(connection);
      return connection;
    } catch (err) {
      socket.destroy();
      if (err instanceof FabricError) throw err;
      throw new UnreachableError(address);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const server of this.servers) server.close();
    this.servers.clear();
    for (const connection of [...this.connections]) connection.close();
  }

  /** @internal */
  forget(connection: TcpConnection): void {
    this.connections.delete(connection);
  }

  /** HMAC over (nonce, node id, epoch); '' without a secret. */
  private mac(nonce: Buffer, nodeId: string, epoch: number): string {
    if (this.secret === undefined) return '';
    return createHmac('sha256', this.secret)
      .update(nonce)
      .update(`\u0000${nodeId}\u0000${epoch}`)
      .digest('base64');
  }

  /** Server side of the handshake; nothing but HELLO is read before WELCOME. */
  private serve(
    socket: Socket,
    options: ListenOptions,
    onConnection: (connection: Connection) => void,
  ): void {
    socket.setNoDelay(true);
    const reader = new FrameReader(socket);
    const nonce = randomBytes(32);
    const timer = setTimeout(() => socket.destroy(), this.options.connectTimeoutMs ?? 5000);
    const refuse = (reason: string): void => {
      socket.end(frame(REFUSED, Buffer.from(reason)));
      setTimeout(() => socket.destroy(), 100);
    };
    socket.on('error', () => {});
    socket.write(frame(CHALLENGE, Buffer.concat([nonce, Buffer.from(options.nodeId)])));
    void (async () => {
      try {
        const hello = await reader.next();
        clearTimeout(timer);
        if (hello === undefined || hello.type !== HELLO) return void socket.destroy();
        let parsed: { nodeId?: unknown; epoch?: unknown; nonce?: unknown; mac?: unknown };
        try {
          parsed = JSON.parse(hello.payload.toString('utf8'));
        } catch {
          return refuse('malformed handshake');
        }
        const { nodeId, epoch, mac } = parsed;
        if (typeof nodeId !== 'string' || typeof epoch !== 'number' || typeof parsed.nonce !== 'string') {
          return refuse('malformed handshake');
        }
        if (this.closed) return refuse('fabric is closed');
        if (this.secret !== undefined && !macEquals(String(mac), this.mac(nonce, nodeId, epoch))) {
          return refuse('authentication failed: wrong or missing cluster secret');
        }
        const verdict = options.accept ? options.accept({ nodeId, epoch }) : true;
        if (verdict !== true) return refuse(verdict);
        socket.write(
          frame(WELCOME, Buffer.from(this.mac(Buffer.from(parsed.nonce, 'base64'), options.nodeId, 0))),
        );
        const connection = new TcpConnection(this, socket, reader, options.nodeId, nodeId);
        this.connections.add(connection);
        onConnection(connection);
      } catch {
        clearTimeout(timer);
        socket.destroy();
      }
    })();
  }
}

type PendingWrite = {
  resolve: () => void;
  reject: (err: Error) => void;
  regionKey: number;
  offset: number;
  length: number;
  regionBytes: number;
};

export class TcpConnection extends EndpointBase implements Connection {
  private regionKeys = 1;
  private nextWriteId = 1;
  private readonly pending = new Map<number, PendingWrite>();
  private readonly queued: Buffer[] = [];
  private draining = false;

  constructor(
    private readonly fabric: TcpFabric,
    private readonly socket: Socket,
    reader: FrameReader,
    localNodeId: string,
    peerNodeId: string,
  ) {
    super(localNodeId, peerNodeId);
    socket.on('error', (err) =>
      this.shutDown(new ConnectionClosedError(`${this.describe()}: ${err.message}`)),
    );
    socket.on('close', () =>
      this.shutDown(new ConnectionClosedError(`${this.describe()}: the connection broke`)),
    );
    socket.on('drain', () => this.flush());
    reader.onFrame((type, payload) => this.receive(type, payload));
  }

  protected nextRegionKey(): number {
    return this.regionKeys++;
  }

  write(remote: RemoteRegion, offset: number, bytes: Uint8Array): Promise<void> {
    const refused = this.checkWrite(remote, offset, bytes);
    if (refused !== undefined) return Promise.reject(refused);
    const writeId = this.nextWriteId++;
    const header = Buffer.alloc(16);
    header.writeUInt32LE(remote.handle.regionKey, 0);
    header.writeUInt32LE(offset % 2 ** 32, 4);
    header.writeUInt32LE(Math.floor(offset / 2 ** 32), 8);
    header.writeUInt32LE(writeId, 12);
    return new Promise<void>((resolve, reject) => {
      this.pending.set(writeId, {
        resolve,
        reject,
        regionKey: remote.handle.regionKey,
        offset,
        length: bytes.length,
        regionBytes: remote.handle.bytes,
      });
      // The frame is a copy: the caller may reuse `bytes` at once.
      this.enqueue(frame(WRITE, Buffer.concat([header, bytes])));
    });
  }

  send(message: Uint8Array): void {
    this.countSend(message);
    this.enqueue(frame(MESSAGE, Buffer.from(message)));
  }

  close(): void {
    if (this.closed) return;
    try {
      this.socket.write(frame(CLOSE, Buffer.alloc(0)));
    } catch {}
    this.shutDown(new ConnectionClosedError(`closed by ${this.localNodeId}`));
    this.socket.end();
  }

  private receive(type: number, payload: Buffer): void {
    if (this.closed) return;
    switch (type) {
      case WRITE: {
        const regionKey = payload.readUInt32LE(0);
        const offset = payload.readUInt32LE(4) + payload.readUInt32LE(8) * 2 ** 32;
        const writeId = payload.readUInt32LE(12);
        const refused = this.place(regionKey, offset, payload.subarray(16));
        const ack = Buffer.alloc(5);
        ack.writeUInt32LE(writeId, 0);
        ack.writeUInt8(
          refused === undefined
            ? ACK_OK
            : refused instanceof WriteOutOfBoundsError
              ? ACK_BOUNDS
              : ACK_REVOKED,
          4,
        );
        this.enqueue(frame(WRITE_ACK, ack));
        return;
      }
      case WRITE_ACK: {
        const writeId = payload.readUInt32LE(0);
        const status = payload.readUInt8(4);
        const write = this.pending.get(writeId);
        if (write === undefined) return;
        this.pending.delete(writeId);
        if (status === ACK_OK) write.resolve();
        else if (status === ACK_BOUNDS)
          write.reject(new WriteOutOfBoundsError(write.offset, write.length, write.regionBytes));
        else write.reject(new RegionRevokedError(write.regionKey));
        return;
      }
      case MESSAGE:
        this.deliverMessage(new Uint8Array(payload));
        return;
      case CLOSE:
        this.shutDown(new ConnectionClosedError(`closed by peer ${this.peerNodeId}`));
        this.socket.end();
        return;
      default:
        this.shutDown(new ConnectionClosedError(`${this.describe()}: unknown frame type ${type}`));
        this.socket.destroy();
    }
  }

  private enqueue(bytes: Buffer): void {
    if (this.draining || this.queued.length > 0) {
      this.queued.push(bytes);
      return;
    }
    this.socket.write(bytes);
    if (this.socket.writableLength > (this.fabric.options.highWaterBytes ?? 8 * 1024 * 1024))
      this.draining = true;
  }

  private flush(): void {
    this.draining = false;
    while (this.queued.length > 0 && !this.draining && !this.closed) {
      this.socket.write(this.queued.shift()!);
      if (this.socket.writableLength > (this.fabric.options.highWaterBytes ?? 8 * 1024 * 1024))
        this.draining = true;
    }
  }

  private shutDown(reason: Error): void {
    if (!this.markClosed(reason)) return;
    this.fabric.forget(this);
    this.queued.length = 0;
    for (const write of this.pending.values()) write.reject(reason);
    this.pending.clear();
  }
}

/** Splits a byte stream into frames (also the rdma fabric's connection-management channel). `next()` for the handshake, then `onFrame` for the rest. */
export class FrameReader {
  private readonly frames = new LengthPrefixedFrames(MAX_FRAME_BYTES);
  private handler: ((type: number, payload: Buffer) => void) | undefined;
  private waiter: ((f: { type: number; payload: Buffer } | undefined) => void) | undefined;
  private ended = false;

  constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.frames.push(chunk);
      this.drain();
    });
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

/** `tcp://host:port` → host and port, or FabricError BAD_ADDRESS. */
export function parseTcpAddress(address: string): { host: string; port: number } {
  const match = /^tcp:\/\/([^:/]+):(\d+)$/.exec(address);
  if (match === null) throw new FabricError('BAD_ADDRESS', `not a tcp address (tcp://host:port): ${address}`);
  return { host: match[1]!, port: Number(match[2]) };
}
