/**
 * NodeRuntime: the plain-code side of one node — its ports (fabric, coordinator, clock, stores),
 * the router from region id to the serving PrimarySession, and the backup side of incoming
 * connections. The Node actor (node.ts) decides; this object does.
 *
 * Incoming connections: every connection a primary opens to this node carries one region. The
 * runtime hands it to a BackupRegion at once (so no message is lost), and the first message,
 * OpenBackup, asks `openStore`: only then is the region known. The runtime checks the region map
 * (read from the coordinator, not from a possibly late watch) — this node must be a backup of the
 * region at that epoch, or the open is refused with a typed error the primary sees — opens or
 * reuses the node's backup store for the region, and announces the open so the Node actor spawns a
 * RegionBackup actor for it.
 *
 * Disk faults and corruption (docs/failure-model.md): a store of this node that fail-stops on a
 * device error (DISK_FULL, DEVICE_IO: the disk is shared by every region of the node) or on a
 * corrupt segment (found by a scrub, a read, or a promotion, which refuses a corrupt copy) makes
 * the whole node fail-stop: `onFatal` tells its supervisor, which ends this incarnation as a crash
 * and starts a new one on the same disks. The new incarnation's roles are void (the controller
 * promotes another backup in place of a voided primary and takes the node back as a joiner), it
 * recovers what it synced, and every backup store it opens from disk is verified first
 * (`Store.verifyPersisted`): a corrupt one is reset to an empty backup, which its primary
 * re-syncs from scratch. A store that failed for any other reason (an invariant) is not reused by
 * the next open either: it is closed and opened again from disk.
 */
import type {
  BackupProgress,
  Coordinator,
  Membership,
  RegionConfig,
  SuspectReport,
} from '../../coordination/types.js';
import type { Clock } from '../clock/index.js';
import { type Store, StoreFailedError } from '../engine/store.js';
import {
  CorruptSegmentError,
  InvalidArgumentError,
  isDeviceError,
  StaleEpochError,
  TalosError,
  UnknownRegionError,
  UnreachableError,
} from '../errors.js';
import type { Connection, Fabric, Listener } from '../fabric/types.js';
import { defective, NO_PROBE, type Probe } from '../probe.js';
import { BackupRegion, ModeMismatchError } from '../replication/backup-region.js';
import type { ReplicationMode } from '../replication/messages.js';
import type { PrimarySession } from '../replication/primary-session.js';
import {
  assertPromotedTail,
  type PromotionReport,
  promoteToPrimary,
  resetAsEmptyBackup,
} from '../replication/promotion.js';
import type { PrimaryPorts } from './region-primary.js';
import type { CpuAccount, Role } from './work.js';

