/**
 * MemoryFabric: the Fabric port (types.ts) inside one process, with RDMA's reliable-connection
 * semantics. First-class: the in-process cluster, the simulator and tests run on it, and it passes
 * the same conformance suite (test/fabric/conformance.ts) as the tcp and rdma fabrics.
 *
 * Model. A connection is a pair of endpoints. Each direction has one FIFO of operations — one-sided
 * writes and control messages — that a pump delivers in order: a write copies its bytes into the
 * peer's registered region and then resolves the writer's promise (the completion); a message is
 * handed to the peer's handler. Because both kinds share one FIFO, a message sent after a write
 * resolved is delivered after that write's bytes are in place (RC ordering), and writes on one
 * connection land in issue order. A write's bytes are copied when it is issued, as a NIC would
 * have them once posted, so the caller may reuse its buffer at once — unless they are
 * `TransferredBytes` (transfer.ts): memory the caller gave up and nobody may change, which the
 * lane keeps by reference until delivery, so the bytes are copied once (into the peer's region)
 * instead of twice. (Copies of plain payloads from 64 KiB up go into recycled memory,
 * copy-pool.ts: a fresh array per write costs more than the copy.) What the caller may do after
 * posting is the transfer's contract: with a plain Uint8Array anything; after
 * `transferBytes(view)` anything with `view` (it is empty or untouched, and no longer the
 * payload) and nothing with the TransferredBytes but read it and post it again.
 *
 * Scheduling. Each direction's pump runs through `scheduler` (default: a microtask), one operation
 * per call, so a simulator can interleave deliveries of different connections in any order it
 * chooses while the order within a direction is preserved.
 *
 * Faults (for tests and the simulator), all reversible unless they break a connection:
 * - `partition(nodeId, on)`: the node cannot be reached and reaches no one. Its open connections
 *   break (as an RC queue pair's retries run out) with UnreachableError; new connects to or from it
 *   fail until `heal()` or `partition(nodeId, false)`.
 * - `dropTraffic(connection, on)`: operations in both directions are held back, never delivered
 *   while on (writes stay pending); turning it off releases them in order.
 * - `delayTraffic(connection, ms)`: each operation waits `ms` on the injected clock before delivery.
 * - `failWrites(connection, on)`: the next write on the connection fails and breaks it, as a remote
 *   access or transport error moves a queue pair to the error state.
 * - `breakConnection(connection, reason?)`: both sides see the connection break.
 * - `hold(nodeId, on)`: the node's thread is stalled (the simulator's stall fault). Its NIC still
 *   works — one-sided writes into its regions land, its own posted operations go out — but what
 *   needs its CPU waits: messages to it, completions of its writes and new connections to it are
 *   queued in arrival order and handed over when the hold ends, late, never dropped (a message to
 *   an endpoint closed meanwhile is dropped, as a broken queue pair flushes its receive queue).
 * - `watchConnections(watcher)`: sees every new connection first, so any of the above can apply
 *   from its first byte.
 * Revocation is not a fault: `Connection.revoke` fences a region; later writes into it reject with
 * RegionRevokedError and the connection stays usable.
 */
import { assert } from '../assert.js';
import type { Clock } from '../clock/index.js';
import { ConnectionClosedError, FabricError, HandshakeRefusedError, UnreachableError } from '../errors.js';
import { NO_PROBE, type Probe } from '../probe.js';
import { CopyPool } from './copy-pool.js';
import { completion, EndpointBase } from './endpoint.js';
import { TransferredBytes } from './transfer.js';
import type { Connection, Fabric, Handshake, Listener, ListenOptions, RemoteRegion } from './types.js';

export interface MemoryFabricOptions {
  /** Runs one pump step later; a simulator injects its own. Default: queueMicrotask. */
  scheduler?: (step: () => void) => void;
  /** Clock for `delayTraffic`. Required only when delays are used. */
  clock?: Clock;
  /** Traces every placed write (`placed`); the simulator's. Default none (src/probe.ts). */
  probe?: Probe;
}

interface ListenerEntry {
  address: string;
  options: ListenOptions;
  onConnection: (connection: Connection) => void;
  closed: boolean;
}

type Operation =
  | {
      kind: 'write';
      regionKey: number;
      offset: number;
      bytes: Uint8Array;
      /** `bytes` is the fabric's own copy (copy-pool.ts), to recycle once placed. */
      copied: boolean;
      resolve: () => void;
      reject: (error: Error) => void;
    }
  | { kind: 'message'; bytes: Uint8Array };

