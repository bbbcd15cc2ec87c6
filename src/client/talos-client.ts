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
import { SystemClock } from '../clock/index.js';
import {
  type ClientScanOptions,
  LocalClient,
  type LocalClientOptions,
  type RegionSession,
} from '../cluster/client.js';
import { byMinKey } from '../cluster/regions.js';
import type { KeyValue, ScanOptions } from '../engine/store.js';
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
import {
  type ClientRequest,
  encodeAuth,
  encodeRequest,
  FrameSplitter,
  OP,
  Reader,
} from '../server/client-protocol.js';

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
  private closed = false;

  private constructor(private readonly options: TalosClientOptions) {
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

  put(key: string, value: Uint8Array | string): Promise<void> {
    return this.client.put(key, value);
  }

  delete(key: string): Promise<void> {
    return this.client.delete(key);
  }

  get(key: string): Promise<Buffer | undefined> {
    return this.client.get(key);
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
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** A region's primary on a remote node, as the routed client sees it. The node decides serving. */
class RemoteSession implements RegionSession {
  readonly isServing = true;
  constructor(
    private readonly client: TalosClient,
    private readonly nodeId: string,
    private readonly regionId: string,
  ) {}

  async put(key: string, value: Uint8Array | string, deadlineMs?: number): Promise<void> {
    const bytes = typeof value === 'string' ? Buffer.from(value) : Buffer.from(value);
    await this.call({ op: 'put', regionId: this.regionId, key, value: bytes }, true, deadlineMs);
  }

  async delete(key: string, deadlineMs?: number): Promise<void> {
    await this.call({ op: 'delete', regionId: this.regionId, key }, true, deadlineMs);
  }

  async get(key: string, deadlineMs?: number): Promise<Buffer | undefined> {
    const r = await this.call({ op: 'get', regionId: this.regionId, key }, false, deadlineMs);
    return r.u8() === 1 ? r.bytes() : undefined;
  }

  async scan(options: ScanOptions, deadlineMs?: number): Promise<KeyValue[]> {
    const request: ClientRequest = {
      op: 'scan',
      regionId: this.regionId,
      gte: latin1(options.gte ?? ''),
      limit: Math.min(options.limit ?? 0xffffffff, 0xffffffff),
      reverse: options.reverse ?? false,
      ...(options.lt === undefined ? {} : { lt: latin1(options.lt) }),
    };
    const r = await this.call(request, false, deadlineMs);
    const count = r.u32();
    return Array.from({ length: count }, () => ({ key: r.bytes(), value: r.bytes() }));
  }

  private async call(request: ClientRequest, isWrite: boolean, deadlineMs?: number): Promise<Reader> {
    // UnreachableError: retried; UnauthenticatedError: not.
    const connection = await this.client.connectionTo(this.nodeId, deadlineMs);
    const timeoutMs = this.client.requestBudgetMs(deadlineMs);
    const reply = await connection.request(request, timeoutMs).catch((err: unknown) => {
      if (err instanceof NotSentError) throw new UnreachableError(`${this.nodeId} (connection closed)`);
      // Sent, then the connection broke or the deadline passed: a write may have been applied.
      if (isWrite) {
        const key = 'key' in request ? request.key : '';
        throw new OutcomeUnknownError(`${request.op} of ${JSON.stringify(key)} on ${this.nodeId}`, {
          cause: err,
        });
      }
      throw new UnreachableError(`${this.nodeId} (${err instanceof Error ? err.message : String(err)})`);
    });
    if (reply.op === OP.OK) return reply.body;
    throw rebuildError(reply.body, this.nodeId);
  }
}

/** Whether the (sorted) map's regions are adjacent from '' to unbounded: every key has a region. */
function coversEveryKey(map: readonly RegionConfig[]): boolean {
  if (map.length === 0 || map[0]!.minKey !== '' || map.at(-1)!.maxKey !== undefined) return false;
  return map.every((r, i) => i === map.length - 1 || r.maxKey === map[i + 1]!.minKey);
}

const latin1 = (key: string | Uint8Array): string =>
  typeof key === 'string' ? key : Buffer.from(key).toString('latin1');

/** A typed error from an ERROR reply. */
function rebuildError(body: Reader, nodeId: string): Error {
  const code = body.str('utf8');
  const message = body.str('utf8');
  const regionId = body.str();
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

/** The request never left: the connection was already gone (safe to retry elsewhere). */
class NotSentError extends Error {}

/** One TCP (or TLS) connection to a node's client endpoint; requests matched to replies by id. */
class NodeConnection {
  broken = false;
  private nextId = 1;
  private readonly waiting = new Map<
    number,
    {
      resolve: (r: { op: number; body: Reader }) => void;
      reject: (e: Error) => void;
      timer: NodeJS.Timeout;
      /** The kernel took the request's bytes: from then on it may reach the node. */
      flushed: boolean;
    }
  >();

  private constructor(private readonly socket: Socket) {
    const splitter = new FrameSplitter();
    socket.on('data', (chunk: Buffer) => {
      try {
        splitter.push(chunk, (op, requestId, body) => {
          const waiter = this.waiting.get(requestId);
          if (waiter === undefined) return;
          this.waiting.delete(requestId);
          clearTimeout(waiter.timer);
          waiter.resolve({ op, body: new Reader(body) });
        });
      } catch (err) {
        this.fail(err instanceof Error ? err : new Error(String(err)));
      }
    });
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('connection closed')));
  }

  /**
   * Connects (TLS when `tls`), then authenticates: AUTH with the token, and its answer awaited.
   * UnreachableError (retried) when the node cannot be reached or closes before answering;
   * UnauthenticatedError (final) when TLS refuses either side or the node refuses the token.
   */
  static async open(
    address: string,
    options: { connectTimeoutMs: number; tls?: TlsCredentials; token: string },
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
      const connection = new NodeConnection(socket);
      // The AUTH reply's wait is the connect budget: a node that neither answers nor closes is unreachable.
      const reply = await connection.request({ auth: options.token }, options.connectTimeoutMs).catch(() => {
        throw (
          refused() ??
          new UnreachableError(`${address} (closed the connection before authenticating: a TLS endpoint?)`)
        );
      });
      if (reply.op !== OP.OK) {
        const err = rebuildError(reply.body, address);
        connection.close();
        throw err instanceof TalosError ? err : new UnauthenticatedError(String(err));
      }
      return connection;
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  request(
    request: ClientRequest | { auth: string },
    timeoutMs: number,
  ): Promise<{ op: number; body: Reader }> {
    if (this.broken || this.socket.destroyed) return Promise.reject(new NotSentError());
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = { resolve, reject, timer, flushed: false };
      this.waiting.set(id, waiter);
      const bytes = 'auth' in request ? encodeAuth(id, request.auth) : encodeRequest(id, request);
      this.socket.write(bytes, (err) => {
        if (err === undefined || err === null) waiter.flushed = true;
      });
    });
  }

  close(): void {
    this.fail(new Error('client closed'));
    this.socket.destroy();
  }

  private fail(err: Error): void {
    this.broken = true;
    for (const waiter of this.waiting.values()) {
      clearTimeout(waiter.timer);
      // A request whose bytes the kernel refused (EPIPE: the node had closed) never left.
      waiter.reject(waiter.flushed ? err : new NotSentError());
    }
    this.waiting.clear();
  }
}
