/**
 * The rdma fabric: the Fabric contract (types.ts) on real verbs through the native addon
 * (native/, addon.ts). Written bytes travel by one-sided RDMA WRITE into the peer's registered
 * memory region; no code runs on the owner when they land.
 *
 * Per connection: two RC queue pairs and one completion queue.
 * - The **data QP** carries RDMA WRITEs. A write is copied into a registered staging area at issue
 *   (the caller may reuse its buffer), split into pieces of `DATA_PIECE_BYTES`, and posted in issue
 *   order; its promise resolves when the completion of its last piece arrives (RC: the peer's HCA
 *   acknowledged the bytes).
 * - The **control QP** carries SEND/RECV: user messages (fragmented to `CTRL_SLOT_BYTES`), and the
 *   region announcements REGION (key → address, rkey, size) and REVOKED. A writer learns where a
 *   region lives from REGION, which the owner sends on registration; a write waits until its
 *   region is announced, so a handle sent in a later message is always usable. The contract's
 *   ordering rule (a message sent after a write resolved arrives after its bytes) holds because
 *   the message is only posted after the write's completion. Messages stay in send order (one QP).
 *
 * Connection management runs over a TCP side channel to the listener (address
 * `rdma://host:port`), framed like the tcp fabric: the same HMAC challenge/response handshake (node
 * id, epoch, cluster secret) carries both sides' QP numbers, PSNs and GIDs, and both QPs go
 * INIT→RTR→RTS with them. Out-of-band setup (rather than rdma_cm) is what lets the same code
 * connect any two devices, e.g. rxe0→rxe1 over the IPv6 link-local GID, where rdma_cm cannot
 * resolve. The channel also carries CLOSE, and its loss breaks the connection.
 *
 * Revocation is real: `revoke` deregisters the region's MR (its rkey dies at once, in the HCA) and
 * announces REVOKED, after which the peer fails writes into it locally. A write that reaches the
 * HCA first fails there with IBV_WC_REM_ACCESS_ERR → RegionRevokedError. On RC such an error moves
 * both data QPs to ERR, so the data QP is **rebuilt**: the connecting side moves its old QP to ERR
 * (flushing what was posted), creates a new one and exchanges its numbers over the side channel
 * (DATA_QP / DATA_QP_ACK / DATA_READY; the accepting side asks with DATA_RESET_REQ when it sees
 * the error first). Flushed pieces are posted again, in order, on the new QP. The control QP is
 * untouched, so the connection stays open and messages keep flowing. (A piece flushed after its
 * bytes already landed is written again with the same bytes.)
 *
 * Close: CLOSE on the side channel, pending writes reject with ConnectionClosedError, QPs, CQ and
 * MRs are released; region memory stays readable until the JS garbage collector frees it.
 */
import { randomInt } from 'node:crypto';
import type { Server, Socket } from 'node:net';
import {
  ConnectionClosedError,
  FabricError,
  RegionRevokedError,
  UnreachableError,
  WriteOutOfBoundsError,
} from '../../errors.js';
import { EndpointBase, FabricRegion } from '../endpoint.js';
import {
  answerHandshake,
  clusterSecret,
  dialHandshake,
  FIRST_FABRIC_FRAME,
  type FrameReader,
  frame,
  listenOnSocket,
} from '../socket-frames.js';
import type { TlsCredentials } from '../tls.js';
import type {
  Connection,
  Fabric,
  Handshake,
  Listener,
  ListenOptions,
  LocalRegion,
  RemoteRegion,
} from '../types.js';
import {
  type LocalRequest,
  loadRdmaAddon,
  type NativeCompletion,
  type NativeCompletionQueue,
  type NativeDevice,
  type NativeMemoryRegion,
  type NativeProtectionDomain,
  type NativeQueuePair,
  type RdmaAddon,
  verbsError,
  type WriteRequest,
} from './addon.js';

// Side-channel frames (1–4 are the shared handshake's, socket-frames.ts).
const READY = FIRST_FABRIC_FRAME;
const CLOSE = FIRST_FABRIC_FRAME + 1;
const DATA_RESET_REQ = 7;
const DATA_QP = 8;
const DATA_QP_ACK = 9;
const DATA_READY = 10;

// Control-QP message kinds (first byte of each SEND).
const C_LAST = 1; // a message, or the last fragment of one
const C_MORE = 2; // a fragment, more follow
const C_REGION = 3;
const C_REVOKED = 4;