export interface NodeRuntimeOptions {
  nodeId: string;
  fabric: Fabric;
  fabricAddress: string;
  /** Where clients reach this node (its client endpoint), published with its membership. */
  clientAddress?: string;
  /** Where this node's /metrics answer, published with its membership. */
  metricsAddress?: string;
  coordinator: Coordinator;
  clock: Clock;
  leaseTtlMs: number;
  /**
   * Safety margin subtracted from the lease on this node's clock (default: a fifth of the TTL). It
   * must cover what the clock can lose against the coordinator's over one TTL: at least
   * `maxClockDrift · leaseTtlMs + maxClockJumpMs` (validateLeaseBounds), or InvalidArgumentError.
   */
  leaseMarginMs?: number;
  /**
   * The assumed bound on this node's clock rate against the coordinator's, as a fraction: it runs
   * between 1 − ρ and 1 + ρ times as fast (default 0.1).
   */
  maxClockDrift?: number;
  /** The assumed bound on time the clock loses (stands still, steps back) within one TTL (default 0). */
  maxClockJumpMs?: number;
  mode: ReplicationMode;
  logBufferCount: number;
  /** Opens (or recovers) this node's store of a region in a role. */
  openStore(regionId: string, role: Role): Promise<Store>;
  /** CPU clock in µs (process.cpuUsage in production). */
  cpuMicros?: () => number;
  /**
   * The node must fail-stop (a store hit a device error or a corrupt segment): called once per
   * runtime, outside the store call that failed. The supervisor ends this incarnation as a crash
   * and starts a new one (LocalCluster; a node process exits). Without it the node only logs.
   */
  onFatal?: (error: unknown) => void;
  /** Verify every backup store opened from disk before offering it (default true). */
  verifyBackupsOnOpen?: boolean;
  /**
   * Aborted when the node's process dies: it stops dead, as a crash would — the listener and every
   * connection go (peers see their writes fail), sessions stop serving, and the lease is neither
   * kept alive nor revoked: it runs out on its own, as a dead process's would (the owner closes the
   * coordinator client). Stores are not closed: what they did not sync is the device's to lose.
   * A real process just exits; the simulator's nodes are killed this way (SimulatedNode).
   */
  killed?: AbortSignal;
  /**
   * Awaited before each backup-side handler that persists (BackupRegionOptions.persistDelay): the
   * simulator's slow disk (SimulatedNode). Production passes none.
   */
  persistDelay?: () => Promise<void> | undefined;
  /**
   * The simulator's trace and defects (`no-lease-margin`; given on to this node's sessions, backup
   * regions and their stores; src/probe.ts). Default none.
   */
  probe?: Probe;
}

/** Store failures only a new incarnation repairs: the disk failed, or it returned corrupt bytes. */
export function nodeFatal(err: unknown): boolean {
  if (err instanceof StoreFailedError) return nodeFatal(err.cause);
  return isDeviceError(err) || err instanceof CorruptSegmentError;
}

export interface BackupOpened {
  regionId: string;
  epoch: number;
  region: BackupRegion;
  store: Store;
}

export class NodeRuntime implements PrimaryPorts {
  readonly nodeId: string;
  readonly mode: ReplicationMode;
  readonly logBufferCount: number;
  readonly cpu: CpuAccount | undefined;
  readonly cpuMicrosByRole: Record<Role, number> = { primary: 0, backup: 0 };
  /**
   * The backup role's share spent in replication message handlers, by message type (the rest of
   * the backup role's CPU is Build-Index backups' own flushes and compactions).
   */
  readonly backupCpuMicrosByMessage: Partial<Record<string, number>> = {};
  membership: Membership | undefined;
  private listener: Listener | undefined;
  private readonly serving = new Map<string, PrimarySession>();
  /** resyncedBytes of sessions that stopped serving. */
  private retiredResyncedBytes = 0;
  private readonly backupStores = new Map<string, Promise<Store>>();
  private readonly primaryStores = new Set<Store>();
  /** The region each primary store serves (for scrub's report). */
  private readonly primaryRegionOf = new WeakMap<Store, string>();
  private readonly backupRegions = new Set<BackupRegion>();
  /**
   * Per region, the backup connections of recent epochs, newest first: a promotion takes the tail
   * from the newest one whose primary took over (persisted its active prefix here).
   */
  private readonly regionHistory = new Map<string, BackupRegion[]>();
  /** Promotions this node went through (for tests and the demo). */
  readonly promotions: ({ regionId: string } & PromotionReport)[] = [];
  /**
   * Regions whose store this node reset to re-sync from scratch as a backup: a former primary's
   * store, or a backup store whose maps belong to an older lineage.
   */
  readonly demotions: string[] = [];
  /** Progress reports: regions with one in flight, and the latest position waiting behind it. */
  private readonly progressInFlight = new Set<string>();
  private readonly progressWaiting = new Map<string, BackupProgress>();
  private backupOpenedListener: ((opened: BackupOpened) => void) | undefined;
  private readonly connections = new Set<Connection>();
  /** Connections this node opened as a primary (to its backups). */
  private readonly outbound = new Set<Connection>();
  /** Fabric bytes of connections already closed. */
  private readonly retiredFabricBytes = { written: 0, sent: 0 };
  private stopped = false;
  /** The error this node fail-stopped on (onFatal was called), if any. */
  fatalError: unknown;
  /** Backup stores found corrupt when opened from disk and reset to be re-synced (region ids). */
  readonly corruptionsRepaired: string[] = [];
  /** Clock safety margin subtracted from the lease (default: a fifth of the TTL). */
  readonly leaseMarginMs: number;
  readonly probe: Probe;

