/**
 * EtcdCoordinator: the Coordinator port (types.ts) on a real etcd cluster through the `etcd3`
 * client, with the semantics EmbeddedCoordinator models (both pass test/coordination's
 * conformance suite).
 *
 * Keys, under `/talos/<cluster>/` (components URI-encoded):
 *   members/<nodeId>                         NodeInfo JSON, attached to the member's lease
 *   regions/<regionId>                       RegionConfig JSON; RegionEntry.revision = mod revision
 *   election/<leaseId>                       candidate's node id, attached to its membership lease
 *   suspects/<regionId>/<suspect>/<reporter>/<kind>   SuspectReport JSON
 *   progress/<regionId>/<nodeId>             BackupProgress JSON
 *
 * Leases and self-fencing (DESIGN §8). `join` grants a lease of ⌈ttl⌉ seconds (never shorter than
 * asked) and keeps it alive every TTL/3 (the etcd3 client's loop). The membership records when the
 * last keepalive that etcd acknowledged was *sent*, and `validUntilMs = that + leaseTtlMs − margin`
 * — the node fences itself then, never waiting for the client's `lost` event, which fires only
 * after 2×TTL without an answer (or at once when etcd answers that the lease is gone). A second
 * join of a node id puts the member key under the newer lease; `joinedRevision` is the put's
 * revision (the key's mod revision).
 *
 * Region map. `compareAndSetRegion` reads the entry, answers {ok:false, current} on a stale
 * revision, checks the epoch rule and the shape (InvalidConfigurationError), then commits one
 * transaction: if the key's mod revision (create revision 0 for a creation) is still the expected
 * one, put. A reply lost to a deadline or a dropped connection is ambiguous — the transaction may
 * have committed — so the entry is read back: our configuration there means it did (epochs are
 * unique per region, so an equal configuration is ours).
 *
 * Election: the etcd recipe on the membership's own lease (leadership ends with membership): a
 * candidate puts `election/<leaseId>` if absent; the oldest key (lowest create revision) leads, the
 * others each wait for the deletion of the key just older than theirs.
 *
 * Watches deliver the current state first (a read at revision R), then changes from R + 1; the
 * etcd3 watcher resumes from its last revision after a reconnect. Every call has a deadline
 * (`callTimeoutMs`) and is not retried blindly; failures are CoordinatorUnavailableError.
 * TLS (`credentials`) and user/password (`auth`) pass through to etcd3.
 */
import { ConsecutiveBreaker, circuitBreaker, handleAll, noop } from 'cockatiel';
import {
  Etcd3,
  EtcdLeaseInvalidError,
  type IKeyValue,
  type Lease,
  type Namespace,
  type Watcher,
} from 'etcd3';
import { type Clock, SystemClock } from '../src/clock/index.js';
import {
  CoordinatorUnavailableError,
  InvalidArgumentError,
  InvalidConfigurationError,
  LeaseExpiredError,
  TalosError,
} from '../src/errors.js';
import type {
  BackupProgress,
  CasResult,
  Coordinator,
  Leadership,
  MemberEvent,
  Membership,
  NodeInfo,
  RegionConfig,
  RegionEntry,
  RegionEvent,
  SuspectReport,
  Unsubscribe,
} from './types.js';
import {
  copyConfig,
  copyNodeInfo,
  copyProgress,
  copyReport,
  nonEmptyString,
  validateNodeInfo,
  validateProgress,
  validateRegionConfig,
  validateReport,
} from './validate.js';

export interface EtcdCoordinatorOptions {
  /** etcd client URLs, e.g. ['http://127.0.0.1:2379']. */
  endpoints: string[];
  /** Key prefix component: keys live under `/talos/<cluster>/`. Default 'talos'. */
  cluster?: string;
  /** Deadline of every unary call (default 5000 ms). */
  callTimeoutMs?: number;
  clock?: Clock;
  /** Passed to etcd3: user/password authentication. */
  auth?: { username: string; password: string };
  /** Passed to etcd3: TLS (PEM buffers). */
  credentials?: { rootCertificate: Buffer; privateKey?: Buffer; certChain?: Buffer };
}