/** Bytes of one control SEND (kind byte included) and of each receive buffer. */
const CTRL_SLOT_BYTES = 8192;
const CTRL_SEND_SLOTS = 128;
const CTRL_RECV_SLOTS = 128;
/** A write is posted in pieces of at most this many bytes, each in one staging slot. */
const DATA_PIECE_BYTES = 64 * 1024;
const DATA_SEND_WR = 256;
/** Work-request id ranges: control receives, control sends, then data pieces. */
const WR_CTRL_SEND = 1_000;
const WR_DATA = 1_000_000;

export interface RdmaFabricOptions {
  /** RDMA device name, e.g. `mlx5_0` or `rxe0`. */
  device: string;
  /** GID table index of this side (RoCE: 1 = the IPv4-mapped GID on rxe, 0 = link-local). Default 0. */
  gidIndex?: number;
  /** Device port (default 1). */
  port?: number;
  /** Largest path MTU to use (default 1024; capped at the port's active MTU). */
  mtu?: number;
  /** Cluster secret for the HMAC handshake (or `secretFile`, or TALOS_CLUSTER_SECRET), as in tcp. */
  secret?: string | Buffer;
  secretFile?: string;
  /**
   * Mutual TLS on the side channel (handshake, control messages), as in tcp. The RDMA data path
   * (one-sided writes) is not encrypted: it never passes through a socket.
   */
  tls?: TlsCredentials;
  /** Connect and handshake deadline (default 10 000 ms). */
  connectTimeoutMs?: number;
  /** Registered staging memory per connection for outgoing writes (default 8 MiB). */
  stagingBytes?: number;
}

/** QP numbers, PSNs and GID one side announces in the handshake. */
interface WireQps {
  gid: string;
  mtu: number;
  ctrl: [number, number];
  data: [number, number];
}

/** A Node-side hold on the device: opened on first use. */
interface DeviceHold {
  addon: RdmaAddon;
  device: NativeDevice;
  pd: NativeProtectionDomain;
  gid: Buffer;
  mtu: number;
}

/** Completions that arrive before their connection object exists are kept until it does. */
class CompletionSink {
  private handler: ((batch: NativeCompletion[]) => void) | undefined;
  private early: NativeCompletion[][] = [];
  push(batch: NativeCompletion[]): void {
    if (this.handler === undefined) this.early.push(batch);
    else this.handler(batch);
  }
  attach(handler: (batch: NativeCompletion[]) => void): void {
    this.handler = handler;
    for (const batch of this.early.splice(0)) handler(batch);
  }
}

class SlotPool {
  private readonly free: number[];
  constructor(count: number) {
    this.free = Array.from({ length: count }, (_, i) => count - 1 - i);
  }
  take(): number | undefined {
    return this.free.pop();
  }
  give(slot: number): void {
    this.free.push(slot);
  }
}

/** The verbs objects of one connection. */
class QpResources {
  readonly sink = new CompletionSink();
  readonly cq: NativeCompletionQueue;
  readonly ctrl: NativeQueuePair;
  data: NativeQueuePair;
  readonly ctrlSendMr: NativeMemoryRegion;
  readonly ctrlRecvMr: NativeMemoryRegion;
  readonly stagingMr: NativeMemoryRegion;
  readonly ctrlPsn = randomInt(0, 0xffffff);
  dataPsn = randomInt(0, 0xffffff);
  private readonly closers: (() => void)[] = [];

  constructor(
    readonly hold: DeviceHold,
    readonly options: RdmaFabricOptions,
    stagingSlots: number,
  ) {
    const { addon, device, pd } = hold;
    const close = <T extends { close(): void }>(x: T): T => {
      this.closers.push(() => x.close());
      return x;
    };
    try {
      this.cq = close(
        new addon.CompletionQueue(
          device,
          CTRL_SEND_SLOTS + CTRL_RECV_SLOTS + 2 * DATA_SEND_WR + 64,
          (batch) => this.sink.push(batch),
        ),
      );
      this.ctrl = close(
        new addon.QueuePair(pd, this.cq, this.cq, {
          maxSendWr: CTRL_SEND_SLOTS,
          maxRecvWr: CTRL_RECV_SLOTS,
          port: options.port ?? 1,
        }),
      );
      this.data = this.newDataQp();
      this.ctrlSendMr = close(new addon.MemoryRegion(pd, CTRL_SEND_SLOTS * CTRL_SLOT_BYTES, false));
      this.ctrlRecvMr = close(new addon.MemoryRegion(pd, CTRL_RECV_SLOTS * CTRL_SLOT_BYTES, false));
      this.stagingMr = close(new addon.MemoryRegion(pd, stagingSlots * DATA_PIECE_BYTES, false));
      // Receives go up in INIT, before the peer can send.
      this.ctrl.postRecvs(Array.from({ length: CTRL_RECV_SLOTS }, (_, slot) => this.recvRequest(slot)));
    } catch (err) {
      this.close();
      throw verbsError(err);
    }
  }