  constructor(readonly options: NodeRuntimeOptions) {
    this.nodeId = options.nodeId;
    this.leaseMarginMs = validateLeaseBounds(options);
    this.mode = options.mode;
    this.logBufferCount = options.logBufferCount;
    this.probe = options.probe ?? NO_PROBE;
    options.killed?.addEventListener('abort', () => this.crash(), { once: true });
    const cpuMicros = options.cpuMicros;
    this.cpu =
      cpuMicros === undefined
        ? undefined
        : {
            now: cpuMicros,
            charge: (role, micros) => {
              this.cpuMicrosByRole[role] += micros;
            },
          };
  }

  /** Listens on the fabric, then joins the cluster (a member is reachable once it is listed). */
  async start(): Promise<void> {
    const o = this.options;
    this.listener = await o.fabric.listen(
      o.fabricAddress,
      {
        nodeId: o.nodeId,
        accept: () => (this.stopped ? `node ${o.nodeId} is stopping` : true),
      },
      (connection) => this.accept(connection),
    );
    // The listener's own address: with port 0 (any free port) it names the port chosen.
    this.membership = await o.coordinator.join(
      {
        nodeId: o.nodeId,
        fabricAddress: this.listener.address,
        ...(o.clientAddress === undefined ? {} : { clientAddress: o.clientAddress }),
        ...(o.metricsAddress === undefined ? {} : { metricsAddress: o.metricsAddress }),
      },
      o.leaseTtlMs,
    );
  }

  onBackupOpened(listener: ((opened: BackupOpened) => void) | undefined): void {
    this.backupOpenedListener = listener;
  }

  // ---- PrimaryPorts ----

  async openStore(regionId: string): Promise<Store> {
    let promoted = this.backupStores.has(regionId) ? await this.promote(regionId) : undefined;
    let store = await this.open(regionId, 'primary');
    if (store.role === 'backup') {
      // Made primary by a configuration this incarnation never held the region's buffers for (the
      // node restarted after the promotion was decided, before it acted on it): promote from what
      // it persisted — the old incarnation's buffers died with it (found by the simulator: the
      // region's open failed on every retry, and the region stayed unserved).
      promoted = await promoteToPrimary(store, { tail: [] });
      this.promotions.push({ regionId, ...promoted });
      store = await this.open(regionId, 'primary');
    }
    if (promoted !== undefined) {
      try {
        assertPromotedTail(store, promoted);
      } catch (err) {
        this.fail(err);
        await store.close().catch(() => {});
        throw err;
      }
    }
    this.primaryStores.add(store);
    this.primaryRegionOf.set(store, regionId);
    return store;
  }

  async connect(backupNodeId: string, _regionId: string, epoch: number): Promise<Connection> {
    const members = await this.options.coordinator.members();
    const member = members.find((m) => m.nodeId === backupNodeId);
    if (member === undefined) throw new UnreachableError(`node ${backupNodeId} (not a member)`);
    const connection = await this.options.fabric.connect(member.fabricAddress, {
      nodeId: this.nodeId,
      epoch,
    });
    this.track(connection);
    this.outbound.add(connection);
    connection.onClose(() => this.outbound.delete(connection));
    return connection;
  }

  setServing(regionId: string, session: PrimarySession | undefined): void {
    const previous = this.serving.get(regionId);
    if (previous !== undefined && previous !== session) this.retiredResyncedBytes += previous.resyncedBytes;
    if (session === undefined) this.serving.delete(regionId);
    else this.serving.set(regionId, session);
  }