const enc = encodeURIComponent;
const num = (revision: string | number): number => Number(revision);

export class EtcdCoordinator implements Coordinator {
  private readonly client: Etcd3;
  private readonly ns: Namespace;
  private readonly clock: Clock;
  private closed = false;
  private readonly stops = new Set<() => void>();
  private readonly memberships = new Set<EtcdMembership>();
  private readonly candidates = new Set<{ abort(err: Error): void }>();

  constructor(readonly options: EtcdCoordinatorOptions) {
    if (!Array.isArray(options.endpoints) || options.endpoints.length === 0) {
      throw new InvalidArgumentError('EtcdCoordinator needs at least one endpoint');
    }
    const callTimeoutMs = options.callTimeoutMs ?? 5000;
    this.clock = options.clock ?? new SystemClock();
    this.client = new Etcd3({
      hosts: options.endpoints,
      ...(options.auth === undefined ? {} : { auth: options.auth }),
      ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: new Date(Date.now() + callTimeoutMs) }),
      // No blind retries (a retried transaction may have committed: callers read back); a short
      // breaker so a restarted etcd is used again within half a second.
      faultHandling: {
        global: noop,
        host: () => circuitBreaker(handleAll, { halfOpenAfter: 500, breaker: new ConsecutiveBreaker(3) }),
      },
    });
    this.ns = this.client.namespace(`/talos/${options.cluster ?? 'talos'}/`);
  }

  // ── membership ──

  async join(member: NodeInfo, leaseTtlMs: number): Promise<Membership> {
    return this.call('join', async () => {
      validateNodeInfo(member);
      if (!Number.isSafeInteger(leaseTtlMs) || leaseTtlMs <= 0) {
        throw new InvalidArgumentError(`leaseTtlMs must be a positive integer, got ${leaseTtlMs}`);
      }
      const { joinedRevision: _ignored, ...given } = member;
      const sentAtMs = this.clock.now();
      const lease = this.ns.lease(Math.max(1, Math.ceil(leaseTtlMs / 1000)), { autoKeepAlive: true });
      const membership = new EtcdMembership(this, lease, member.nodeId, leaseTtlMs, sentAtMs);
      try {
        const leaseId = await lease.grant();
        const put = await lease
          .put(`members/${enc(member.nodeId)}`)
          .value(JSON.stringify(copyNodeInfo(given)))
          .exec();
        membership.started(leaseId, num(put.header.revision));
      } catch (err) {
        lease.release();
        void lease.revoke().catch(() => {});
        throw err;
      }
      this.memberships.add(membership);
      return membership;
    });
  }

  async members(): Promise<NodeInfo[]> {
    return this.call('members', async () => {
      const res = await this.ns.getAll().prefix('members/').exec();
      return res.kvs.map(memberOf).sort((a, b) => (a.nodeId < b.nodeId ? -1 : 1));
    });
  }

  watchMembers(handler: (event: MemberEvent) => void): Unsubscribe {
    return this.watchPrefix('watchMembers', 'members/', {
      snapshot: (kvs) =>
        kvs
          .map(memberOf)
          .sort((a, b) => (a.nodeId < b.nodeId ? -1 : 1))
          .forEach((member) => {
            handler({ kind: 'join', member });
          }),
      put: (kv) => handler({ kind: 'join', member: memberOf(kv) }),
      delete: (kv) => handler({ kind: 'leave', nodeId: decodeURIComponent(lastPart(kv)) }),
    });
  }

  // ── region map ──

  async getRegions(): Promise<RegionEntry[]> {
    return this.call('getRegions', async () => {
      const res = await this.ns.getAll().prefix('regions/').exec();
      return res.kvs.map(entryOf).sort((a, b) => (a.config.regionId < b.config.regionId ? -1 : 1));
    });
  }

  async getRegion(regionId: string): Promise<RegionEntry | undefined> {
    return this.call('getRegion', async () => {
      if (!nonEmptyString(regionId)) throw new InvalidArgumentError('regionId must be a non-empty string');
      return this.readRegion(regionId);
    });
  }

  async compareAndSetRegion(expectedRevision: number, next: RegionConfig): Promise<CasResult> {
    return this.call('compareAndSetRegion', async () => {
      if (!Number.isSafeInteger(expectedRevision) || expectedRevision < 0) {
        throw new InvalidArgumentError(
          `expectedRevision must be a non-negative integer, got ${expectedRevision}`,
        );
      }
      validateRegionConfig(next);
      const config = copyConfig(next);
      const key = `regions/${enc(config.regionId)}`;
      const current = await this.readRegion(config.regionId);
      if (current === undefined ? expectedRevision !== 0 : current.revision !== expectedRevision) {
        return { ok: false, current };
      }
      const requiredEpoch = current === undefined ? 1 : current.config.epoch + 1;
      if (config.epoch !== requiredEpoch) {
        throw new InvalidConfigurationError(
          `region ${config.regionId}: epoch must be ${requiredEpoch} (${current === undefined ? 'a creation' : `current epoch ${current.config.epoch} + 1`}), got ${config.epoch}`,
        );
      }
      const value = JSON.stringify(config);
      try {
        const txn =
          expectedRevision === 0
            ? this.ns.if(key, 'Create', '==', 0)
            : this.ns.if(key, 'Mod', '==', expectedRevision);
        const res = await txn.then(this.ns.put(key).value(value)).else(this.ns.get(key)).commit();
        if (res.succeeded) return { ok: true, revision: num(res.header.revision) };
        const kv = res.responses[0]?.response_range?.kvs[0];
        return { ok: false, current: kv === undefined ? undefined : entryOf(kv) };
      } catch (err) {
        // Ambiguous: the transaction may have committed. Read back (DESIGN §8).
        const after = await this.readRegion(config.regionId).catch(() => {
          throw err;
        });
        if (
          after !== undefined &&
          after.revision > expectedRevision &&
          JSON.stringify(after.config) === value
        ) {
          return { ok: true, revision: after.revision };
        }
        if (after === undefined ? expectedRevision === 0 : after.revision === expectedRevision) throw err;
        return { ok: false, current: after };
      }
    });
  }

  watchRegions(handler: (event: RegionEvent) => void): Unsubscribe {
    return this.watchPrefix('watchRegions', 'regions/', {
      snapshot: (kvs) =>
        kvs
          .map(entryOf)
          .sort((a, b) => (a.config.regionId < b.config.regionId ? -1 : 1))
          .forEach((entry) => {
            handler({ kind: 'put', entry });
          }),
      put: (kv) => handler({ kind: 'put', entry: entryOf(kv) }),
      delete: (kv) =>
        handler({
          kind: 'delete',
          regionId: decodeURIComponent(lastPart(kv)),
          revision: num(kv.mod_revision),
        }),
    });
  }

  // ── election ──

  async campaign(membership: Membership): Promise<Leadership> {
    if (this.closed) throw new CoordinatorUnavailableError('campaign: client closed');
    if (!(membership instanceof EtcdMembership) || membership.coordinator !== this) {
      throw new InvalidArgumentError('campaign needs a membership joined through this coordinator');
    }
    if (!membership.isActive) throw new LeaseExpiredError(membership.nodeId);
    const key = `election/${membership.leaseId}`;
    let myRevision: number;
    try {
      const res = await this.ns
        .if(key, 'Create', '==', 0)
        .then(this.ns.put(key).value(membership.nodeId).lease(membership.leaseId))
        .else(this.ns.get(key))
        .commit();
      myRevision = res.succeeded
        ? num(res.header.revision)
        : num(res.responses[0]!.response_range!.kvs[0]!.create_revision);
      if (!res.succeeded)
        throw new InvalidArgumentError(`node ${membership.nodeId} is already campaigning under this lease`);
    } catch (err) {
      if (err instanceof EtcdLeaseInvalidError || /lease not found/i.test(String((err as Error)?.message)))
        throw new LeaseExpiredError(membership.nodeId);
      throw this.translate('campaign', err);
    }
    const leadership = new EtcdLeadership(this, membership, key);
    await new Promise<void>((resolve, reject) => {
      let done = false;
      const candidate = {
        abort: (err: Error) => {
          if (done) return;
          done = true;
          this.candidates.delete(candidate);
          reject(err);
        },
      };
      this.candidates.add(candidate);
      membership.onEnd(() => candidate.abort(new LeaseExpiredError(membership.nodeId)));
      const check = async (): Promise<void> => {
        while (!done) {
          const res = await this.ns.getAll().prefix('election/').sort('Create', 'Ascend').exec();
          const mine = res.kvs.find((kv) => this.relativeKey(kv) === key);
          if (mine === undefined) throw new LeaseExpiredError(membership.nodeId);
          const older = res.kvs.filter((kv) => num(kv.create_revision) < myRevision);
          if (older.length === 0) {
            done = true;
            this.candidates.delete(candidate);
            resolve();
            return;
          }
          // Wait for the deletion of the key just older than ours, then look again.
          await this.waitDeleted(this.relativeKey(older.at(-1)!), num(res.header.revision), () => done);
        }
      };
      check().catch((err) =>
        candidate.abort(err instanceof TalosError ? err : this.translate('campaign', err)),
      );
    });
    leadership.watch();
    return leadership;
  }

  observeLeader(handler: (leaderNodeId: string | undefined) => void): Unsubscribe {
    let last: string | undefined | null = null;
    let running = Promise.resolve();
    const refresh = (): void => {
      running = running
        .then(async () => {
          const res = await this.ns.getAll().prefix('election/').sort('Create', 'Ascend').limit(1).exec();
          const leader = res.kvs[0]?.value.toString();
          if (leader !== last) {
            last = leader;
            handler(leader);
          }
        })
        .catch(() => {});
    };
    return this.watchPrefix('observeLeader', 'election/', {
      snapshot: () => refresh(),
      put: () => refresh(),
      delete: () => refresh(),
    });
  }

  // ── suspects and progress ──

  async reportSuspect(report: SuspectReport): Promise<void> {
    return this.call('reportSuspect', async () => {
      validateReport(report);
      const r = copyReport(report);
      await this.ns
        .put(
          `suspects/${enc(r.regionId)}/${enc(r.suspectNodeId)}/${enc(r.reporterNodeId)}/${r.kind ?? 'suspect'}`,
        )
        .value(JSON.stringify(r))
        .exec();
    });
  }

  watchSuspects(handler: (report: SuspectReport) => void): Unsubscribe {
    const parse = (kv: IKeyValue): SuspectReport => copyReport(JSON.parse(kv.value.toString()));
    return this.watchPrefix('watchSuspects', 'suspects/', {
      snapshot: (kvs) => {
        for (const kv of kvs) handler(parse(kv));
      },
      put: (kv) => handler(parse(kv)),
      delete: () => {},
    });
  }

  async clearSuspects(regionId: string): Promise<void> {
    return this.call('clearSuspects', async () => {
      if (!nonEmptyString(regionId)) throw new InvalidArgumentError('regionId must be a non-empty string');
      await this.ns
        .delete()
        .prefix(`suspects/${enc(regionId)}/`)
        .exec();
    });
  }

  async reportProgress(progress: BackupProgress): Promise<void> {
    return this.call('reportProgress', async () => {
      validateProgress(progress);
      const p = copyProgress(progress);
      await this.ns
        .put(`progress/${enc(p.regionId)}/${enc(p.nodeId)}`)
        .value(JSON.stringify(p))
        .exec();
    });
  }

  async regionProgress(regionId: string): Promise<BackupProgress[]> {
    return this.call('regionProgress', async () => {
      if (!nonEmptyString(regionId)) throw new InvalidArgumentError('regionId must be a non-empty string');
      const res = await this.ns
        .getAll()
        .prefix(`progress/${enc(regionId)}/`)
        .exec();
      return res.kvs
        .map((kv) => copyProgress(JSON.parse(kv.value.toString())))
        .sort((a, b) => (a.nodeId < b.nodeId ? -1 : 1));
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const stop of [...this.stops]) stop();
    for (const candidate of [...this.candidates]) {
      candidate.abort(new CoordinatorUnavailableError('the client was closed while campaigning'));
    }
    for (const membership of this.memberships) membership.stopKeepalives();
    this.client.close();
  }

  // ── internals ──

  /** The namespace prefix as stored keys carry it. */
  get prefix(): string {
    return `/talos/${this.options.cluster ?? 'talos'}/`;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  now(): number {
    return this.clock.now();
  }

  /** A key as this namespace names it (etcd3 strips the prefix from range replies). */
  relativeKey(kv: IKeyValue): string {
    const key = kv.key.toString();
    return key.startsWith(this.prefix) ? key.slice(this.prefix.length) : key;
  }

  /** Deletes one key (namespace-relative). */
  async deleteKey(key: string): Promise<void> {
    await this.ns.delete().key(key).exec();
  }

  /** Runs `fn` unless closed; maps etcd failures to CoordinatorUnavailableError. */
  async call<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new CoordinatorUnavailableError(`${operation}: client closed`);
    try {
      return await fn();
    } catch (err) {
      throw this.translate(operation, err);
    }
  }

  translate(operation: string, err: unknown): Error {
    if (err instanceof TalosError) return err;
    const message = err instanceof Error ? err.message : String(err);
    return new CoordinatorUnavailableError(`${operation}: ${message}`, { cause: err });
  }

  private async readRegion(regionId: string): Promise<RegionEntry | undefined> {
    const res = await this.ns.get(`regions/${enc(regionId)}`).exec();
    const kv = res.kvs[0];
    return kv === undefined ? undefined : entryOf(kv);
  }

  /** Resolves once `key` (namespace-relative) is deleted, or `stop()` says to give up. */
  private async waitDeleted(key: string, sinceRevision: number, stop: () => boolean): Promise<void> {
    const watcher = await this.ns
      .watch()
      .key(key)
      .startRevision(String(sinceRevision + 1))
      .create();
    try {
      const gone = await this.ns.get(key).exec();
      if (gone.kvs.length === 0 || stop()) return;
      await new Promise<void>((resolve) => {
        watcher.on('delete', () => resolve());
        const unstop = (): void => resolve();
        this.stops.add(unstop);
        watcher.on('end', unstop);
      });
    } finally {
      await watcher.cancel().catch(() => {});
    }
  }

  /**
   * A watch on `prefix`: `snapshot` with the keys at revision R, then every put and delete after R,
   * in order. A failed first read is retried every half second until it works or the watch stops.
   */
  watchPrefix(
    operation: string,
    prefix: string,
    handlers: {
      snapshot(kvs: IKeyValue[]): void;
      put(kv: IKeyValue): void;
      delete(kv: IKeyValue): void;
    },
    /** Watch the one key `prefix` instead of every key under it. */
    exactKey = false,
  ): Unsubscribe {
    if (this.closed) throw new CoordinatorUnavailableError(`${operation}: client closed`);
    let active = true;
    let watcher: Watcher | undefined;
    const stop = (): void => {
      active = false;
      this.stops.delete(stop);
      void watcher?.cancel().catch(() => {});
    };
    this.stops.add(stop);
    const start = async (): Promise<void> => {
      while (active) {
        try {
          const res = await (exactKey ? this.ns.get(prefix) : this.ns.getAll().prefix(prefix)).exec();
          if (!active) return;
          const builder = this.ns.watch();
          const w = await (exactKey ? builder.key(prefix) : builder.prefix(prefix))
            .startRevision(String(num(res.header.revision) + 1))
            .create();
          if (!active) {
            await w.cancel().catch(() => {});
            return;
          }
          watcher = w;
          handlers.snapshot(res.kvs);
          w.on('put', (kv) => {
            if (active) handlers.put(kv);
          });
          w.on('delete', (kv) => {
            if (active) handlers.delete(kv);
          });
          w.on('error', () => {}); // the watcher reconnects and resumes on its own
          return;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 500));
        }
      }
    };
    void start();
    return stop;
  }
}

