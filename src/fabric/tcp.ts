/**
 * The TCP fabric: the Fabric contract (types.ts) over one TCP connection per peer pair, for
 * deployments without an RDMA NIC. One ordered byte stream per connection gives RC ordering: a
 * message sent after a write completed arrives after the write's bytes are in place.
 *
 * Batching (issue 16). Everything one side issues in a tick — one-sided writes, control messages,
 * acknowledgements — goes into one BATCH frame, and the tick's frames reach the socket as one
 * writev (tcp-outbound.ts). The receiver parses the stream as it arrives and copies each write's
 * payload from the socket's chunk straight into the registered region — no frame is assembled and
 * no protocol code runs (tcp-inbound.ts) — and acknowledges, once per frame, every group of writes
 * the frame completed. Consecutive writes into one region in one tick are a group: they share one
 * promise (made without a closure) and one outcome, resolved or rejected together when the ack
 * arrives, in issue order. A payload passed as `TransferredBytes` (transfer.ts) is referenced by
 * the frame instead of copied into it. Wire format: tcp-wire.ts; the handshake's frames
 * (CHALLENGE … REFUSED) are shared with the rdma fabric's side channel (socket-frames.ts).
 *
 * Outcomes: a write into a revoked or unknown region rejects with RegionRevokedError, one beyond
 * the region (checked at issue against the handle, and again on receipt) with
 * WriteOutOfBoundsError; when one write of a group is refused, every write of the group rejects
 * with that error (the others may have landed). A region revoked while a write's bytes arrive
 * gets none of the rest.
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
 * on 'drain'. A connection that breaks, or whose stream is malformed, fails its pending writes
 * (ConnectionClosedError) and tells both sides' close handlers once. `close()` sends what was
 * issued before it, then CLOSE.
 */
import type { Server, Socket } from 'node:net';
import { assert } from '../assert.js';
import { ConnectionClosedError, FabricError, RegionRevokedError, WriteOutOfBoundsError } from '../errors.js';
import { completion, EndpointBase } from './endpoint.js';
import {
  answerHandshake,
  clusterSecret,
  dialHandshake,
  type FrameReader,
  listenOnSocket,
} from './socket-frames.js';
import { type InboundSink, InboundStream, type PlacementRegion } from './tcp-inbound.js';
import { type Coalesce, OutboundBatch } from './tcp-outbound.js';
import { FRAME_CLOSE, FRAME_HEADER_BYTES, type GroupFailure, STATUS_OUT_OF_BOUNDS } from './tcp-wire.js';
import type { TlsCredentials } from './tls.js';
import type { Connection, Fabric, Handshake, Listener, ListenOptions, RemoteRegion } from './types.js';

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
  /** How a tick's frames reach the socket: one writev (default) or one Buffer.concat (bench:fabric compares). */
  coalesce?: Coalesce;
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

/** Writes issued together into one region (tcp-wire.ts): one promise, one outcome. */
interface Group {
  seq: number;
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
  regionKey: number;
  regionBytes: number;
  offsets: number[];
  lengths: number[];
}

export class TcpConnection extends EndpointBase implements Connection, InboundSink {
  private regionKeys = 1;
  private readonly outbound: OutboundBatch;
  private readonly inbound: InboundStream;
  /** The group the last write opened or continued (undefined once the outbound batch ended it). */
  private openGroup: Group | undefined;
  private lastGroupSeq = 0;
  /** Groups sent and not yet acknowledged, in send order (a FIFO: acks come in order). */
  private unacked: Group[] = [];
  private unackedHead = 0;
  private lastAckedSeq = 0;

  constructor(
    private readonly fabric: TcpFabric,
    private readonly socket: Socket,
    reader: FrameReader,
    localNodeId: string,
    peerNodeId: string,
  ) {
    super(localNodeId, peerNodeId);
    this.outbound = new OutboundBatch(
      socket,
      fabric.options.highWaterBytes ?? 8 * 1024 * 1024,
      fabric.options.coalesce ?? 'writev',
    );
    this.inbound = new InboundStream(this);
    socket.on('error', (err) =>
      this.shutDown(new ConnectionClosedError(`${this.describe()}: ${err.message}`)),
    );
    socket.on('close', () =>
      this.shutDown(new ConnectionClosedError(`${this.describe()}: the connection broke`)),
    );
    const early = reader.release();
    socket.on('data', (chunk: Buffer) => this.inbound.push(chunk));
    for (const chunk of early) this.inbound.push(chunk);
  }

  protected nextRegionKey(): number {
    return this.regionKeys++;
  }