  /** Bytes this node's primaries sent to re-sync backups (at opens and by online catch-ups). */
  resyncedBytes(): number {
    let total = this.retiredResyncedBytes;
    for (const session of this.serving.values()) total += session.resyncedBytes;
    return total;
  }

  reportSuspect(report: SuspectReport): Promise<void> {
    return this.options.coordinator.reportSuspect(report);
  }

  /**
   * Self-fencing (PROTOCOL §6): the lease is valid until the last acknowledged keepalive's send
   * time + TTL − margin, all on this node's clock — whatever the client library has or has not
   * noticed yet (DESIGN §8). With the clock within its bounds (validateLeaseBounds) that is never
   * later than the coordinator's own expiry. Called at the moment of acting (each acknowledgement,
   * each read's answer), never cached: a node stalled between a check and its act checks again.
   */
  readonly leaseValid = (): boolean => {
    const membership = this.membership;
    if (membership === undefined || this.stopped) return false;
    const margin = defective(this.probe, 'no-lease-margin') ? 0 : this.leaseMarginMs;
    return this.options.clock.now() < membership.validUntilMs(margin);
  };

  // ---- router ----

  /** The session serving `regionId` on this node, if any. */
  session(regionId: string): PrimarySession | undefined {
    return this.serving.get(regionId);
  }

  servingRegions(): string[] {
    return [...this.serving.keys()];
  }

  /** The node's backup stores by region (open ones only). */
  async backupStoresByRegion(): Promise<Map<string, Store>> {
    const out = new Map<string, Store>();
    for (const [regionId, store] of this.backupStores) out.set(regionId, await store);
    return out;
  }

  primaryStoreList(): Store[] {
    return [...this.primaryStores].filter((s) => !s.isClosed);
  }

  backupRegionList(): BackupRegion[] {
    return [...this.backupRegions];
  }

  /** Open connections this node's primaries opened to `backupNodeId` (fault injection, tools). */
  connectionsTo(backupNodeId: string): Connection[] {
    return [...this.outbound].filter((c) => c.peerNodeId === backupNodeId && !c.closed);
  }

  /** Fabric bytes this node put on the wire (one-sided writes + messages), over its connections. */
  fabricBytes(): { written: number; sent: number } {
    let { written, sent } = this.retiredFabricBytes;
    for (const c of this.connections) {
      const s = c.stats();
      written += s.bytesWritten;
      sent += s.bytesSent;
    }
    return { written, sent };
  }

  /** Closes the listener, every connection and every store, and leaves the cluster. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.listener?.close();
    for (const connection of this.connections) connection.close();
    for (const store of this.primaryStores) await store.close().catch(() => {});
    for (const store of this.backupStores.values()) await (await store.catch(() => undefined))?.close();
    await this.membership?.leave().catch(() => {});
  }

  /** Every open connection of this node, both directions. */
  connectionList(): Connection[] {
    return [...this.connections].filter((c) => !c.closed);
  }

  /** The process died (`options.killed`). */
  private crash(): void {
    this.stopped = true;
    this.listener?.close();
    for (const session of this.serving.values()) session.stopServing();
    this.serving.clear();
    for (const connection of this.connections) connection.close();
  }

  /**
   * Promotion (PROTOCOL §6): this node was a backup of `regionId` and the new configuration makes
   * it the primary. Fence the old epoch's buffers (the old primary can no longer place a byte),
   * let the queued messages finish, then hand the buffers to the store, which keeps the longest
   * valid prefix and becomes a primary store (promoteToPrimary, src/replication/promotion.ts); the caller reopens it.
   */
  private async promote(regionId: string): Promise<PromotionReport> {
    this.probe.trace?.({ kind: 'phase', phase: 'promotion', node: this.nodeId, regionId });
    const store = await this.backupStores.get(regionId)!;
    const history = this.regionHistory.get(regionId) ?? [];
    for (const region of history) {
      region.fence(`region ${regionId}: this node is promoted`);
      await region.idle();
    }
    // An epoch whose primary never persisted its active prefix here never served (it serves only
    // once every backup did): writes acknowledged before it are only in an older epoch's buffers.
    const region = history.find((r) => r.tookOver) ?? history[0];
    const report = await promoteToPrimary(store, { tail: region?.tailCandidates() ?? [] });
    this.backupStores.delete(regionId);
    this.regionHistory.delete(regionId);
    this.promotions.push({ regionId, ...report });
    return report;
  }