  recvRequest(slot: number): LocalRequest {
    return { wrId: slot + 1, mr: this.ctrlRecvMr, offset: slot * CTRL_SLOT_BYTES, length: CTRL_SLOT_BYTES };
  }

  /** A fresh data QP in INIT (the old one, if any, is the caller's to close). */
  newDataQp(): NativeQueuePair {
    const qp = new this.hold.addon.QueuePair(this.hold.pd, this.cq, this.cq, {
      maxSendWr: DATA_SEND_WR,
      maxRecvWr: 1,
      port: this.options.port ?? 1,
    });
    this.dataPsn = randomInt(0, 0xffffff);
    return qp;
  }

  wire(): WireQps {
    return {
      gid: this.hold.gid.toString('hex'),
      mtu: this.hold.mtu,
      ctrl: [this.ctrl.qpNum!, this.ctrlPsn],
      data: [this.data.qpNum!, this.dataPsn],
    };
  }

  connectQp(qp: NativeQueuePair, localPsn: number, peer: WireQps, remote: [number, number]): void {
    try {
      qp.connect({
        remoteQpNum: remote[0],
        remotePsn: remote[1],
        remoteGid: Buffer.from(peer.gid, 'hex'),
        localPsn,
        gidIndex: this.options.gidIndex ?? 0,
        port: this.options.port ?? 1,
        mtu: Math.min(this.hold.mtu, peer.mtu),
      });
    } catch (err) {
      throw verbsError(err);
    }
  }

  connect(peer: WireQps): void {
    this.connectQp(this.ctrl, this.ctrlPsn, peer, peer.ctrl);
    this.connectQp(this.data, this.dataPsn, peer, peer.data);
  }

  /** QPs first (their outstanding work is discarded), then the MRs they pointed into, then the CQ. */
  close(): void {
    this.data?.close();
    this.ctrl?.close();
    for (const closer of this.closers.splice(0).reverse()) {
      try {
        closer();
      } catch {}
    }
  }
}

export class RdmaFabric implements Fabric {
  readonly kind = 'rdma' as const;
  private readonly secret: Buffer | undefined;
  private readonly servers = new Set<Server>();
  private readonly connections = new Set<RdmaConnection>();
  private hold: DeviceHold | undefined;
  private closed = false;

  constructor(readonly options: RdmaFabricOptions) {
    this.secret = clusterSecret(options);
  }

  /**
   * Opens the device and a protection domain (first use). Throws RdmaUnavailableError without the
   * addon, RdmaDeviceError for a device that does not exist.
   */
  open(): DeviceHold {
    if (this.hold !== undefined) return this.hold;
    const addon = loadRdmaAddon();
    let device: NativeDevice | undefined;
    try {
      device = new addon.Device(this.options.device);
      const port = this.options.port ?? 1;
      const gid = device.queryGid(port, this.options.gidIndex ?? 0);
      const activeMtu = device.queryPort(port).activeMtu;
      const pd = new addon.ProtectionDomain(device);
      this.hold = { addon, device, pd, gid, mtu: Math.min(this.options.mtu ?? 1024, activeMtu) };
      return this.hold;
    } catch (err) {
      device?.close();
      throw verbsError(err);
    }
  }

  async listen(
    address: string,
    options: ListenOptions,
    onConnection: (connection: Connection) => void,
  ): Promise<Listener> {
    if (this.closed) throw new FabricError('FABRIC_CLOSED', 'fabric is closed');
    const { host, port } = parseRdmaAddress(address);
    this.open();
    return listenOnSocket(
      'rdma',
      host,
      port,
      this.servers,
      (socket) => this.serve(socket, options, onConnection),
      this.options.tls,
    );
  }

