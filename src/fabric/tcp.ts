/**
 * The TCP fabric: the Fabric contract (types.ts) over one TCP connection per peer pair, for
 * deployments without an RDMA NIC. The receiving side places written bytes straight into the
 * registered region as frames arrive — no protocol code runs on receipt — and acknowledges each
 * write; one ordered byte stream per connection gives RC ordering (a message sent after a write
 * completed arrives after the bytes are in place).
 *
 * Frames: `u32 length | u8 type | payload`; the handshake's (CHALLENGE … REFUSED) are shared
 * with the rdma fabric's side channel (socket-frames.ts).
 *   CHALLENGE  server → client  nonce(32) | server node id
 *   HELLO      client → server  JSON {nodeId, epoch, nonce (the client's), mac}
 *   WELCOME    server → client  JSON {mac over the client's nonce} (the server proves the secret too)
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
 * Encryption: with `tls` (CA, this node's certificate and key) every connection is mutual TLS —
 * a peer whose certificate another CA signed, or that expired, is refused in the TLS handshake,
 * before the cluster-secret handshake, which then runs inside TLS as a second factor. Without
 * `tls` the bytes after the handshake (log records: keys and values) travel in clear text.
 *
 * Back-pressure: frames queue while the socket's buffer is above `highWaterBytes` and flow again
 * on 'drain'. A connection that breaks fails its pending writes (ConnectionClosedError) and tells
 * both sides' close handlers once.
 */
import type { Server, Socket } from 'node:net';
import { ConnectionClosedError, FabricError, RegionRevokedError, WriteOutOfBoundsError } from '../errors.js';
import { EndpointBase } from './endpoint.js';
import {
  answerHandshake,
  clusterSecret,
  dialHandshake,
  FIRST_FABRIC_FRAME,
  type FrameReader,
  frame,
  listenOnSocket,
} from './socket-frames.js';
import type { TlsCredentials } from './tls.js';
import type { Connection, Fabric, Handshake, Listener, ListenOptions, RemoteRegion } from './types.js';

// Frames 1–4 are the handshake's (socket-frames.ts).
const WRITE = FIRST_FABRIC_FRAME;
const WRITE_ACK = FIRST_FABRIC_FRAME + 1;
const MESSAGE = FIRST_FABRIC_FRAME + 2;
const CLOSE = FIRST_FABRIC_FRAME + 3;

const ACK_OK = 0;
const ACK_REVOKED = 1;
const ACK_BOUNDS = 2;

export interface TcpFabricOptions {
  /** Cluster secret for the HMAC handshake. */
  secret?: string | Buffer;
  /** A file holding the secret (read once). */
  secretFile?: string;
  /** Connect and handshake deadline (default 5000 ms). */
  connectTimeoutMs?: number;
  /** Socket buffer level above which frames wait for 'drain' (default 8 MiB). */
  highWaterBytes?: number;
  /** Mutual TLS: the CA, this node's certificate and its key (PEM). */
  tls?: TlsCredentials;
}

export class TcpFabric implements Fabric {
  readonly kind = 'tcp' as const;
  private readonly secret: Buffer | undefined;
  private readonly servers = new Set<Server>();
  private readonly connections = new Set<TcpConnection>();
  private closed = false;

  constructor(readonly options: TcpFabricOptions = {}) {
    this.secret = clusterSecret(options);
  }

  async listen(
    address: string,
    options: ListenOptions,
    onConnection: (connection: Connection) => void,
  ): Promise<Listener> {
    if (this.closed) throw new FabricError('FABRIC_CLOSED', 'fabric is closed');
    const { host, port } = parseTcpAddress(address);
    return listenOnSocket(
      'tcp',
      host,
      port,
      this.servers,
      (socket) => this.serve(socket, options, onConnection),
      this.options.tls,
    );
  }

  async connect(address: string, handshake: Handshake): Promise<Connection> {
    if (this.closed) throw new FabricError('FABRIC_CLOSED', 'fabric is closed');
    const { host, port } = parseTcpAddress(address);
    const { socket, reader, peerNodeId } = await dialHandshake({
      address,
      host,
      port,
      timeoutMs: this.options.connectTimeoutMs ?? 5000,
      secret: this.secret,
      handshake,
      ...(this.options.tls === undefined ? {} : { tls: this.options.tls }),
    });
    const connection = new TcpConnection(this, socket, reader, handshake.nodeId, peerNodeId);
    this.connections.add(connection);
    return connection;
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

  /** Listening side: the shared handshake (socket-frames.ts), then a connection. */
  private serve(
    socket: Socket,
    options: ListenOptions,
    onConnection: (connection: Connection) => void,
  ): void {
    answerHandshake(socket, {
      secret: this.secret,
      options,
      timeoutMs: this.options.connectTimeoutMs ?? 5000,
      isClosed: () => this.closed,
      welcome: () => ({}),
      accepted: (reader, hello) => {
        const connection = new TcpConnection(this, socket, reader, options.nodeId, hello.nodeId);
        this.connections.add(connection);
        onConnection(connection);
        return true;
      },
    });
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

/** `tcp://host:port` → host and port, or FabricError BAD_ADDRESS. */
export function parseTcpAddress(address: string): { host: string; port: number } {
  const match = /^tcp:\/\/([^:/]+):(\d+)$/.exec(address);
  if (match === null) throw new FabricError('BAD_ADDRESS', `not a tcp address (tcp://host:port): ${address}`);
  return { host: match[1]!, port: Number(match[2]) };
}