  // ---- backup side ----

  private accept(connection: Connection): void {
    this.track(connection);
    const region: BackupRegion = new BackupRegion(connection, {
      nodeId: this.nodeId,
      openStore: async (regionId, _segmentBytes, mode, acceptedOwners) => {
        if (mode !== this.mode) {
          throw new ModeMismatchError(
            `node ${this.nodeId} runs ${this.mode} mode, primary asked for ${mode}`,
          );
        }
        const store = await this.openBackupStore(regionId, region.epoch, acceptedOwners);
        this.remember(regionId, region);
        queueMicrotask(() => this.backupOpenedListener?.({ regionId, epoch: region.epoch, region, store }));
        return store;
      },
      ...(this.options.persistDelay === undefined ? {} : { persistDelay: this.options.persistDelay }),
      onPersisted: (regionId, epoch, seq, usedBytes) =>
        this.reportProgress({ regionId, nodeId: this.nodeId, epoch, seq, usedBytes }),
      cpuMicros: this.options.cpuMicros,
      onWork: (kind, micros) => {
        this.cpuMicrosByRole.backup += micros;
        this.backupCpuMicrosByMessage[kind] = (this.backupCpuMicrosByMessage[kind] ?? 0) + micros;
      },
      probe: this.probe,
    });
    this.backupRegions.add(region);
    region.onClose(() => this.backupRegions.delete(region));
  }

  /**
   * Publishes a backup position (PROTOCOL §6, promotion ranking): at most one report per region in
   * flight; while one is, only the latest position waits. Best effort — a lost report only makes
   * the controller fall back to the configuration's order.
   */
  private reportProgress(progress: BackupProgress): void {
    const waiting = this.progressWaiting.has(progress.regionId);
    this.progressWaiting.set(progress.regionId, progress);
    if (waiting || this.progressInFlight.has(progress.regionId)) return;
    const send = (): void => {
      const next = this.progressWaiting.get(progress.regionId);
      if (next === undefined || this.stopped) {
        this.progressInFlight.delete(progress.regionId);
        return;
      }
      this.progressWaiting.delete(progress.regionId);
      this.progressInFlight.add(progress.regionId);
      void this.options.coordinator
        .reportProgress(next)
        .catch(() => {})
        .finally(() => {
          this.progressInFlight.delete(progress.regionId);
          if (this.progressWaiting.has(progress.regionId)) send();
        });
    };
    send();
  }

  /**
   * Keeps `region` in its region's history (newest epoch first), dropping what no promotion can
   * need: everything older than the newest region that took over, beyond a few entries.
   */
  private remember(regionId: string, region: BackupRegion): void {
    // Newest first; a re-open at the same epoch (a retried open) goes before the earlier one.
    const history = [region, ...(this.regionHistory.get(regionId) ?? [])].sort((a, b) => b.epoch - a.epoch);
    const tookOver = history.findIndex((r) => r.tookOver);
    const keep = tookOver === -1 ? history.length : tookOver + 1;
    this.regionHistory.set(regionId, history.slice(0, Math.min(keep, 4)));
  }