  write(remote: RemoteRegion, offset: number, bytes: Uint8Array): Promise<void> {
    const refused = this.checkWrite(remote, offset, bytes);
    if (refused !== undefined) return Promise.reject(refused);
    const regionKey = remote.handle.regionKey;
    const continues = this.outbound.write(regionKey, offset, bytes);
    let group = this.openGroup;
    if (!continues || group === undefined) {
      assert(!continues, 'the outbound batch continues only a group this connection opened');
      this.lastGroupSeq = (this.lastGroupSeq + 1) >>> 0;
      group = {
        seq: this.lastGroupSeq,
        ...completion(),
        regionKey,
        regionBytes: remote.handle.bytes,
        offsets: [],
        lengths: [],
      };
      this.unacked.push(group);
      this.openGroup = group;
    }
    assert(group.regionKey === regionKey, 'a group stays in one region');
    group.offsets.push(offset);
    group.lengths.push(bytes.length);
    return group.promise;
  }

  send(message: Uint8Array): void {
    this.countSend(message);
    this.openGroup = undefined;
    this.outbound.message(message);
  }

  close(): void {
    if (this.closed) return;
    // What was issued before the close leaves first, as it would have without batching.
    this.outbound.flush(true);
    try {
      const closing = Buffer.alloc(FRAME_HEADER_BYTES);
      closing.writeUInt32LE(1, 0);
      closing[4] = FRAME_CLOSE;
      this.socket.write(closing);
    } catch {}
    this.shutDown(new ConnectionClosedError(`closed by ${this.localNodeId}`));
    this.socket.end();
  }

  // ---- InboundSink: what the parser reports ----

  get open(): boolean {
    return !this.closed;
  }

  region(regionKey: number): PlacementRegion | undefined {
    return this.regions.get(regionKey);
  }

  message(bytes: Uint8Array): void {
    this.deliverMessage(bytes);
  }

  completed(throughGroup: number, failures: GroupFailure[]): void {
    if (this.closed) return;
    this.openGroup = undefined;
    this.outbound.ack(throughGroup, failures);
  }

  acknowledged(throughGroup: number, failures: GroupFailure[]): void {
    let count = (throughGroup - this.lastAckedSeq) >>> 0;
    if (count > this.unacked.length - this.unackedHead) {
      this.malformed(`ack through group ${throughGroup}, beyond the groups sent`);
      return;
    }
    this.lastAckedSeq = throughGroup;
    let f = 0;
    for (; count > 0; count--) {
      const group = this.unacked[this.unackedHead++]!;
      if (group === this.openGroup) this.openGroup = undefined;
      const failure = failures[f];
      if (failure === undefined || failure.group !== group.seq) {
        group.resolve();
        continue;
      }
      f += 1;
      if (failure.status === STATUS_OUT_OF_BOUNDS) {
        const i = Math.min(failure.write, group.offsets.length - 1);
        group.reject(new WriteOutOfBoundsError(group.offsets[i]!, group.lengths[i]!, group.regionBytes));
      } else group.reject(new RegionRevokedError(group.regionKey));
    }
    if (f < failures.length) {
      this.malformed(`ack lists group ${failures[f]!.group}, not acknowledged`);
      return;
    }
    if (this.unackedHead > 1024 && this.unackedHead * 2 > this.unacked.length) {
      this.unacked = this.unacked.slice(this.unackedHead);
      this.unackedHead = 0;
    }
  }

  closedByPeer(): void {
    this.shutDown(new ConnectionClosedError(`closed by peer ${this.peerNodeId}`));
    this.socket.end();
  }

  malformed(reason: string): void {
    this.shutDown(new ConnectionClosedError(`${this.describe()}: malformed stream: ${reason}`));
    this.socket.destroy();
  }

  private shutDown(reason: Error): void {
    if (!this.markClosed(reason)) return;
    this.fabric.forget(this);
    this.outbound.discard();
    this.openGroup = undefined;
    for (let i = this.unackedHead; i < this.unacked.length; i++) this.unacked[i]!.reject(reason);
    this.unacked = [];
    this.unackedHead = 0;
  }
}

/** `tcp://host:port` → host and port, or FabricError BAD_ADDRESS. */
export function parseTcpAddress(address: string): { host: string; port: number } {
  const match = /^tcp:\/\/([^:/]+):(\d+)$/.exec(address);
  if (match === null) throw new FabricError('BAD_ADDRESS', `not a tcp address (tcp://host:port): ${address}`);
  return { host: match[1]!, port: Number(match[2]) };
}