  async connect(address: string, handshake: Handshake): Promise<Connection> {
    if (this.closed) throw new FabricError('FABRIC_CLOSED', 'fabric is closed');
    const { host, port } = parseRdmaAddress(address);
    const hold = this.open();
    let resources: QpResources | undefined;
    try {
      // Our QPs are created once the listener answered, and announced in the HELLO.
      const { socket, reader, peerNodeId, welcome } = await dialHandshake({
        address,
        host,
        port,
        timeoutMs: this.options.connectTimeoutMs ?? 10_000,
        secret: this.secret,
        handshake,
        ...(this.options.tls === undefined ? {} : { tls: this.options.tls }),
        helloExtra: () => {
          resources = new QpResources(hold, this.options, this.stagingSlots());
          return { qps: resources.wire() };
        },
      });
      const qps = welcome.qps as WireQps;
      try {
        resources!.connect(qps);
      } catch (err) {
        socket.destroy();
        throw err;
      }
      const connection = new RdmaConnection(
        this,
        socket,
        reader,
        resources!,
        qps,
        'connector',
        handshake.nodeId,
        peerNodeId,
      );
      this.connections.add(connection);
      socket.write(frame(READY, Buffer.alloc(0)));
      return connection;
    } catch (err) {
      resources?.close();
      if (err instanceof FabricError) throw err;
      throw new UnreachableError(address);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const server of this.servers) server.close();
    this.servers.clear();
    for (const connection of [...this.connections]) connection.close();
    // The PD and device are released when their last QP/MR is (the addon's objects hold parents).
    this.hold?.pd.close();
    this.hold?.device.close();
    this.hold = undefined;
  }

  /** @internal */
  forget(connection: RdmaConnection): void {
    this.connections.delete(connection);
  }

  private stagingSlots(): number {
    return Math.max(4, Math.ceil((this.options.stagingBytes ?? 8 * 1024 * 1024) / DATA_PIECE_BYTES));
  }

  /** Accepting side: the shared handshake (its HELLO carries their QPs, our WELCOME ours), then READY. */
  private serve(
    socket: Socket,
    options: ListenOptions,
    onConnection: (connection: Connection) => void,
  ): void {
    let resources: QpResources | undefined;
    answerHandshake(socket, {
      secret: this.secret,
      options,
      timeoutMs: this.options.connectTimeoutMs ?? 10_000,
      isClosed: () => this.closed,
      welcome: (hello) => {
        if (hello.fields.qps === undefined) return 'malformed handshake';
        try {
          resources = new QpResources(this.open(), this.options, this.stagingSlots());
          resources.connect(hello.fields.qps as WireQps);
        } catch (err) {
          return `rdma setup failed: ${(err as Error).message}`;
        }
        return { qps: resources.wire() };
      },
      accepted: async (reader, hello) => {
        const ready = await reader.next();
        if (ready === undefined || ready.type !== READY || this.closed || resources === undefined)
          return false;
        const connection = new RdmaConnection(
          this,
          socket,
          reader,
          resources,
          hello.fields.qps as WireQps,
          'acceptor',
          options.nodeId,
          hello.nodeId,
        );
        this.connections.add(connection);
        onConnection(connection);
        return true;
      },
      abandoned: () => resources?.close(),
    });
  }
}

interface WriteOp {
  regionKey: number;
  offset: number;
  length: number;
  pieces: Piece[];
  /** Pieces not yet completed. */
  remaining: number;
  /** Pieces posted whose completion has not come back. */
  outstanding: number;
  error: Error | undefined;
  resolve: () => void;
  reject: (err: Error) => void;
}

interface Piece {
  op: WriteOp;
  /** Offset of the piece within the write. */
  delta: number;
  length: number;
  /** The bytes, until copied into a staging slot. */
  source: Uint8Array | undefined;
  slot: number | undefined;
  state: 'pending' | 'posted' | 'done';
}

interface RemoteRegionInfo {
  address: bigint;
  rkey: number;
  bytes: number;
  revoked: boolean;
}

export class RdmaConnection extends EndpointBase implements Connection {
  private regionKeys = 1;
  private readonly localMrs = new Map<number, NativeMemoryRegion>();
  private readonly remoteRegions = new Map<number, RemoteRegionInfo>();
  // control QP
  private readonly ctrlQueue: Uint8Array[] = [];
  private readonly ctrlSlots = new SlotPool(CTRL_SEND_SLOTS);
  private readonly partial: Buffer[] = [];
  // data QP
  private ops: WriteOp[] = [];
  private readonly stagingSlots: SlotPool;
  /** Pieces whose bytes wait outside staging for a slot. */
  private unstagedPieces = 0;
  private readonly inflight = new Map<number, { piece: Piece; gen: number }>();
  private nextWrId = WR_DATA;
  private dataGen = 0;
  private dataState: 'ready' | 'recovering' = 'ready';
  private peerDataReady = true;
  private readonly retired: NativeQueuePair[] = [];

