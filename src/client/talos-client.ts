/**
 * TalosClient: the in-process client's API (put/get/delete/scan, routed by region) for a cluster
 * of node processes. It keeps the region map and the members' client addresses from etcd through
 * watches (so the map it routes by is refreshed as the controller moves regions), and talks to each
 * primary over the client protocol (src/server/client-protocol.ts), one pooled connection per node.
 *
 * Retries (the LocalClient's loop, bounded by `operationTimeoutMs` with exponential backoff):
 * WRONG_PRIMARY / STALE_EPOCH from a node, or a node that cannot be reached before the request was
 * sent; when the budget is spent, OperationTimeoutError (definite: no attempt was applied). A
 * request's wait for its reply is bounded by `requestTimeoutMs` and by what is left of the
 * operation's budget. A write whose connection broke or timed out after it was sent may have been
 * applied: it is reported as OutcomeUnknownError, never retried blindly and never reported as failed.
 *
 * Batching and the in-flight window (client-protocol.ts): the operations issued in one tick to
 * one node leave in one frame, and the node's replies come back batched; a connection carries at
 * most `maxInFlight` operations that were handed to it and not yet answered (default 1024 per
 * node). An operation beyond the window waits in the connection's queue, unsent, until a reply
 * frees room; `inFlight` counts the operations in the windows now. The error contract holds per
 * operation inside a batch: an operation still queued or in a frame the kernel did not take when
 * the connection broke never left (UnreachableError: retried); one in a frame the kernel took is
 * sent, so a write there ends acknowledged, refused by its own error, or OutcomeUnknownError.
 * One timer per connection (armed for the earliest deadline) bounds every operation's wait.
 *
 * Keys are strings (sent as their UTF-8) or Uint8Arrays (sent as their bytes, UTF-8 or not),
 * routed by region in byte order (src/keys.ts); values likewise. Keys and values come back as
 * Buffers (copies: they do not hold the connection's receive buffers).
 *
 * Security: with `tls` every connection to a node is TLS (the node's certificate verified against
 * `tls.ca` and the address dialed; `tls.cert`/`tls.key` for mutual TLS), and with `token` the
 * client authenticates with a bearer token. Every connection sends AUTH and waits for its answer
 * before any request (client-protocol.ts): a node that refuses the credentials, or a node whose
 * certificate does not verify, is UnauthenticatedError at once — not retried, and no key or value
 * was sent. `etcd` over https uses `tls` too unless `etcdOptions.credentials` says otherwise.
 */