  private async openBackupStore(
    regionId: string,
    epoch: number,
    acceptedOwners: readonly string[],
  ): Promise<Store> {
    if (this.stopped) throw new TalosError('NODE_STOPPING', `node ${this.nodeId} is stopping`);
    const entry = await this.options.coordinator.getRegion(regionId);
    if (entry === undefined) throw new UnknownRegionError(`region ${regionId}`);
    const config: RegionConfig = entry.config;
    if (epoch < config.epoch) throw new StaleEpochError(regionId, epoch, config.epoch);
    if (entry.revision < (this.membership?.joinedRevision ?? 0)) {
      // Written for an earlier incarnation of this node: its buffers are gone; wait for the
      // controller's next configuration (§6).
      throw new TalosError(
        'STALE_INCARNATION',
        `region ${regionId} epoch ${config.epoch} was configured before node ${this.nodeId} restarted`,
      );
    }
    if (!config.backups.includes(this.nodeId) && !(config.joining ?? []).includes(this.nodeId)) {
      throw new UnknownRegionError(`region ${regionId} on node ${this.nodeId} (not one of its backups)`);
    }
    let store = this.backupStores.get(regionId);
    const cached = store === undefined ? undefined : await store.catch(() => undefined);
    if (cached !== undefined && (cached.failure !== undefined || cached.isClosed)) {
      // A store that fail-stopped is never offered again: it would refuse this open and every
      // later one, and the region would stay a copy short. Closed, then opened again from disk
      // (verified there; a corrupt copy is reset and re-synced).
      if (this.backupStores.get(regionId) === store) this.backupStores.delete(regionId);
      await cached.close().catch(() => {});
      store = this.backupStores.get(regionId);
    }
    if (store === undefined) {
      store = this.openAsBackup(regionId);
      this.backupStores.set(regionId, store);
      store.catch(() => this.backupStores.delete(regionId));
    }
    const opened = await store;
    const current = this.backupStores.get(regionId);
    if (current !== undefined && current !== store) return current; // reset meanwhile by another open
    const owner = opened.replica.mapOwner();
    if (owner === undefined || acceptedOwners.includes(owner)) return opened;
    // Maps keyed by a primary of an older lineage (this node was away across more than one
    // promotion): no rebase can reconcile them, so the store restarts empty and the primary
    // re-syncs it from scratch. It holds nothing the configuration needs — an acknowledging backup
    // of the current lineage is always keyed by the primary or the node it was promoted from.
    const reset = (async () => {
      if (!opened.isClosed) await resetAsEmptyBackup(opened);
      this.demotions.push(regionId);
      return this.open(regionId, 'backup');
    })();
    this.backupStores.set(regionId, reset);
    reset.catch(() => this.backupStores.delete(regionId));
    return reset;
  }

  /**
   * Opens this node's store of `regionId` for a backup role. A store that recovers as a primary is
   * what this node kept from before another node was promoted: it is reset to an empty backup and
   * re-synced from scratch (resetAsEmptyBackup, src/replication/promotion.ts).
   */
  private async openAsBackup(regionId: string): Promise<Store> {
    const store = await this.open(regionId, 'backup');
    if (store.role === 'backup') {
      // A copy opened from disk is checked before anyone relies on it (a flipped bit in a
      // persisted segment would otherwise be promoted or rebased upon): a corrupt one is reset.
      const corrupt = this.options.verifyBackupsOnOpen === false ? undefined : store.verifyPersisted();
      if (corrupt === undefined) return store;
      await resetAsEmptyBackup(store);
      this.corruptionsRepaired.push(regionId);
      return this.open(regionId, 'backup');
    }
    await resetAsEmptyBackup(store);
    this.demotions.push(regionId);
    return this.open(regionId, 'backup');
  }

  /**
   * Opens a store through the node's port and watches it: a device error or a corrupt segment,
   * whether it fails the open or later fail-stops the store, fail-stops the node (`fail`).
   */
  private async open(regionId: string, role: Role): Promise<Store> {
    let store: Store;
    try {
      store = await this.options.openStore(regionId, role);
    } catch (err) {
      if (nodeFatal(err)) this.fail(err);
      throw err;
    }
    store.hooks.on('failed', ({ error }) => {
      if (nodeFatal(error)) this.fail(error);
    });
    return store;
  }