  constructor(
    private readonly fabric: RdmaFabric,
    private readonly socket: Socket,
    reader: FrameReader,
    private readonly res: QpResources,
    private readonly peerQps: WireQps,
    private readonly role: 'connector' | 'acceptor',
    localNodeId: string,
    peerNodeId: string,
  ) {
    super(localNodeId, peerNodeId);
    this.stagingSlots = new SlotPool(res.stagingMr.length / DATA_PIECE_BYTES);
    socket.on('error', (err) =>
      this.shutDown(new ConnectionClosedError(`${this.describe()}: ${err.message}`)),
    );
    socket.on('close', () =>
      this.shutDown(new ConnectionClosedError(`${this.describe()}: the connection broke`)),
    );
    reader.onFrame((type, payload) => this.receiveFrame(type, payload));
    res.sink.attach((batch) => this.onCompletions(batch));
  }

  protected nextRegionKey(): number {
    return this.regionKeys++;
  }

  /** Registers natively allocated memory (an MR) and announces it to the peer. */
  override registerRegion(bytes: number): LocalRegion {
    if (!Number.isInteger(bytes) || bytes <= 0)
      throw new FabricError('INVALID_REGION', `region size must be a positive integer, got ${bytes}`);
    this.ensureOpen();
    let mr: NativeMemoryRegion;
    try {
      mr = new this.res.hold.addon.MemoryRegion(this.res.hold.pd, bytes, true);
    } catch (err) {
      throw verbsError(err);
    }
    const regionKey = this.nextRegionKey();
    const region = new FabricRegion({ regionKey, bytes }, new Uint8Array(mr.buffer, 0, bytes));
    this.regions.set(regionKey, region);
    this.localMrs.set(regionKey, mr);
    const announce = Buffer.alloc(25);
    announce.writeUInt8(C_REGION, 0);
    announce.writeUInt32LE(regionKey, 1);
    announce.writeBigUInt64LE(mr.address, 5);
    announce.writeUInt32LE(mr.rkey!, 13);
    announce.writeBigUInt64LE(BigInt(bytes), 17);
    this.enqueueControl(announce);
    return region;
  }

  /** Fences in hardware (the MR is deregistered: its rkey dies) and tells the peer. */
  override revoke(region: LocalRegion): void {
    super.revoke(region);
    const mr = this.localMrs.get(region.handle.regionKey);
    if (mr === undefined || !mr.registered) return;
    mr.deregister();
    if (this.closed) return;
    const announce = Buffer.alloc(5);
    announce.writeUInt8(C_REVOKED, 0);
    announce.writeUInt32LE(region.handle.regionKey, 1);
    this.enqueueControl(announce);
  }

  write(remote: RemoteRegion, offset: number, bytes: Uint8Array): Promise<void> {
    const refused = this.checkWrite(remote, offset, bytes);
    if (refused !== undefined) return Promise.reject(refused);
    return new Promise<void>((resolve, reject) => {
      const op: WriteOp = {
        regionKey: remote.handle.regionKey,
        offset,
        length: bytes.length,
        pieces: [],
        remaining: 0,
        outstanding: 0,
        error: undefined,
        resolve,
        reject,
      };
      // Copied now: into staging when a slot is free and no earlier piece still waits for one
      // (slots are taken in issue order, so the pieces holding them can always be posted and
      // free them: no deadlock), else aside. The caller may reuse `bytes` at once.
      for (let delta = 0; delta < bytes.length || delta === 0; delta += DATA_PIECE_BYTES) {
        const length = Math.min(DATA_PIECE_BYTES, bytes.length - delta);
        const piece: Piece = { op, delta, length, source: undefined, slot: undefined, state: 'pending' };
        const slot = this.unstagedPieces === 0 ? this.stagingSlots.take() : undefined;
        if (slot !== undefined) this.stage(piece, slot, bytes.subarray(delta, delta + length));
        else {
          piece.source = bytes.slice(delta, delta + length);
          this.unstagedPieces += 1;
        }
        op.pieces.push(piece);
        if (bytes.length === 0) break;
      }
      op.remaining = op.pieces.length;
      this.ops.push(op);
      this.pumpData();
    });
  }

  send(message: Uint8Array): void {
    this.countSend(message);
    const room = CTRL_SLOT_BYTES - 1;
    let at = 0;
    do {
      const end = Math.min(message.length, at + room);
      const fragment = Buffer.allocUnsafe(1 + end - at);
      fragment.writeUInt8(end === message.length ? C_LAST : C_MORE, 0);
      fragment.set(message.subarray(at, end), 1);
      this.ctrlQueue.push(fragment);
      at = end;
    } while (at < message.length);
    this.pumpControl();
  }