/** One direction of a connection: the operations `from` issued, to be delivered at `to`. */
class Lane {
  readonly queue: Operation[] = [];
  pumping = false;
  constructor(
    readonly from: MemoryEndpoint,
    readonly to: MemoryEndpoint,
  ) {}
}

interface PairState {
  dropped: boolean;
  delayMs: number;
  failWrites: boolean;
}

export class MemoryEndpoint extends EndpointBase implements Connection {
  peer!: MemoryEndpoint;
  outbound!: Lane;

  constructor(
    readonly fabric: MemoryFabric,
    localNodeId: string,
    peerNodeId: string,
    readonly pair: PairState,
  ) {
    super(localNodeId, peerNodeId);
  }

  protected nextRegionKey(): number {
    return this.fabric.nextRegionKey();
  }

  write(remote: RemoteRegion, offset: number, bytes: Uint8Array): Promise<void> {
    const refused = this.checkWrite(remote, offset, bytes);
    if (refused !== undefined) return Promise.reject(refused);
    const { promise, resolve, reject } = completion();
    const transferred = bytes instanceof TransferredBytes;
    this.enqueue({
      kind: 'write',
      regionKey: remote.handle.regionKey,
      offset,
      // Transferred bytes are immutable by contract (transfer.ts): kept, not copied. Anything
      // else is copied now (Buffer#slice would be a view), so the caller may reuse it at once.
      bytes: transferred ? bytes : this.fabric.copies.copy(bytes),
      copied: !transferred,
      resolve,
      reject,
    });
    return promise;
  }

  send(message: Uint8Array): void {
    this.countSend(message);
    this.enqueue({ kind: 'message', bytes: new Uint8Array(message) });
  }

  close(): void {
    this.fabric.breakPair(
      this,
      new ConnectionClosedError(`closed by ${this.localNodeId}`),
      new ConnectionClosedError(`closed by peer ${this.localNodeId}`),
    );
  }

  // ---- internals (used by MemoryFabric and the lanes) ----

  /** Delivers one operation that arrived from the peer (what needs a held node's CPU waits). */
  deliver(op: Operation): void {
    if (op.kind === 'message') {
      const bytes = op.bytes;
      const handOver = (): void => {
        if (!this.closed) this.deliverMessage(bytes);
      };
      if (!this.fabric.deferFor(this.localNodeId, handOver)) this.deliverMessage(bytes);
      return;
    }
    const refused = this.place(op.regionKey, op.offset, op.bytes);
    if (op.copied) this.fabric.copies.recycle(op.bytes); // nothing reads it any more
    if (refused === undefined)
      this.fabric.probe.trace?.({ kind: 'placed', node: this.localNodeId, regionKey: op.regionKey });
    const complete = refused === undefined ? () => op.resolve() : () => op.reject(refused);
    // The completion is the writer's (the peer's) to see.
    if (!this.fabric.deferFor(this.peerNodeId, complete)) complete();
  }

  /** Marks this endpoint broken: pending outbound writes fail, close handlers run once. */
  shutDown(reason: Error): void {
    if (!this.markClosed(reason)) return;
    for (const op of this.outbound.queue.splice(0)) {
      if (op.kind === 'write') op.reject(reason);
    }
  }

  private enqueue(op: Operation): void {
    this.outbound.queue.push(op);
    this.fabric.kick(this.outbound);
  }
}

export interface MemoryFabricStats {
  connections: number;
  bytesWritten: number;
  bytesSent: number;
}

export class MemoryFabric implements Fabric {
  readonly kind = 'memory' as const;
  private readonly listeners = new Map<string, ListenerEntry>();
  private readonly endpoints = new Set<MemoryEndpoint>();
  private readonly connectionWatchers = new Set<(connection: Connection) => void>();
  private readonly partitioned = new Set<string>();
  /** Held (stalled) nodes → where what waits for their CPU goes, in arrival order. */
  private readonly heldNodes = new Map<string, { queue: (() => void)[]; sink: (run: () => void) => void }>();
  private readonly scheduler: (step: () => void) => void;
  private readonly clock: Clock | undefined;
  readonly probe: Probe;
  /** Recycled memory for the copies plain payloads get at issue. */
  readonly copies = new CopyPool();
  private regionKeySeq = 0;
  private closed = false;
  /** Bytes of closed connections, so totals survive reconnects. */
  private retired = { bytesWritten: 0, bytesSent: 0 };