class EtcdMembership implements Membership {
  leaseId = '';
  joinedRevision = 0;
  private lastAckedSentAtMs: number;
  private lastFiredAtMs: number;
  private endedAtMs: number | undefined;
  private left = false;
  private lost = false;
  private readonly lostHandlers: (() => void)[] = [];
  private readonly endHandlers: (() => void)[] = [];

  constructor(
    readonly coordinator: EtcdCoordinator,
    private readonly lease: Lease,
    readonly nodeId: string,
    readonly leaseTtlMs: number,
    grantSentAtMs: number,
  ) {
    this.lastAckedSentAtMs = grantSentAtMs;
    this.lastFiredAtMs = grantSentAtMs;
    const now = (): number => coordinator.now();
    lease.on('keepaliveFired', () => {
      this.lastFiredAtMs = now();
    });
    lease.on('keepaliveSucceeded', () => {
      if (this.endedAtMs === undefined) this.lastAckedSentAtMs = this.lastFiredAtMs;
    });
    lease.on('lost', () => this.markLost(now()));
  }

  started(leaseId: string, joinedRevision: number): void {
    this.leaseId = leaseId;
    this.joinedRevision = joinedRevision;
  }

  get isActive(): boolean {
    return !this.left && !this.lost;
  }

  lastKeepaliveSentAtMs(): number {
    return this.lastAckedSentAtMs;
  }