  close(): void {
    if (this.closed) return;
    try {
      this.socket.write(frame(CLOSE, Buffer.alloc(0)));
    } catch {}
    this.shutDown(new ConnectionClosedError(`closed by ${this.localNodeId}`));
    this.socket.end();
  }

  /** For tests: the data QP's generation (it goes up each time the QP is rebuilt). */
  dataQpGeneration(): number {
    return this.dataGen;
  }

  // ───────────────────────────── control QP ─────────────────────────────

  private enqueueControl(bytes: Uint8Array): void {
    this.ctrlQueue.push(bytes);
    this.pumpControl();
  }

  private pumpControl(): void {
    if (this.closed || this.ctrlQueue.length === 0) return;
    const batch: LocalRequest[] = [];
    const staging = new Uint8Array(this.res.ctrlSendMr.buffer);
    while (this.ctrlQueue.length > 0) {
      const slot = this.ctrlSlots.take();
      if (slot === undefined) break;
      const bytes = this.ctrlQueue.shift()!;
      staging.set(bytes, slot * CTRL_SLOT_BYTES);
      batch.push({
        wrId: WR_CTRL_SEND + slot,
        mr: this.res.ctrlSendMr,
        offset: slot * CTRL_SLOT_BYTES,
        length: bytes.length,
      });
    }
    if (batch.length === 0) return;
    try {
      this.res.ctrl.postSends(batch);
    } catch (err) {
      this.shutDown(new ConnectionClosedError(`${this.describe()}: ${verbsError(err).message}`));
    }
  }

  private onControlReceive(slot: number, byteLength: number, reposts: LocalRequest[]): void {
    const at = slot * CTRL_SLOT_BYTES;
    const bytes = Buffer.from(new Uint8Array(this.res.ctrlRecvMr.buffer, at, byteLength)); // a copy
    reposts.push(this.res.recvRequest(slot));
    const kind = bytes.readUInt8(0);
    switch (kind) {
      case C_MORE:
        this.partial.push(bytes.subarray(1));
        return;
      case C_LAST: {
        const last = bytes.subarray(1);
        const message = this.partial.length === 0 ? last : Buffer.concat([...this.partial.splice(0), last]);
        this.deliverMessage(new Uint8Array(message.buffer, message.byteOffset, message.length));
        return;
      }
      case C_REGION:
        this.remoteRegions.set(bytes.readUInt32LE(1), {
          address: bytes.readBigUInt64LE(5),
          rkey: bytes.readUInt32LE(13),
          bytes: Number(bytes.readBigUInt64LE(17)),
          revoked: false,
        });
        return;
      case C_REVOKED: {
        const info = this.remoteRegions.get(bytes.readUInt32LE(1));
        if (info !== undefined) info.revoked = true;
        return;
      }
      default:
        this.shutDown(new ConnectionClosedError(`${this.describe()}: unknown control message ${kind}`));
    }
  }

  // ───────────────────────────── completions ─────────────────────────────

  private onCompletions(batch: NativeCompletion[]): void {
    if (this.closed) return;
    const reposts: LocalRequest[] = [];
    for (const c of batch) {
      if (this.closed) return;
      if (c.wrId >= WR_DATA) this.onDataCompletion(c);
      else if (c.wrId >= WR_CTRL_SEND) {
        if (c.status !== 'IBV_WC_SUCCESS') {
          this.controlFailed(c);
          return;
        }
        this.ctrlSlots.give(c.wrId - WR_CTRL_SEND);
      } else {
        if (c.status !== 'IBV_WC_SUCCESS') {
          this.controlFailed(c);
          return;
        }
        this.onControlReceive(c.wrId - 1, c.byteLength, reposts);
      }
    }
    if (this.closed) return;
    if (reposts.length > 0) {
      try {
        this.res.ctrl.postRecvs(reposts);
      } catch (err) {
        this.shutDown(new ConnectionClosedError(`${this.describe()}: ${verbsError(err).message}`));
        return;
      }
    }
    while (this.ops.length > 0 && this.finished(this.ops[0]!)) this.ops.shift();
    this.maybeResume();
    this.pumpControl();
    this.pumpData();
  }

  private controlFailed(c: NativeCompletion): void {
    this.shutDown(new ConnectionClosedError(`${this.describe()}: control queue pair failed (${c.status})`));
  }