  constructor(options: MemoryFabricOptions = {}) {
    this.scheduler = options.scheduler ?? queueMicrotask;
    this.clock = options.clock;
    this.probe = options.probe ?? NO_PROBE;
  }

  async listen(
    address: string,
    options: ListenOptions,
    onConnection: (connection: Connection) => void,
  ): Promise<Listener> {
    if (this.closed) throw new FabricError('FABRIC_CLOSED', 'fabric is closed');
    const existing = this.listeners.get(address);
    if (existing !== undefined && !existing.closed) {
      throw new FabricError('ADDRESS_IN_USE', `address ${address} already has a listener`);
    }
    const entry: ListenerEntry = { address, options, onConnection, closed: false };
    this.listeners.set(address, entry);
    return {
      address,
      close: () => {
        entry.closed = true;
        if (this.listeners.get(address) === entry) this.listeners.delete(address);
      },
    };
  }

  async connect(address: string, handshake: Handshake): Promise<Connection> {
    if (this.closed) throw new FabricError('FABRIC_CLOSED', 'fabric is closed');
    const entry = this.listeners.get(address);
    if (entry === undefined || entry.closed) throw new UnreachableError(address);
    if (this.partitioned.has(handshake.nodeId) || this.partitioned.has(entry.options.nodeId)) {
      throw new UnreachableError(address);
    }
    const verdict = entry.options.accept ? entry.options.accept(handshake) : true;
    if (verdict !== true) throw new HandshakeRefusedError(verdict);
    const pair: PairState = { dropped: false, delayMs: 0, failWrites: false };
    const client = new MemoryEndpoint(this, handshake.nodeId, entry.options.nodeId, pair);
    const server = new MemoryEndpoint(this, entry.options.nodeId, handshake.nodeId, pair);
    client.peer = server;
    server.peer = client;
    client.outbound = new Lane(client, server);
    server.outbound = new Lane(server, client);
    this.endpoints.add(client);
    this.endpoints.add(server);
    for (const watcher of this.connectionWatchers) watcher(client);
    if (!this.deferFor(entry.options.nodeId, () => entry.onConnection(server))) entry.onConnection(server);
    return client;
  }