import { createConnection, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { EtcdCoordinator, type EtcdCoordinatorOptions } from '../../coordination/etcd.js';
import type { NodeInfo, RegionConfig, Unsubscribe } from '../../coordination/types.js';
import { assert } from '../assert.js';
import { SystemClock } from '../clock/index.js';
import {
  type ClientScanOptions,
  LocalClient,
  type LocalClientOptions,
  type RegionSession,
} from '../cluster/client.js';
import type {
  AsyncCursor,
  ClusterCursorOptions,
  ClusterSnapshot,
  RegionCursorOptions,
} from '../cluster/cluster-cursor.js';
import { byMinKey } from '../cluster/regions.js';
import type { BatchOperation, KeyValue, ScanOptions } from '../engine/store.js';
import {
  InvalidArgumentError,
  OutcomeUnknownError,
  StaleEpochError,
  TalosError,
  UnauthenticatedError,
  UnknownRegionError,
  UnreachableError,
  WrongPrimaryError,
} from '../errors.js';
import { parseTcpAddress } from '../fabric/tcp.js';
import { type TlsCredentials, tlsClientOptions, tlsRefusal } from '../fabric/tls.js';
import { describeKeyLike, type KeyLike, keyBytesOf } from '../keys.js';
import {
  type ClientReply,
  type ClientRequest,
  CONNECTION_ID,
  decodeFrame,
  encodeAuth,
  FrameBatcher,
  FrameSplitter,
  ProtocolError,
  sentAfter,
} from '../server/client-protocol.js';
import { RemoteCursor, RemoteSnapshot } from './remote-cursor.js';

/** TLS for the client: the CA that signed the nodes' certificates; `cert`/`key` for mutual TLS. */
export type TalosClientTlsOptions = TlsCredentials;

export interface TalosClientOptions extends LocalClientOptions {
  /** etcd endpoints of the cluster's coordinator. */
  etcd: string[];
  cluster?: string;
  /** Passed to the etcd client (auth, TLS, call deadline). */
  etcdOptions?: Omit<EtcdCoordinatorOptions, 'endpoints' | 'cluster'>;
  /** One request's deadline on the wire (default 5000 ms; never more than the operation has left). */
  requestTimeoutMs?: number;
  /** Talk TLS to the nodes (and to etcd over https, unless `etcdOptions.credentials` is given). */
  tls?: TalosClientTlsOptions;
  /** Bearer token for nodes started with `--client-token-file`. */
  token?: string;
  /**
   * Operations one node connection carries at once, sent and not yet answered (default 1024).
   * Operations beyond it wait, unsent, until a reply frees room.
   */
  maxInFlight?: number;
}

export class TalosClient {
  private readonly coordinator: EtcdCoordinator;
  private map: RegionConfig[] = [];
  private readonly members = new Map<string, NodeInfo>();
  private readonly connections = new Map<string, NodeConnection>();
  /** Connections being opened, so concurrent operations share one per node. */
  private readonly opening = new Map<string, Promise<NodeConnection>>();
  private readonly clock = new SystemClock();
  private readonly unwatch: Unsubscribe[] = [];
  private readonly client: LocalClient;
  private readonly window: number;
  private closed = false;

  private constructor(private readonly options: TalosClientOptions) {
    this.window = options.maxInFlight ?? 1024;
    if (!(Number.isInteger(this.window) && this.window >= 1)) {
      throw new InvalidArgumentError(`maxInFlight must be a positive integer, got ${options.maxInFlight}`);
    }
    const tls = options.tls;
    const etcdTls =
      tls !== undefined &&
      options.etcdOptions?.credentials === undefined &&
      options.etcd.some((e) => e.startsWith('https:'))
        ? {
            credentials: {
              rootCertificate: Buffer.from(tls.ca),
              ...(tls.key === undefined ? {} : { privateKey: Buffer.from(tls.key) }),
              ...(tls.cert === undefined ? {} : { certChain: Buffer.from(tls.cert) }),
            },
          }
        : {};
    this.coordinator = new EtcdCoordinator({
      ...options.etcdOptions,
      ...etcdTls,
      endpoints: options.etcd,
      ...(options.cluster === undefined ? {} : { cluster: options.cluster }),
    });
    this.client = new LocalClient(
      {
        regions: () => this.map,
        session: (nodeId, regionId) => new RemoteSession(this, nodeId, regionId),
        clock: this.clock,
      },
      options,
    );
  }

  /** Connects to etcd and waits until the region map covers every key (or `operationTimeoutMs`). */
  static async connect(options: TalosClientOptions): Promise<TalosClient> {
    const client = new TalosClient(options);
    await client.start();
    return client;
  }

  put(key: KeyLike, value: Uint8Array | string): Promise<void> {
    return this.client.put(key, value);
  }

  delete(key: KeyLike): Promise<void> {
    return this.client.delete(key);
  }

  get(key: KeyLike): Promise<Buffer | undefined> {
    return this.client.get(key);
  }

  /** Whether `key` holds a value. */
  has(key: KeyLike): Promise<boolean> {
    return this.client.has(key);
  }

  /** Values of `keys` in order (undefined where absent), read one by one: no common snapshot. */
  getMany(keys: readonly KeyLike[]): Promise<(Buffer | undefined)[]> {
    return this.client.getMany(keys);
  }

  /** An atomic batch within one region; a batch over several is CrossRegionBatchError (client.ts). */
  batch(operations: readonly BatchOperation[]): Promise<void> {
    return this.client.batch(operations);
  }

  /** Deletes every key in [gte, lt), region by region, in atomic batches (the whole is not atomic). */
  clear(options: Omit<ClientScanOptions, 'limit' | 'reverse'> = {}): Promise<void> {
    return this.client.clear(options);
  }

  /** `clear` with byte bounds, reverse, limit and a snapshot (a cursor's options). */
  clearRange(options: Omit<ClusterCursorOptions, 'values'> = {}): Promise<void> {
    return this.client.clearRange(options);
  }

  /**
   * One snapshot per region, each on the node serving it now (remote-cursor.ts); release it. A
   * region that moves afterwards makes reads through it fail (SNAPSHOT_MOVED, UNKNOWN_HANDLE).
   */
  snapshot(): ClusterSnapshot {
    return this.client.snapshot();
  }

  /** A streaming cursor across regions in key order, paging from server-side cursors. */
  iterator(options: ClusterCursorOptions = {}): AsyncCursor {
    return this.client.iterator(options);
  }

  /** Operations in the node connections' windows now: handed to a connection, not yet answered. */
  get inFlight(): number {
    let count = 0;
    for (const connection of this.connections.values()) count += connection.inFlight;
    return count;
  }

  /** The per-node window (`maxInFlight`). */
  get maxInFlight(): number {
    return this.window;
  }

  scan(options: ClientScanOptions = {}): Promise<KeyValue[]> {
    return this.client.scan(options);
  }

  /** The region map as last seen. */
  regions(): RegionConfig[] {
    return this.map.map((c) => ({ ...c, backups: [...c.backups] }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const stop of this.unwatch) stop();
    for (const connection of this.connections.values()) connection.close();
    await this.coordinator.close();
  }

  /** @internal Milliseconds one request may wait: `requestTimeoutMs`, at most what is left until `deadlineMs`. */
  requestBudgetMs(deadlineMs: number | undefined): number {
    const requestMs = this.options.requestTimeoutMs ?? 5000;
    if (deadlineMs === undefined) return requestMs;
    return Math.max(1, Math.min(requestMs, deadlineMs - this.clock.now()));
  }

  /** @internal The pooled connection to `nodeId` when it is open (the fast path: no promise). */
  openConnection(nodeId: string): NodeConnection | undefined {
    const existing = this.connections.get(nodeId);
    return !this.closed && existing !== undefined && !existing.broken ? existing : undefined;
  }

  /** @internal A pooled, authenticated connection to `nodeId`'s client endpoint. */
  async connectionTo(nodeId: string, deadlineMs?: number): Promise<NodeConnection> {
    if (this.closed) throw new TalosError('CLIENT_CLOSED', 'the client is closed');
    const existing = this.connections.get(nodeId);
    if (existing !== undefined && !existing.broken) return existing;
    const pending = this.opening.get(nodeId);
    if (pending !== undefined) return pending;
    const address = this.members.get(nodeId)?.clientAddress;
    if (address === undefined) throw new UnreachableError(`${nodeId} (no client address listed)`);
    const opened = NodeConnection.open(address, {
      connectTimeoutMs: this.requestBudgetMs(deadlineMs),
      ...(this.options.tls === undefined ? {} : { tls: this.options.tls }),
      token: this.options.token ?? '',
      maxInFlight: this.window,
    });
    this.opening.set(nodeId, opened);
    try {
      const connection = await opened;
      if (this.closed) {
        connection.close();
        throw new TalosError('CLIENT_CLOSED', 'the client is closed');
      }
      this.connections.set(nodeId, connection);
      return connection;
    } finally {
      this.opening.delete(nodeId);
    }
  }

  private async start(): Promise<void> {
    this.unwatch.push(
      this.coordinator.watchRegions((event) => {
        if (event.kind === 'put') {
          this.map = [
            ...this.map.filter((c) => c.regionId !== event.entry.config.regionId),
            event.entry.config,
          ].sort(byMinKey);
        } else this.map = this.map.filter((c) => c.regionId !== event.regionId);
      }),
      this.coordinator.watchMembers((event) => {
        if (event.kind === 'join') this.members.set(event.member.nodeId, event.member);
        else this.members.delete(event.nodeId);
      }),
    );
    const deadline = Date.now() + (this.options.operationTimeoutMs ?? 10_000);
    while (!coversEveryKey(this.map)) {
      if (Date.now() > deadline) {
        await this.close();
        throw new UnknownRegionError(`any key: no region map in etcd at ${this.options.etcd.join(',')}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    // The members' watch runs beside the map's: wait (briefly) until every primary's client
    // address is known too, so a first request (a cursor open, which is not retried) finds it.
    // A primary that is gone has no member: then the operation's own retries take over.
    const membersBy = Math.min(deadline, Date.now() + MEMBERS_GRACE_MS);
    while (!this.map.every((r) => this.members.has(r.primary)) && Date.now() < membersBy) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
}

/** How long `connect` waits, after the map covers every key, for the primaries' members. */
const MEMBERS_GRACE_MS = 1000;

/** A region's primary on a remote node, as the routed client sees it. The node decides serving. */
class RemoteSession implements RegionSession {
  readonly isServing = true;
  constructor(
    private readonly client: TalosClient,
    private readonly nodeId: string,
    private readonly regionId: string,
  ) {}

  async put(key: KeyLike, value: Uint8Array | string, deadlineMs?: number): Promise<void> {
    const request: ClientRequest = {
      op: 'put',
      regionId: this.regionId,
      key: keyBytesOf(key),
      value: bytesOf(value),
    };
    expectKind(await this.call(request, key, true, deadlineMs), 'done', request, key);
  }

  async delete(key: KeyLike, deadlineMs?: number): Promise<void> {
    const request: ClientRequest = { op: 'delete', regionId: this.regionId, key: keyBytesOf(key) };
    expectKind(await this.call(request, key, true, deadlineMs), 'done', request, key);
  }

  async get(key: KeyLike, deadlineMs?: number): Promise<Buffer | undefined> {
    const request: ClientRequest = { op: 'get', regionId: this.regionId, key: keyBytesOf(key) };
    const reply = await this.call(request, key, false, deadlineMs);
    if (reply.kind === 'missing') return undefined;
    // A copy: the reply is a view into the connection's receive buffer.
    return Buffer.from(expectKind(reply, 'value', request, key).value);
  }

  async scan(options: ScanOptions, deadlineMs?: number): Promise<KeyValue[]> {
    const request: ClientRequest = {
      op: 'scan',
      regionId: this.regionId,
      gte: keyBytesOf(options.gte ?? ''),
      limit: Math.min(options.limit ?? 0xffffffff, 0xffffffff),
      reverse: options.reverse ?? false,
      ...(options.lt === undefined ? {} : { lt: keyBytesOf(options.lt) }),
    };
    const gte = options.gte ?? '';
    const { rows } = expectKind(await this.call(request, gte, false, deadlineMs), 'rows', request, gte);
    return rows.map((row) => ({ key: Buffer.from(row.key), value: Buffer.from(row.value) }));
  }

  /** An atomic batch in the region (the node's engine batch: one log group). */
  async batch(operations: readonly BatchOperation[], deadlineMs?: number): Promise<void> {
    const request: ClientRequest = {
      op: 'batch',
      regionId: this.regionId,
      operations: operations.map((op) =>
        op.type === 'del'
          ? { del: true, key: keyBytesOf(op.key), value: EMPTY }
          : { del: false, key: keyBytesOf(op.key), value: bytesOf(op.value) },
      ),
    };
    const first = operations[0]?.key ?? '';
    expectKind(await this.call(request, first, true, deadlineMs), 'done', request, first);
  }

  /** A snapshot of the region's store on this node (remote-cursor.ts). */
  snapshot(): RemoteSnapshot {
    return new RemoteSnapshot(this.nodeId, this.regionId, this.reader);
  }

  /** A cursor over the region's store on this node (remote-cursor.ts). */
  iterator(options: RegionCursorOptions): RemoteCursor {
    const snapshot = options.snapshot;
    if (snapshot instanceof RemoteSnapshot && snapshot.nodeId !== this.nodeId) {
      throw new TalosError(
        'SNAPSHOT_MOVED',
        `region ${this.regionId} moved from ${snapshot.nodeId} (where the snapshot is) to ${this.nodeId}: take a new snapshot`,
      );
    }
    return new RemoteCursor(this.regionId, this.reader, options);
  }

  private readonly reader = (request: ClientRequest): Promise<ClientReply> => this.call(request, '', false);

  /** Sends `request` and waits for its reply; an error reply is thrown as its typed error. */
  private call(
    request: ClientRequest,
    key: KeyLike,
    isWrite: boolean,
    deadlineMs?: number,
  ): Promise<ClientReply> {
    const timeoutMs = this.client.requestBudgetMs(deadlineMs);
    const open = this.client.openConnection(this.nodeId);
    const sent =
      open !== undefined
        ? open.request(request, timeoutMs)
        : // UnreachableError: retried; UnauthenticatedError: not.
          this.client
            .connectionTo(this.nodeId, deadlineMs)
            .then((connection) => connection.request(request, this.client.requestBudgetMs(deadlineMs)));
    return sent.then(
      (reply) => {
        if (reply.kind === 'error') throw rebuildError(reply, this.nodeId);
        return reply;
      },
      (err: unknown) => {
        if (err instanceof TalosError && !(err instanceof ConnectionLostError)) throw err;
        if (err instanceof NotSentError) throw new UnreachableError(`${this.nodeId} (connection closed)`);
        // Sent, then the connection broke or the deadline passed: a write may have been applied.
        if (isWrite) {
          throw new OutcomeUnknownError(`${request.op} of ${describeKeyLike(key)} on ${this.nodeId}`, {
            cause: err,
          });
        }
        throw new UnreachableError(`${this.nodeId} (${err instanceof Error ? err.message : String(err)})`);
      },
    );
  }
}

const EMPTY = Buffer.alloc(0);

const bytesOf = (value: Uint8Array | string): Buffer =>
  typeof value === 'string' ? Buffer.from(value) : keyBytesOf(value);

/** The reply, if it is of the kind `request` expects: anything else is the node's protocol error. */
function expectKind<K extends ClientReply['kind']>(
  reply: ClientReply,
  kind: K,
  request: ClientRequest,
  key: KeyLike,
): Extract<ClientReply, { kind: K }> {
  if (reply.kind === kind) return reply as Extract<ClientReply, { kind: K }>;
  const err = new ProtocolError(`a ${reply.kind} reply to a ${request.op}`);
  // The node answered a write with nonsense: whether it applied it is not known.
  if (request.op === 'put' || request.op === 'delete' || request.op === 'batch') {
    throw new OutcomeUnknownError(`${request.op} of ${describeKeyLike(key)}`, { cause: err });
  }
  throw err;
}

/** Whether the (sorted) map's regions are adjacent from '' to unbounded: every key has a region. */
function coversEveryKey(map: readonly RegionConfig[]): boolean {
  if (map.length === 0 || map[0]!.minKey !== '' || map.at(-1)!.maxKey !== undefined) return false;
  return map.every((r, i) => i === map.length - 1 || r.maxKey === map[i + 1]!.minKey);
}

/** A typed error from an error reply. */
function rebuildError(reply: Extract<ClientReply, { kind: 'error' }>, nodeId: string): Error {
  const { code, message, regionId } = reply;
  switch (code) {
    case 'WRONG_PRIMARY':
      return new WrongPrimaryError(regionId, nodeId, undefined);
    case 'STALE_EPOCH':
      return new StaleEpochError(regionId, 0, 0);
    case 'OUTCOME_UNKNOWN':
      return new OutcomeUnknownError(message.replace(/^outcome unknown: /, ''));
    case 'INVALID_ARGUMENT':
      return new InvalidArgumentError(message);
    case 'UNKNOWN_REGION':
      return new UnknownRegionError(regionId);
    case 'UNAUTHENTICATED':
      return new UnauthenticatedError(message.replace(/^unauthenticated: /, ''));
    default:
      return new TalosError(code, message);
  }
}

/** The request never left: it was queued, or in a frame the kernel never took (safe to retry). */
class NotSentError extends Error {}

/** The connection broke (or the reply did not come in time) after the request was sent. */
class ConnectionLostError extends TalosError {
  constructor(detail: string, options?: { cause?: unknown }) {
    super('CONNECTION_LOST', detail, options);
  }
}

/** One operation on a connection: queued for the window, then in a frame, then answered. */
interface Waiter {
  request: ClientRequest | undefined;
  resolve: (reply: ClientReply) => void;
  reject: (err: Error) => void;
  deadlineMs: number;
  id: number;
  /** The kernel took the frame holding it: from then on it may reach the node. */
  flushed: boolean;
}

/**
 * One TCP (or TLS) connection to a node's client endpoint. Operations are admitted into the
 * window (`maxInFlight`) in arrival order, encoded into the tick's request frame (FrameBatcher)
 * and matched to replies by id; the ones beyond the window wait in `queue`, unencoded.
 */
class NodeConnection {
  broken = false;
  private nextId = 1;
  /** Admitted operations by id: in the frame being filled, in a frame sent, awaiting a reply. */
  private readonly waiting = new Map<number, Waiter>();
  /** Operations beyond the window, oldest first (`queueHead` is the next to admit). */
  private queue: Waiter[] = [];
  private queueHead = 0;
  /** The operations in the frame being filled (they learn `flushed` from its write). */
  private unflushed: Waiter[] = [];
  private readonly requests: FrameBatcher<'requests'>;
  private timer: NodeJS.Timeout | undefined;
  private timerAtMs = Number.POSITIVE_INFINITY;

  private constructor(
    private readonly socket: Socket,
    private readonly maxInFlight: number,
  ) {
    this.requests = new FrameBatcher('requests', (frame) => this.sendFrame(frame));
    const splitter = new FrameSplitter();
    socket.on('data', (chunk: Buffer) => {
      try {
        splitter.push(chunk, (body) => this.receive(body));
      } catch (err) {
        this.fail(new ConnectionLostError(err instanceof Error ? err.message : String(err), { cause: err }));
        socket.destroy();
      }
      this.admitQueued();
    });
    socket.on('error', (err) => this.fail(new ConnectionLostError(err.message, { cause: err })));
    // The node closed its side: nothing more will be answered, and nothing more is sent.
    socket.on('end', () => this.fail(new ConnectionLostError('the node closed the connection')));
    socket.on('close', () => this.fail(new ConnectionLostError('connection closed')));
  }

  /** Operations admitted into the window and not yet answered. */
  get inFlight(): number {
    return this.waiting.size;
  }

  /**
   * Connects (TLS when `tls`), then authenticates: AUTH with the token, and its answer awaited.
   * UnreachableError (retried) when the node cannot be reached or closes before answering;
   * UnauthenticatedError (final) when TLS refuses either side or the node refuses the token.
   */
  static async open(
    address: string,
    options: { connectTimeoutMs: number; tls?: TlsCredentials; token: string; maxInFlight: number },
  ): Promise<NodeConnection> {
    let target: { host: string; port: number };
    try {
      target = parseTcpAddress(address);
    } catch {
      throw new UnreachableError(address);
    }
    const tls = options.tls;
    const socket =
      tls === undefined
        ? createConnection(target)
        : tlsConnect(tlsClientOptions(tls, target.host, target.port));
    socket.setNoDelay(true);
    let failure: Error | undefined;
    socket.on('error', (err) => {
      failure ??= err;
    });
    const refused = (): UnauthenticatedError | undefined => {
      const reason = failure === undefined ? undefined : tlsRefusal(failure);
      return reason === undefined
        ? undefined
        : new UnauthenticatedError(`TLS with ${address} failed: ${reason}`, { cause: failure });
    };
    const timer = setTimeout(() => socket.destroy(), options.connectTimeoutMs);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once(tls === undefined ? 'connect' : 'secureConnect', () => resolve());
        socket.once('close', () => reject(refused() ?? new UnreachableError(address)));
      });
      const connection = new NodeConnection(socket, options.maxInFlight);
      // The AUTH reply's wait is the connect budget: a node that neither answers nor closes is unreachable.
      const reply = await connection.authenticate(options.token, options.connectTimeoutMs).catch(() => {
        throw (
          refused() ??
          new UnreachableError(`${address} (closed the connection before authenticating: a TLS endpoint?)`)
        );
      });
      if (reply.kind !== 'done') {
        const err =
          reply.kind === 'error' ? rebuildError(reply, address) : new ProtocolError(`${reply.kind} to AUTH`);
        connection.close();
        throw err instanceof TalosError && err.code === 'UNAUTHENTICATED'
          ? err
          : new UnauthenticatedError(String(err));
      }
      return connection;
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Sends `request` in this tick's frame, or queues it while the window is full. Rejects with
   * NotSentError when it never left, the error the tables raised for a request they refuse (its
   * own definite failure), or ConnectionLostError once it may have reached the node.
   */
  request(request: ClientRequest, timeoutMs: number): Promise<ClientReply> {
    if (this.broken || this.socket.destroyed) return Promise.reject(new NotSentError());
    return new Promise<ClientReply>((resolve, reject) => {
      const waiter: Waiter = {
        request,
        resolve,
        reject,
        deadlineMs: Date.now() + timeoutMs,
        id: 0,
        flushed: false,
      };
      if (this.waiting.size < this.maxInFlight && this.queueHead === this.queue.length) this.admit(waiter);
      else this.queue.push(waiter);
      this.armTimer(waiter.deadlineMs);
    });
  }

  close(): void {
    this.fail(new ConnectionLostError('client closed'));
    this.socket.destroy();
  }

  /** AUTH, outside any batch (nothing else is sent before its answer). */
  private authenticate(token: string, timeoutMs: number): Promise<ClientReply> {
    return new Promise<ClientReply>((resolve, reject) => {
      const waiter: Waiter = {
        request: undefined,
        resolve,
        reject,
        deadlineMs: Date.now() + timeoutMs,
        id: this.takeId(),
        flushed: false,
      };
      this.waiting.set(waiter.id, waiter);
      this.armTimer(waiter.deadlineMs);
      this.unflushed.push(waiter);
      this.sendFrame(encodeAuth(waiter.id, token));
    });
  }

  private takeId(): number {
    const id = this.nextId;
    this.nextId = id === 0xffffffff ? 1 : id + 1; // 0 is CONNECTION_ID
    assert(id !== CONNECTION_ID && !this.waiting.has(id), 'request ids are unique on a connection');
    return id;
  }

  /** Encodes the operation into the frame being filled and counts it in the window. */
  private admit(waiter: Waiter): void {
    const id = this.takeId();
    try {
      this.requests.add({ id, request: waiter.request! });
    } catch (err) {
      waiter.reject(err as Error); // refused by the tables: never sent, its own definite failure
      return;
    }
    waiter.id = id;
    waiter.request = undefined; // encoded: the frame holds it now
    this.waiting.set(id, waiter);
    this.unflushed.push(waiter);
  }

  /** Admits queued operations while the window has room. */
  private admitQueued(): void {
    while (this.queueHead < this.queue.length && this.waiting.size < this.maxInFlight && !this.broken) {
      const waiter = this.queue[this.queueHead++]!;
      if (waiter.request !== undefined) this.admit(waiter); // undefined: it timed out in the queue
    }
    if (this.queueHead === this.queue.length && this.queueHead > 0) {
      this.queue = [];
      this.queueHead = 0;
    } else if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      // A backlog that never drains: drop the admitted head instead of keeping it forever.
      this.queue = this.queue.slice(this.queueHead);
      this.queueHead = 0;
    }
  }

  private sendFrame(frame: Buffer): void {
    const sent = this.unflushed;
    this.unflushed = [];
    // A socket the node closed (or that closed) takes nothing: fail() rejects them, unflushed, as never sent.
    if (this.socket.destroyed || this.socket.readableEnded || !this.socket.writable) {
      this.fail(new ConnectionLostError('connection closed'));
      return;
    }
    this.socket.write(frame, (err) => {
      if (err !== undefined && err !== null) return;
      for (const waiter of sent) waiter.flushed = true;
    });
  }

  private receive(body: Buffer): void {
    const frame = decodeFrame(body);
    if (frame.kind === 'goaway') {
      this.goAway(frame.lastId, `${frame.code}: ${frame.message}`);
      return;
    }
    if (frame.kind !== 'replies') throw new ProtocolError(`a ${frame.kind} frame from a node`);
    for (const { id, reply } of frame.items) {
      if (id === CONNECTION_ID) {
        const err =
          reply.kind === 'error' ? rebuildError(reply, 'node') : new ProtocolError('connection reply');
        throw new ProtocolError(`the node closed the connection: ${err.message}`);
      }
      const waiter = this.waiting.get(id);
      if (waiter === undefined) continue; // timed out meanwhile
      this.waiting.delete(id);
      waiter.resolve(reply);
    }
  }

  /**
   * The node's last frame: every request sent after `lastId` never ran there, whatever the kernel
   * took, so it fails as never sent (retried elsewhere); the rest fail as the connection closes.
   */
  private goAway(lastId: number, reason: string): void {
    for (const [id, waiter] of this.waiting) {
      if (!sentAfter(id, lastId)) continue;
      this.waiting.delete(id);
      waiter.reject(new NotSentError());
    }
    this.fail(new ConnectionLostError(`the node closed the connection (${reason})`));
  }

  /** Arms the connection's one timer for `deadlineMs` unless it fires earlier already. */
  private armTimer(deadlineMs: number): void {
    if (deadlineMs >= this.timerAtMs) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerAtMs = deadlineMs;
    this.timer = setTimeout(this.expire, Math.max(0, deadlineMs - Date.now()));
  }

  /** Rejects every operation past its deadline, then re-arms for the earliest one left. */
  private readonly expire = (): void => {
    this.timer = undefined;
    this.timerAtMs = Number.POSITIVE_INFINITY;
    const now = Date.now();
    let next = Number.POSITIVE_INFINITY;
    for (const [id, waiter] of this.waiting) {
      if (waiter.deadlineMs <= now) {
        this.waiting.delete(id);
        // Admitted: in a frame that is sent (or is being sent this tick), so it may reach the node.
        waiter.reject(new ConnectionLostError(`no reply within the request budget (${id})`));
      } else next = Math.min(next, waiter.deadlineMs);
    }
    for (let i = this.queueHead; i < this.queue.length; i++) {
      const waiter = this.queue[i]!;
      if (waiter.request === undefined) continue;
      if (waiter.deadlineMs <= now) {
        waiter.request = undefined;
        waiter.reject(new NotSentError()); // still queued: it never left
      } else next = Math.min(next, waiter.deadlineMs);
    }
    this.admitQueued();
    if (next !== Number.POSITIVE_INFINITY) this.armTimer(next);
  };

  private fail(err: Error): void {
    if (this.broken) return;
    this.broken = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    for (const waiter of this.waiting.values()) {
      // A request whose frame the kernel refused or never got (EPIPE: the node had closed) never left.
      waiter.reject(waiter.flushed ? err : new NotSentError());
    }
    this.waiting.clear();
    for (let i = this.queueHead; i < this.queue.length; i++) {
      const waiter = this.queue[i]!;
      if (waiter.request !== undefined) waiter.reject(new NotSentError());
    }
    this.queue = [];
    this.queueHead = 0;
  }
}