  private onDataCompletion(c: NativeCompletion): void {
    const record = this.inflight.get(c.wrId);
    if (record === undefined) return;
    this.inflight.delete(c.wrId);
    const { piece, gen } = record;
    const op = piece.op;
    op.outstanding -= 1;
    if (c.status === 'IBV_WC_SUCCESS') {
      piece.state = 'done';
      this.release(piece);
      op.remaining -= 1;
      if (op.remaining === 0 && op.error === undefined) op.resolve();
    } else if (c.status === 'IBV_WC_WR_FLUSH_ERR') {
      // Not executed: posted again, in order, once the data QP is rebuilt (unless its write failed).
      if (op.error === undefined) piece.state = 'pending';
      else {
        piece.state = 'done';
        this.release(piece);
      }
      this.dataBroken(gen);
    } else if (c.status === 'IBV_WC_REM_ACCESS_ERR' || c.status === 'IBV_WC_REM_INV_REQ_ERR') {
      piece.state = 'done';
      this.release(piece);
      const info = this.remoteRegions.get(op.regionKey);
      if (c.status === 'IBV_WC_REM_ACCESS_ERR') {
        if (info !== undefined) info.revoked = true;
        this.fail(op, new RegionRevokedError(op.regionKey));
      } else {
        this.fail(op, new WriteOutOfBoundsError(op.offset, op.length, info?.bytes ?? 0));
      }
      this.dataBroken(gen);
    } else {
      this.shutDown(new ConnectionClosedError(`${this.describe()}: RDMA write failed (${c.status})`));
    }
  }

  private finished(op: WriteOp): boolean {
    return op.outstanding === 0 && (op.error !== undefined || op.remaining === 0);
  }

  private fail(op: WriteOp, err: Error): void {
    if (op.error !== undefined) return;
    op.error = err;
    op.reject(err);
    for (const piece of op.pieces) {
      if (piece.state === 'pending') {
        piece.state = 'done';
        this.release(piece);
      }
    }
  }

  private stage(piece: Piece, slot: number, bytes: Uint8Array): void {
    new Uint8Array(this.res.stagingMr.buffer, slot * DATA_PIECE_BYTES, bytes.length).set(bytes);
    piece.slot = slot;
    this.dropSource(piece);
  }

  private release(piece: Piece): void {
    if (piece.slot !== undefined) this.stagingSlots.give(piece.slot);
    piece.slot = undefined;
    this.dropSource(piece);
  }

  private dropSource(piece: Piece): void {
    if (piece.source !== undefined) this.unstagedPieces -= 1;
    piece.source = undefined;
  }

  /** Posts what can go, in issue order: a write waits for its region's announcement. */
  private pumpData(): void {
    if (this.closed || this.dataState !== 'ready') return;
    const batch: WriteRequest[] = [];
    outer: for (const op of this.ops) {
      if (op.error !== undefined || op.remaining === 0) continue;
      const info = this.remoteRegions.get(op.regionKey);
      if (info === undefined) break; // not announced yet: later writes wait too (issue order)
      if (info.revoked) {
        this.fail(op, new RegionRevokedError(op.regionKey));
        continue;
      }
      if (op.offset + op.length > info.bytes) {
        this.fail(op, new WriteOutOfBoundsError(op.offset, op.length, info.bytes));
        continue;
      }
      for (const piece of op.pieces) {
        if (piece.state !== 'pending') continue;
        if (this.inflight.size >= DATA_SEND_WR) break outer;
        if (piece.slot === undefined) {
          const slot = this.stagingSlots.take();
          if (slot === undefined) break outer;
          this.stage(piece, slot, piece.source!);
        }
        const wrId = this.nextWrId++;
        piece.state = 'posted';
        op.outstanding += 1;
        this.inflight.set(wrId, { piece, gen: this.dataGen });
        batch.push({
          wrId,
          mr: this.res.stagingMr,
          offset: piece.slot! * DATA_PIECE_BYTES,
          length: piece.length,
          remoteAddress: info.address + BigInt(op.offset + piece.delta),
          rkey: info.rkey,
        });
      }
    }
    if (batch.length === 0) return;
    try {
      this.res.data.postWrites(batch);
    } catch (err) {
      this.shutDown(new ConnectionClosedError(`${this.describe()}: ${verbsError(err).message}`));
    }
  }

  // ───────────────────────────── data QP rebuild ─────────────────────────────

  /** The data QP of generation `gen` is in error: rebuild it (connector) or ask for that (acceptor). */
  private dataBroken(gen: number): void {
    if (this.closed || gen !== this.dataGen || this.dataState !== 'ready') return;
    if (this.role === 'connector') this.startDataReset();
    else {
      this.dataState = 'recovering';
      this.peerDataReady = false;
      this.sideFrame(DATA_RESET_REQ, { gen });
    }
  }