  /**
   * Fault injection: `watcher` sees every new connection (its connecting side) before a byte
   * crosses it, so a test or the simulator can hold, delay or fail it from the start. Returns a
   * function that stops watching.
   */
  watchConnections(watcher: (connection: Connection) => void): () => void {
    this.connectionWatchers.add(watcher);
    return () => this.connectionWatchers.delete(watcher);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const entry of this.listeners.values()) entry.closed = true;
    this.listeners.clear();
    for (const endpoint of [...this.endpoints]) {
      this.breakPair(
        endpoint,
        new ConnectionClosedError('fabric closed'),
        new ConnectionClosedError('fabric closed'),
      );
    }
  }

  /** Totals over every connection this fabric carried (both directions). */
  stats(): MemoryFabricStats {
    let bytesWritten = this.retired.bytesWritten;
    let bytesSent = this.retired.bytesSent;
    for (const endpoint of this.endpoints) {
      const s = endpoint.stats();
      bytesWritten += s.bytesWritten;
      bytesSent += s.bytesSent;
    }
    return { connections: this.endpoints.size / 2, bytesWritten, bytesSent };
  }

  // ---- faults ----

  partition(nodeId: string, on = true): void {
    if (!on) {
      this.partitioned.delete(nodeId);
      return;
    }
    this.partitioned.add(nodeId);
    for (const endpoint of [...this.endpoints]) {
      if (endpoint.localNodeId === nodeId) {
        const error = new UnreachableError(endpoint.peerNodeId);
        this.breakPair(endpoint, error, new UnreachableError(nodeId));
      }
    }
  }

  heal(): void {
    this.partitioned.clear();
    for (const endpoint of this.endpoints) {
      endpoint.pair.dropped = false;
      endpoint.pair.delayMs = 0;
      endpoint.pair.failWrites = false;
      this.kick(endpoint.outbound);
    }
  }

  /**
   * A stalled node (see the header): on holds what needs its CPU, off hands it over in order. With
   * `sink`, each held delivery goes to it instead (the node's stall queue, shared with its other
   * inputs, run by the caller in arrival order) and off has nothing left to hand over.
   */
  hold(nodeId: string, on = true, sink?: (run: () => void) => void): void {
    if (on) {
      if (!this.heldNodes.has(nodeId)) {
        const queue: (() => void)[] = [];
        this.heldNodes.set(nodeId, { queue, sink: sink ?? ((run) => queue.push(run)) });
      }
      return;
    }
    const held = this.heldNodes.get(nodeId);
    this.heldNodes.delete(nodeId);
    for (const run of held?.queue ?? []) run();
  }

  /** Hands `run` to `nodeId`'s hold if it is held; false (run it now) otherwise. */
  deferFor(nodeId: string, run: () => void): boolean {
    const held = this.heldNodes.get(nodeId);
    if (held === undefined) return false;
    held.sink(run);
    return true;
  }

  dropTraffic(connection: Connection, on = true): void {
    const endpoint = this.own(connection);
    endpoint.pair.dropped = on;
    if (!on) {
      this.kick(endpoint.outbound);
      this.kick(endpoint.peer.outbound);
    }
  }

  delayTraffic(connection: Connection, delayMs: number): void {
    assert(delayMs >= 0, 'delayTraffic: delay must be ≥ 0');
    if (delayMs > 0 && this.clock === undefined) {
      throw new FabricError('NO_CLOCK', 'delayTraffic needs a clock: new MemoryFabric({ clock })');
    }
    this.own(connection).pair.delayMs = delayMs;
  }

  failWrites(connection: Connection, on = true): void {
    this.own(connection).pair.failWrites = on;
  }

  breakConnection(connection: Connection, reason = 'connection broken (fault injected)'): void {
    const endpoint = this.own(connection);
    this.breakPair(endpoint, new ConnectionClosedError(reason), new ConnectionClosedError(reason));
  }

  // ---- internals ----

  nextRegionKey(): number {
    this.regionKeySeq += 1;
    return this.regionKeySeq;
  }

  /** Closes both endpoints of `endpoint`'s connection; `mine` goes to it, `theirs` to the peer. */
  breakPair(endpoint: MemoryEndpoint, mine: Error, theirs: Error): void {
    const peer = endpoint.peer;
    if (endpoint.closed && peer.closed) return;
    for (const side of [endpoint, peer]) {
      if (this.endpoints.delete(side)) {
        const s = side.stats();
        this.retired.bytesWritten += s.bytesWritten;
        this.retired.bytesSent += s.bytesSent;
      }
    }
    endpoint.shutDown(mine);
    peer.shutDown(theirs);
  }

  /** Schedules the lane's pump unless it is already scheduled or held back. */
  kick(lane: Lane): void {
    if (lane.pumping || lane.queue.length === 0 || lane.from.closed) return;
    const pair = lane.from.pair;
    if (pair.dropped) return;
    lane.pumping = true;
    if (pair.delayMs > 0 && this.clock !== undefined) {
      this.clock.setTimeout(() => this.scheduler(() => this.step(lane)), pair.delayMs);
    } else {
      this.scheduler(() => this.step(lane));
    }
  }

  /** Delivers the lane's next operation, then schedules the one after it. */
  private step(lane: Lane): void {
    lane.pumping = false;
    if (lane.from.closed || lane.from.pair.dropped) return;
    const op = lane.queue.shift();
    if (op === undefined) return;
    if (op.kind === 'write' && lane.from.pair.failWrites) {
      lane.from.pair.failWrites = false;
      const error = new FabricError(
        'WRITE_FAILED',
        `one-sided write ${lane.from.localNodeId}→${lane.to.localNodeId} failed (fault injected)`,
      );
      op.reject(error);
      this.breakPair(
        lane.from,
        error,
        new ConnectionClosedError(`peer ${lane.from.localNodeId}'s queue pair entered the error state`),
      );
      return;
    }
    lane.to.deliver(op);
    this.kick(lane);
  }

  private own(connection: Connection): MemoryEndpoint {
    if (!(connection instanceof MemoryEndpoint) || connection.fabric !== this) {
      throw new FabricError('FOREIGN_CONNECTION', 'connection does not belong to this fabric');
    }
    return connection;
  }
}