  validUntilMs(marginMs: number): number {
    if (!Number.isFinite(marginMs) || marginMs < 0) {
      throw new InvalidArgumentError(`marginMs must be a non-negative number, got ${marginMs}`);
    }
    return Math.min(
      this.lastAckedSentAtMs + this.leaseTtlMs - marginMs,
      this.endedAtMs ?? Number.POSITIVE_INFINITY,
    );
  }

  onLost(handler: () => void): void {
    if (this.lost) queueMicrotask(handler);
    else this.lostHandlers.push(handler);
  }

  /** Runs once when the membership ends for any reason (left, lost, client closed). */
  onEnd(handler: () => void): void {
    if (!this.isActive) queueMicrotask(handler);
    else this.endHandlers.push(handler);
  }

  async leave(): Promise<void> {
    if (this.left || this.lost) return;
    this.left = true;
    this.endedAtMs = this.coordinator.now();
    for (const handler of this.endHandlers.splice(0)) handler();
    await this.lease.revoke().catch(() => {
      // etcd unreachable: the lease runs out on its own.
      this.lease.release();
    });
  }

  markLost(atMs: number): void {
    if (this.left || this.lost) return;
    this.lost = true;
    this.endedAtMs = atMs;
    for (const handler of this.endHandlers.splice(0)) handler();
    for (const handler of this.lostHandlers.splice(0)) handler();
  }