  private retireDataQp(): void {
    const old = this.res.data;
    try {
      old.setError(); // everything still posted comes back as IBV_WC_WR_FLUSH_ERR
    } catch {}
    this.retired.push(old);
    this.res.data = this.res.newDataQp();
  }

  private startDataReset(): void {
    this.dataState = 'recovering';
    this.peerDataReady = false;
    try {
      this.retireDataQp();
    } catch (err) {
      this.shutDown(new ConnectionClosedError(`${this.describe()}: ${verbsError(err).message}`));
      return;
    }
    this.dataGen += 1;
    this.sideFrame(DATA_QP, { gen: this.dataGen, qp: [this.res.data.qpNum, this.res.dataPsn] });
  }

  private onDataQp(gen: number, qp: [number, number]): void {
    if (gen <= this.dataGen) return;
    this.dataState = 'recovering';
    this.peerDataReady = false;
    try {
      this.retireDataQp();
      this.dataGen = gen;
      this.res.connectQp(this.res.data, this.res.dataPsn, this.peerQps, qp);
    } catch (err) {
      this.shutDown(new ConnectionClosedError(`${this.describe()}: ${(err as Error).message}`));
      return;
    }
    this.sideFrame(DATA_QP_ACK, { gen, qp: [this.res.data.qpNum, this.res.dataPsn] });
  }

  private onDataQpAck(gen: number, qp: [number, number]): void {
    if (gen !== this.dataGen || this.dataState !== 'recovering') return;
    try {
      this.res.connectQp(this.res.data, this.res.dataPsn, this.peerQps, qp);
    } catch (err) {
      this.shutDown(new ConnectionClosedError(`${this.describe()}: ${(err as Error).message}`));
      return;
    }
    this.sideFrame(DATA_READY, { gen });
    this.peerDataReady = true;
    this.maybeResume();
  }

  /** Back to posting once the peer's new QP is ready and every old piece has come back. */
  private maybeResume(): void {
    if (this.closed || this.dataState !== 'recovering' || !this.peerDataReady) return;
    for (const record of this.inflight.values()) if (record.gen !== this.dataGen) return;
    this.dataState = 'ready';
    for (const qp of this.retired.splice(0)) qp.close();
    this.pumpData();
  }

  // ───────────────────────────── side channel ─────────────────────────────

  private sideFrame(type: number, body: unknown): void {
    if (this.closed) return;
    this.socket.write(frame(type, Buffer.from(JSON.stringify(body))));
  }

  private receiveFrame(type: number, payload: Buffer): void {
    if (this.closed) return;
    const body = (): { gen: number; qp: [number, number] } => JSON.parse(payload.toString('utf8'));
    switch (type) {
      case CLOSE:
        this.shutDown(new ConnectionClosedError(`closed by peer ${this.peerNodeId}`));
        this.socket.end();
        return;
      case DATA_RESET_REQ: {
        const { gen } = body();
        if (this.role === 'connector' && gen === this.dataGen && this.dataState === 'ready')
          this.startDataReset();
        return;
      }
      case DATA_QP: {
        const { gen, qp } = body();
        if (this.role === 'acceptor') this.onDataQp(gen, qp);
        return;
      }
      case DATA_QP_ACK: {
        const { gen, qp } = body();
        if (this.role === 'connector') this.onDataQpAck(gen, qp);
        return;
      }
      case DATA_READY: {
        const { gen } = body();
        if (this.role === 'acceptor' && gen === this.dataGen) {
          this.peerDataReady = true;
          this.maybeResume();
        }
        return;
      }
      default:
        this.shutDown(new ConnectionClosedError(`${this.describe()}: unknown frame type ${type}`));
        this.socket.destroy();
    }
  }

  private shutDown(reason: Error): void {
    if (!this.markClosed(reason)) return;
    this.fabric.forget(this);
    for (const op of this.ops) if (op.error === undefined && op.remaining > 0) op.reject(reason);
    this.ops = [];
    this.inflight.clear();
    this.ctrlQueue.length = 0;
    for (const qp of this.retired.splice(0)) qp.close();
    this.res.close();
    for (const mr of this.localMrs.values()) mr.close();
    this.localMrs.clear();
  }
}

/** `rdma://host:port` (the listener's side channel) → host and port, or FabricError BAD_ADDRESS. */
export function parseRdmaAddress(address: string): { host: string; port: number } {
  const match = /^rdma:\/\/([^:/]+):(\d+)$/.exec(address);
  if (match === null)
    throw new FabricError('BAD_ADDRESS', `not an rdma address (rdma://host:port): ${address}`);
  return { host: match[1]!, port: Number(match[2]) };
}
