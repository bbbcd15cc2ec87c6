/**
 * TalosClient: the in-process client's API (put/get/delete/scan, routed by region) for a cluster
 * of node processes. It keeps the region map and the members' client addresses from etcd through
 * watches (so the map it routes by is refreshed as the controller moves regions), and talks to each
 * primary over the client protocol (src/server/client-protocol.ts), one pooled connection per node.
 *
 * Retries (the LocalClient's loop, bounded by `operationTimeoutMs` with exponential backoff):
 * WRONG_PRIMARY / STALE_EPOCH from a node, or a node that cannot be reached before the request was
 * sent. A write whose connection broke or timed out after it was sent may have been applied: it is
 * reported as OutcomeUnknownError, never retried blindly and never reported as failed.
 */
import { createConnection, type Socket } from 'node:net';
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
  UnknownRegionError,
  UnreachableError,
  WrongPrimaryError,
} from '../errors.js';
import { parseTcpAddress } from '../fabric/tcp.js';
import { type ClientRequest, encodeRequest, FrameSplitter, OP, Reader } from '../server/client-protocol.js';

export interface TalosClientOptions extends LocalClientOptions {
  /** etcd endpoints of the cluster's coordinator. */
  etcd: string[];
  cluster?: string;
  /** Passed to the etcd client (auth, TLS, call deadline). */
  etcdOptions?: Omit<EtcdCoordinatorOptions, 'endpoints' | 'cluster'>;
  /** One request's deadline on the wire (default 5000 ms). */
  requestTimeoutMs?: number;
}

export class TalosClient {
  private readonly coordinator: EtcdCoordinator;
  private map: RegionConfig[] = [];
  private readonly members = new Map<string, NodeInfo>();
  private readonly connections = new Map<string, NodeConnection>();
  private readonly unwatch: Unsubscribe[] = [];
  private readonly client: LocalClient;
  private closed = false;

  private constructor(private readonly options: TalosClientOptions) {
    this.coordinator = new EtcdCoordinator({
      ...options.etcdOptions,
      endpoints: options.etcd,
      ...(options.cluster === undefined ? {} : { cluster: options.cluster }),
    });
    this.client = new LocalClient(
      {
        regions: () => this.map,
        session: (nodeId, regionId) => new RemoteSession(this, nodeId, regionId),
        clock: new SystemClock(),
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

  /** @internal A pooled connection to `nodeId`'s client endpoint. */
  async connectionTo(nodeId: string): Promise<NodeConnection> {
    if (this.closed) throw new TalosError('CLIENT_CLOSED', 'the client is closed');
    const existing = this.connections.get(nodeId);
    if (existing !== undefined && !existing.broken) return existing;
    const address = this.members.get(nodeId)?.clientAddress;
    if (address === undefined) throw new UnreachableError(`${nodeId} (no client address listed)`);
    const connection = await NodeConnection.open(address, this.options.requestTimeoutMs ?? 5000);
    this.connections.set(nodeId, connection);
    return connection;
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

  async put(key: string, value: Uint8Array | string): Promise<void> {
    const bytes = typeof value === 'string' ? Buffer.from(value) : Buffer.from(value);
    await this.call({ op: 'put', regionId: this.regionId, key, value: bytes }, true);
  }

  async delete(key: string): Promise<void> {
    await this.call({ op: 'delete', regionId: this.regionId, key }, true);
  }

  async get(key: string): Promise<Buffer | undefined> {
    const r = await this.call({ op: 'get', regionId: this.regionId, key }, false);
    return r.u8() === 1 ? r.bytes() : undefined;
  }

  async scan(options: ScanOptions): Promise<KeyValue[]> {
    const request: ClientRequest = {
      op: 'scan',
      regionId: this.regionId,
      gte: latin1(options.gte ?? ''),
      limit: Math.min(options.limit ?? 0xffffffff, 0xffffffff),
      reverse: options.reverse ?? false,
      ...(options.lt === undefined ? {} : { lt: latin1(options.lt) }),
    };
    const r = await this.call(request, false);
    const count = r.u32();
    return Array.from({ length: count }, () => ({ key: r.bytes(), value: r.bytes() }));
  }

  private async call(request: ClientRequest, isWrite: boolean): Promise<Reader> {
    const connection = await this.client.connectionTo(this.nodeId); // UnreachableError: retried
    const reply = await connection.request(request).catch((err: unknown) => {
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
    default:
      return new TalosError(code, message);
  }
}

/** The request never left: the connection was already gone (safe to retry elsewhere). */
class NotSentError extends Error {}

/** One TCP connection to a node's client endpoint; requests matched to replies by id. */
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

  private constructor(
    private readonly socket: Socket,
    private readonly timeoutMs: number,
  ) {
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

  static open(address: string, timeoutMs: number): Promise<NodeConnection> {
    let target: { host: string; port: number };
    try {
      target = parseTcpAddress(address);
    } catch {
      return Promise.reject(new UnreachableError(address));
    }
    return new Promise((resolve, reject) => {
      const socket = createConnection(target);
      socket.setNoDelay(true);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new UnreachableError(address));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(new NodeConnection(socket, timeoutMs));
      });
      socket.once('error', () => {
        clearTimeout(timer);
        reject(new UnreachableError(address));
      });
    });
  }

  request(request: ClientRequest): Promise<{ op: number; body: Reader }> {
    if (this.broken || this.socket.destroyed) return Promise.reject(new NotSentError());
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`no reply within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      const waiter = { resolve, reject, timer, flushed: false };
      this.waiting.set(id, waiter);
      this.socket.write(encodeRequest(id, request), (err) => {
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