  stopKeepalives(): void {
    this.lease.release();
    for (const handler of this.endHandlers.splice(0)) handler();
  }
}

class EtcdLeadership implements Leadership {
  readonly nodeId: string;
  readonly lost: Promise<void>;
  private markLost!: () => void;
  private ended = false;

  constructor(
    private readonly coordinator: EtcdCoordinator,
    membership: EtcdMembership,
    private readonly key: string,
  ) {
    this.nodeId = membership.nodeId;
    this.lost = new Promise((resolve) => {
      this.markLost = () => {
        if (this.ended) return;
        this.ended = true;
        resolve();
      };
    });
    membership.onEnd(() => this.markLost());
  }

  /** Leadership ends when the election key goes (lease end, resign, an operator's delete). */
  watch(): void {
    const stop = this.coordinator.watchPrefix(
      'leadership',
      this.key,
      {
        snapshot: (kvs) => {
          if (kvs.length === 0) this.markLost();
        },
        put: () => {},
        delete: () => this.markLost(),
      },
      true,
    );
    void this.lost.then(stop);
  }

  async resign(): Promise<void> {
    if (this.ended) return;
    this.markLost();
    await this.coordinator.call('resign', async () => {
      await this.coordinator.deleteKey(this.key);
    });
  }
}

function lastPart(kv: IKeyValue): string {
  const key = kv.key.toString();
  return key.slice(key.lastIndexOf('/') + 1);
}

function memberOf(kv: IKeyValue): NodeInfo {
  const info = copyNodeInfo(JSON.parse(kv.value.toString()) as NodeInfo);
  info.joinedRevision = num(kv.mod_revision);
  return info;
}

function entryOf(kv: IKeyValue): RegionEntry {
  return {
    config: copyConfig(JSON.parse(kv.value.toString()) as RegionConfig),
    revision: num(kv.mod_revision),
  };
}