  /** This node must fail-stop: tells the supervisor once, after the failing call unwound. */
  private fail(error: unknown): void {
    if (this.fatalError !== undefined || this.stopped) return;
    this.fatalError = error;
    const onFatal = this.options.onFatal;
    if (onFatal !== undefined) queueMicrotask(() => onFatal(error));
  }

  /**
   * A scrub pass (failure detection for bit rot): verifies every open store of this node, backup
   * and primary alike; a corrupt one fail-stops (and with it the node, see `open`). Returns the
   * regions found corrupt. (Primaries too: a flip that struck a backup's copy while it was being
   * promoted, after the promotion verified it, sits in the new primary's store — found by the
   * simulator, overlapping seed 297259283, as a corrupt index footer no read had touched yet.)
   */
  async scrub(): Promise<string[]> {
    const corrupt: string[] = [];
    const stores: [string, Store][] = [...(await this.backupStoresByRegion())];
    for (const store of this.primaryStoreList()) stores.push([this.primaryRegionOf.get(store) ?? '?', store]);
    for (const [regionId, store] of stores) {
      if (store.isClosed || store.failure !== undefined) continue;
      try {
        store.scrub();
      } catch (err) {
        if (err instanceof CorruptSegmentError) corrupt.push(regionId);
        else throw err;
      }
    }
    return corrupt;
  }

  private track(connection: Connection): void {
    this.connections.add(connection);
    connection.onClose(() => {
      if (!this.connections.delete(connection)) return;
      const s = connection.stats();
      this.retiredFabricBytes.written += s.bytesWritten;
      this.retiredFabricBytes.sent += s.bytesSent;
    });
  }
}

/**
 * The lease margin a node needs, checked against the clock bounds it is configured with; returns
 * the margin (default: a fifth of the TTL).
 *
 * Why `margin ≥ ρ · TTL + J` (docs/failure-model.md, "Clocks"): the node reads c_s on its clock,
 * then sends a keepalive, which the coordinator receives at true time t_r ≥ t_s and extends the
 * lease to t_r + TTL ≥ t_s + TTL. The node acts at true time t only while c(t) < c_s + TTL − m.
 * Its clock runs at least (1 − ρ) as fast as true time and loses at most J ms within a TTL, so
 * c(t) − c_s ≥ (1 − ρ)(t − t_s) − J, and acting implies t − t_s < (TTL − m + J) / (1 − ρ). That is
 * at most TTL — the coordinator still holds the lease — exactly when m ≥ ρ · TTL + J. A clock that
 * runs fast or jumps ahead only makes the node fence itself early (a liveness cost, never unsafe).
 */
export function validateLeaseBounds(options: {
  leaseTtlMs: number;
  leaseMarginMs?: number | undefined;
  maxClockDrift?: number | undefined;
  maxClockJumpMs?: number | undefined;
}): number {
  const ttl = options.leaseTtlMs;
  const margin = options.leaseMarginMs ?? Math.max(1, Math.floor(ttl / 5));
  const drift = options.maxClockDrift ?? 0.1;
  const jump = options.maxClockJumpMs ?? 0;
  if (!Number.isFinite(drift) || drift < 0 || drift >= 1)
    throw new InvalidArgumentError(`maxClockDrift: a fraction in [0, 1), not ${drift}`);
  if (!Number.isFinite(jump) || jump < 0)
    throw new InvalidArgumentError(`maxClockJumpMs: a finite number ≥ 0, not ${jump}`);
  if (!Number.isFinite(margin) || margin < 0 || margin >= ttl)
    throw new InvalidArgumentError(`leaseMarginMs: in [0, leaseTtlMs = ${ttl}), not ${margin}`);
  const needed = drift * ttl + jump;
  if (margin < needed) {
    throw new InvalidArgumentError(
      `leaseMarginMs ${margin} does not cover the clock bounds: a clock ${drift * 100} % slow loses ${drift * ttl} ms over the ${ttl} ms lease, plus ${jump} ms of jumps, so the margin must be at least ${needed} ms`,
    );
  }
  return margin;
}
