/**
 * createLocalCluster: a whole Talos cluster in one process — N nodes, each a Node actor tree on the
 * shared MemoryFabric and EmbeddedCoordinator, with real files (dataDir) or simulated devices.
 * The same actors and ports run in the multi-process deployment; only the port implementations
 * differ.
 *
 * Start: every node listens and joins; the elected controller creates the region map once all
 * nodes are members; each node starts the primary actors the map gives it, which open their
 * backups. `createLocalCluster` resolves when every region is served.
 */

import { join } from 'node:path';
import { cpuUsage } from 'node:process';
import { type Actor, createActor } from 'xstate';
import { EmbeddedCoordinator, type EmbeddedCoordinatorClient } from '../../coordination/embedded.js';
import type { Coordinator, RegionConfig } from '../../coordination/types.js';
import type { RegionSpec } from '../actors/controller.js';
import { LeaseLostError, nodeMachine, whenStopped } from '../actors/node.js';
import { type NodeRuntime, validateLeaseBounds } from '../actors/node-runtime.js';
import type { Role } from '../actors/work.js';
import { assert } from '../assert.js';
import { type Clock, SystemClock } from '../clock/index.js';
import { NodeClock } from '../clock/node-clock.js';
import { type Device, emptyIoStats, type IoStats } from '../engine/device.js';
import { FileDevice } from '../engine/file-device.js';
import { SimDevice } from '../engine/sim-device.js';
import { Store, type StoreOptions } from '../engine/store.js';
import { classifyDeviceError, InvalidArgumentError, TalosError } from '../errors.js';
import { MemoryFabric } from '../fabric/memory.js';
import type { Probe } from '../probe.js';
import type { ReplicationMode } from '../replication/messages.js';
import type { PrimarySession } from '../replication/primary-session.js';
import { LocalClient, type LocalClientOptions, type RegionSession } from './client.js';
import { type DeviceOp, IncarnationDevice } from './incarnation-device.js';
import { byMinKey, hexRegionSpecs, validateRegionSpecs } from './regions.js';
import { SimulatedNode } from './simulated-node.js';

export type ClusterStoreOptions = Pick<
  StoreOptions,
  | 'segmentBytes'
  | 'l0Bytes'
  | 'growthFactor'
  | 'maxLevels'
  | 'syncPolicy'
  | 'maxKeyBytes'
  | 'maxValueBytes'
  | 'blockCacheBytes'
>;

export interface LocalClusterOptions {
  /** Number of nodes (default 3). */
  nodes?: number;
  /** Region count (split over hex key prefixes, see hexRegionSpecs) or explicit specs (default = nodes). */
  regions?: number | RegionSpec[];
  /** Copies per region, primary included (default min(3, nodes)). */
  replicas?: number;
  /** 'send-index' (ship the primary's index) or 'build-index' (backups compact themselves). */
  mode?: ReplicationMode;
  /** Real files under `<dataDir>/<nodeId>/<regionId>`; in-memory simulated devices when omitted. */
  dataDir?: string;
  store?: ClusterStoreOptions;
  /** Log buffers per backup per region (K, default 4). */
  logBufferCount?: number;
  /**
   * Each node's stores start `i` segments into their devices (node index i), so replicas' layouts
   * differ and pointer translation and rebases are exercised (the simulator sets it). Default false.
   */
  skewLayouts?: boolean;
  leaseTtlMs?: number;
  /** Each node's lease margin and the clock bounds it must cover (NodeRuntimeOptions; validated). */
  leaseMarginMs?: number;
  maxClockDrift?: number;
  maxClockJumpMs?: number;
  /** The cluster's (and coordinator's) clock: true time. */
  clock?: Clock;
  /**
   * Each node's own clock (default: `clock`): its runtime, actors and coordinator client (keepalives,
   * lease validity) run on it. The simulator gives every node a NodeClock over the world clock, so
   * clock drift, jumps and stalls can be injected (`setClockRate`, `jumpClock`, `stallNode`).
   */
  nodeClock?: (nodeId: string) => Clock;
  /** How long createLocalCluster waits for every region to be served (default 30 s). */
  readyTimeoutMs?: number;
  /** Process CPU clock in µs for per-role accounting (default process.cpuUsage). */
  cpuMicros?: () => number;
  /**
   * Runs the memory fabric's delivery steps and the simulated devices' I/O completions (the
   * simulator orders them, so syncs complete interleaved with messages and timers in seeded order;
   * default: microtasks).
   */
  fabricScheduler?: (step: () => void) => void;
  /**
   * The simulator's trace and defects (src/probe.ts), given to the fabric, the coordinator, every
   * node and every store this cluster opens; one per schedule. Default none.
   */
  probe?: Probe;
}

export interface RoleStats {
  regions: string[];
  io: IoStats;
  /** Device bytes read + written, all categories. */
  ioBytes: number;
  cpuMs: number;
}

export interface NodeStats {
  nodeId: string;
  primary: RoleStats;
  backup: RoleStats;
  fabric: { writtenBytes: number; sentBytes: number };
}

export interface ClusterStats {
  mode: ReplicationMode;
  nodes: NodeStats[];
  primary: { ioBytes: number; cpuMs: number; io: IoStats };
  backup: { ioBytes: number; cpuMs: number; io: IoStats };
  fabric: { writtenBytes: number; sentBytes: number };
}

interface ClusterNode {
  nodeId: string;
  /** The incarnation's runtime with its fault ports (crash, pause, slow persists). */
  sim: SimulatedNode;
  runtime: NodeRuntime;
  actor: Actor<typeof nodeMachine>;
  coordinator: EmbeddedCoordinatorClient;
}

const defaultCpuMicros = (): number => {
  const u = cpuUsage();
  return u.user + u.system;
};

function addIo(into: IoStats, io: IoStats): void {
  for (const k of Object.keys(io.readBytes) as (keyof IoStats['readBytes'])[]) {
    into.readBytes[k] += io.readBytes[k];
    into.writtenBytes[k] += io.writtenBytes[k];
  }
  into.readCount += io.readCount;
  into.writeCount += io.writeCount;
  into.syncCount += io.syncCount;
}

function ioBytes(io: IoStats): number {
  let total = 0;
  for (const k of Object.keys(io.readBytes) as (keyof IoStats['readBytes'])[]) {
    total += io.readBytes[k] + io.writtenBytes[k];
  }
  return total;
}

export class LocalCluster {
  readonly mode: ReplicationMode;
  readonly clock: Clock;
  /** Every node's lease TTL. */
  readonly leaseTtlMs: number;
  readonly fabric: MemoryFabric;
  readonly coordinator: EmbeddedCoordinator;
  readonly regionSpecs: RegionSpec[];
  private readonly nodes = new Map<string, ClusterNode>();
  /** The disks: one device per node and region, kept across a node's incarnations. */
  private readonly devices = new Map<string, Device>();
  /** The current incarnation's views of its node's devices (cut when the node is killed). */
  private readonly views = new Map<string, IncarnationDevice[]>();
  private regionMap: RegionConfig[] = [];
  private unwatch: (() => void) | undefined;
  private readonly watcher: Coordinator;
  private closed = false;
  private readonly dead = new Set<string>();
  /** Armed crash points (crashWhen), per node. */
  private readonly crashTriggers = new Map<
    string,
    {
      when: (op: DeviceOp & { regionId: string; role: Role }) => boolean;
      crashed: (killed: Promise<void>) => void;
    }
  >();
  /** Nodes the supervisor started again after they lost their lease (in order). */
  readonly restarts: string[] = [];
  private readonly restartListeners = new Set<(nodeId: string, reason: string) => void>();
  /**
   * Stalled nodes → their stall queue: everything that needed the node's thread meanwhile (timers
   * come due, fabric messages and completions, coordinator deliveries and calls, client requests),
   * in arrival order.
   */
  private readonly stalls = new Map<string, (() => void)[]>();
  /** Nodes whose disk fails (failDisk): the errno and the operations it fails, per node. */
  private readonly diskFaults = new Map<string, { errno: string; ops: ReadonlySet<DeviceOp['kind']> }>();
  /** Nodes that fail-stopped on a store failure (a device error, corruption), with the error, in order. */
  readonly failStops: { nodeId: string; error: unknown }[] = [];
  /** Bits flipped by flipBit, described, in order. */
  readonly bitFlips: string[] = [];
  /** Restarts under way (restartNode), so two callers share one. */
  private readonly restarting = new Map<string, Promise<void>>();

  constructor(
    private readonly options: Required<Pick<LocalClusterOptions, 'nodes' | 'replicas' | 'mode'>> &
      LocalClusterOptions,
  ) {
    this.mode = options.mode;
    this.leaseTtlMs = options.leaseTtlMs ?? 10_000;
    validateLeaseBounds({ ...options, leaseTtlMs: this.leaseTtlMs });
    this.clock = options.clock ?? new SystemClock();
    this.fabric = new MemoryFabric({
      clock: this.clock,
      ...(options.fabricScheduler === undefined ? {} : { scheduler: options.fabricScheduler }),
      ...(options.probe === undefined ? {} : { probe: options.probe }),
    });
    this.coordinator = new EmbeddedCoordinator({
      clock: this.clock,
      ...(options.probe === undefined ? {} : { probe: options.probe }),
    });
    const regions = options.regions ?? options.nodes;
    this.regionSpecs = typeof regions === 'number' ? hexRegionSpecs(regions) : regions;
    validateRegionSpecs(this.regionSpecs);
    this.watcher = this.coordinator.client({ name: 'cluster' });
  }

  /** Starts every node and waits until every region is served. */
  async start(): Promise<void> {
    this.unwatch = this.watcher.watchRegions((event) => {
      if (event.kind === 'put') {
        this.regionMap = [
          ...this.regionMap.filter((c) => c.regionId !== event.entry.config.regionId),
          event.entry.config,
        ].sort(byMinKey);
      } else {
        this.regionMap = this.regionMap.filter((c) => c.regionId !== event.regionId);
      }
    });
    for (let i = 0; i < this.options.nodes; i++) this.startNode(`n${i + 1}`);
    await this.waitUntilServed(this.options.readyTimeoutMs ?? 30_000);
  }

  nodeIds(): string[] {
    return [...this.nodes.keys()];
  }

  /** The region map as this cluster's watcher last saw it, sorted by key. */
  regions(): RegionConfig[] {
    return this.regionMap.map((c) => ({ ...c, backups: [...c.backups] }));
  }

  /** The session serving `regionId` on `nodeId`, if that node serves it. */
  session(nodeId: string, regionId: string): PrimarySession | undefined {
    return this.nodes.get(nodeId)?.runtime.session(regionId);
  }

  /** The node runtime (stores, sessions, counters) of `nodeId`; for tests and tools. */
  runtime(nodeId: string): NodeRuntime {
    const node = this.nodes.get(nodeId);
    if (node === undefined) throw new InvalidArgumentError(`no node ${nodeId}`);
    return node.runtime;
  }

  /** The Node actor of `nodeId` (inspect its snapshot; do not send it events). */
  nodeActor(nodeId: string): Actor<typeof nodeMachine> {
    const node = this.nodes.get(nodeId);
    if (node === undefined) throw new InvalidArgumentError(`no node ${nodeId}`);
    return node.actor;
  }

  client(options: LocalClientOptions = {}): LocalClient {
    return new LocalClient(
      {
        regions: () => this.regionMap,
        session: (nodeId, regionId) => this.clientSession(nodeId, regionId),
        clock: this.clock,
      },
      options,
    );
  }

  /**
   * Flushes every serving primary's L0 (each flush starts with a tail sync that reaches every
   * backup), then settles: afterwards every acknowledged write is in a level on its primary and, in
   * Build-Index mode, indexed by every backup.
   */
  async flush(): Promise<void> {
    for (const node of this.nodes.values()) {
      for (const regionId of node.runtime.servingRegions())
        await node.runtime.session(regionId)?.store.flush();
    }
    await this.settle();
  }

  /** Waits until every compaction commit sent so far was installed on every backup, and backups are idle. */
  async settle(): Promise<void> {
    for (const node of this.nodes.values()) {
      for (const regionId of node.runtime.servingRegions()) await node.runtime.session(regionId)?.settle();
    }
    for (const node of this.nodes.values()) {
      for (const region of node.runtime.backupRegionList()) await region.idle();
    }
  }

  async stats(): Promise<ClusterStats> {
    const nodes: NodeStats[] = [];
    const totals = {
      primary: { ioBytes: 0, cpuMs: 0, io: emptyIoStats() },
      backup: { ioBytes: 0, cpuMs: 0, io: emptyIoStats() },
      fabric: { writtenBytes: 0, sentBytes: 0 },
    };
    for (const node of this.nodes.values()) {
      const rt = node.runtime;
      const role = (r: Role, stores: [string, Store][]): RoleStats => {
        const io = emptyIoStats();
        for (const [, store] of stores) addIo(io, store.stats().io);
        return {
          regions: stores.map(([id]) => id),
          io,
          ioBytes: ioBytes(io),
          cpuMs: rt.cpuMicrosByRole[r] / 1000,
        };
      };
      const primaryStores = rt.servingRegions().map((id) => [id, rt.session(id)!.store] as [string, Store]);
      const backupStores = [...(await rt.backupStoresByRegion())];
      const fabric = rt.fabricBytes();
      const stats: NodeStats = {
        nodeId: node.nodeId,
        primary: role('primary', primaryStores),
        backup: role('backup', backupStores),
        fabric: { writtenBytes: fabric.written, sentBytes: fabric.sent },
      };
      nodes.push(stats);
      for (const r of ['primary', 'backup'] as const) {
        totals[r].ioBytes += stats[r].ioBytes;
        totals[r].cpuMs += stats[r].cpuMs;
        addIo(totals[r].io, stats[r].io);
      }
      totals.fabric.writtenBytes += fabric.written;
      totals.fabric.sentBytes += fabric.sent;
    }
    return { mode: this.mode, nodes, ...totals };
  }

  /**
   * Kills a node, as a crash would (failure injection, PROTOCOL §6): the fabric cuts it off (its
   * peers' writes to it fail at once), its actors stop without any goodbye, its sessions stop
   * serving, and its lease is left to run out on the clock. The rest of the cluster notices through
   * failed writes (a primary reports the backup as suspect) or the lease, and reconfigures.
   */
  /**
   * Calls `listener` whenever the supervisor restarts a node (on a lost lease, or after the node
   * fail-stopped on a disk error or corruption; `reason` says which); returns the unsubscribe.
   */
  onRestart(listener: (nodeId: string, reason: string) => void): () => void {
    this.restartListeners.add(listener);
    return () => this.restartListeners.delete(listener);
  }

  async killNode(nodeId: string): Promise<void> {
    const node = this.nodes.get(nodeId);
    if (node === undefined) throw new InvalidArgumentError(`no node ${nodeId}`);
    if (this.dead.has(nodeId)) return;
    this.dead.add(nodeId);
    this.fabric.partition(nodeId, true);
    node.sim.crash();
    node.actor.stop();
    await node.coordinator.close();
    // The process is gone: nothing it had in flight touches its disks any more. A simulated disk
    // also loses what was never synced (as on power loss); a real file keeps the page cache's view.
    for (const view of this.views.get(nodeId) ?? []) view.cut();
    this.views.delete(nodeId);
    for (const [key, device] of this.devices) {
      if (!key.startsWith(`${nodeId}/`)) continue;
      if (device instanceof SimDevice) device.crash();
      else {
        this.devices.delete(key);
        await device.close();
      }
    }
  }

  /**
   * Crash-point injection: kills `nodeId` at the first device call of its current incarnation for
   * which `when` returns true — before that call takes effect (a write, a sync, a manifest write of
   * one of its stores, with the store's region and role). Resolves once the node is dead.
   */
  crashWhen(
    nodeId: string,
    when: (op: DeviceOp & { regionId: string; role: Role }) => boolean,
  ): Promise<void> {
    if (!this.nodes.has(nodeId)) throw new InvalidArgumentError(`no node ${nodeId}`);
    return new Promise((resolve, reject) => {
      this.crashTriggers.set(nodeId, {
        when,
        crashed: (killed) => {
          killed.then(resolve, reject);
        },
      });
    });
  }

  /**
   * Restarts a killed node with its disks, once its old lease ran out: a new incarnation recovers
   * its stores (manifests, persisted segment maps) when its regions are opened, joins under a new
   * lease, and the controller gives it back copies of under-replicated regions, which their
   * primaries re-sync (from where it is; from scratch where it was the primary before).
   */
  async restartNode(
    nodeId: string,
    timeoutMs = 30_000,
    options: { afterLeaseExpiry?: boolean } = {},
  ): Promise<void> {
    const under = this.restarting.get(nodeId);
    if (under !== undefined) return under;
    if (!this.dead.has(nodeId)) throw new InvalidArgumentError(`node ${nodeId} is not dead`);
    const restart = this.restartDead(nodeId, timeoutMs, options).finally(() =>
      this.restarting.delete(nodeId),
    );
    this.restarting.set(nodeId, restart);
    return restart;
  }

  private async restartDead(
    nodeId: string,
    timeoutMs: number,
    options: { afterLeaseExpiry?: boolean },
  ): Promise<void> {
    // By default the new incarnation joins once the old one's lease ran out (as a supervisor with
    // a restart delay would). With `afterLeaseExpiry: false` it joins at once, while the old lease
    // still names the node: its roles are then void by incarnation (NodeInfo.joinedRevision), so
    // it never resumes an epoch with a log that lost its unsynced tail.
    const deadline = this.clock.now() + timeoutMs;
    while (
      options.afterLeaseExpiry !== false &&
      (await this.watcher.members()).some((m) => m.nodeId === nodeId)
    ) {
      if (this.clock.now() > deadline)
        throw new TalosError('TIMEOUT', `node ${nodeId}'s old lease did not run out`);
      await new Promise<void>((resolve) => this.clock.setTimeout(resolve, 10));
    }
    this.dead.delete(nodeId);
    this.fabric.partition(nodeId, false);
    this.startNode(nodeId);
  }

  /**
   * Pauses a node for `ms` (a stop-the-world GC, a stopped VM — the stale-primary case, PROTOCOL
   * §6): it sends no keepalives and hears nothing from the coordinator, its fabric traffic is held
   * in both directions (writes it issued
   * land only when it resumes) and it accepts no connection. If the pause outlasts its lease the
   * controller moves its regions on; when it resumes it finds itself fenced: its lease check stops
   * it acknowledging or serving, and its late one-sided writes hit revoked buffers. Resolves when
   * the pause ends.
   */
  async pauseNode(nodeId: string, ms: number): Promise<void> {
    const node = this.nodes.get(nodeId);
    if (node === undefined || this.dead.has(nodeId)) throw new InvalidArgumentError(`no live node ${nodeId}`);
    node.coordinator.faults.partition(true); // no keepalives, no watch deliveries, no calls
    node.sim.setPaused(true);
    const held = node.runtime.connectionList();
    for (const connection of held) this.fabric.dropTraffic(connection, true);
    await new Promise<void>((resolve) => this.clock.setTimeout(resolve, ms));
    for (const connection of held) if (!connection.closed) this.fabric.dropTraffic(connection, false);
    node.sim.setPaused(false);
    node.coordinator.faults.partition(false);
  }

  /**
   * A thread stall of a node for `ms` (failure injection: a loaded disk blocking the event loop, a
   * long GC). Nothing of the node runs meanwhile — its timers (keepalives included) are held on its
   * clock, coordinator deliveries and calls wait, fabric messages to it, completions of its writes
   * and new connections to it wait (one-sided writes into its memory still land: the NIC works),
   * client requests to it wait — while true time and the other nodes run on. All of it goes into
   * one queue in arrival order, and when the stall ends the node works through it late, in a
   * burst: one item per scheduler step (the simulator's fabric steps, so what each item sets off
   * runs before the next, as an event loop would), arrivals during the burst joining the queue's
   * end, until it is empty. A client request that arrived before the coordinator ended the lease
   * is therefore handled before the node hears of that end: only its checks at the moment of
   * acting (PROTOCOL §6), on its own clock, stop it acting on a lease that is gone. Unlike
   * `pauseNode` nothing is dropped or refused. Needs per-node clocks (`nodeClock`, a NodeClock);
   * resolves when the queue is worked off.
   */
  async stallNode(nodeId: string, ms: number): Promise<void> {
    const node = this.liveNode(nodeId);
    const clock = this.nodeClockOf(nodeId);
    if (this.stalls.has(nodeId)) throw new InvalidArgumentError(`node ${nodeId} is already stalled`);
    const queue: (() => void)[] = [];
    const sink = (run: () => void): void => {
      queue.push(run);
    };
    this.stalls.set(nodeId, queue);
    const coordinator = node.coordinator;
    clock.hold(true, sink);
    this.fabric.hold(nodeId, true, sink);
    coordinator.faults.stall(true, sink);
    await new Promise<void>((resolve) => this.clock.setTimeout(resolve, ms));
    const schedule = this.options.fabricScheduler ?? ((step: () => void) => setImmediate(step));
    await new Promise<void>((done) => {
      const next = (): void => {
        const run = queue.shift();
        if (run === undefined) {
          clock.hold(false);
          this.fabric.hold(nodeId, false);
          coordinator.faults.stall(false);
          this.stalls.delete(nodeId);
          done();
          return;
        }
        try {
          run();
        } catch (err) {
          // A throwing handler is the handler's bug: surface it without stopping the burst.
          queueMicrotask(() => {
            throw err;
          });
        }
        schedule(next);
      };
      schedule(next);
    });
  }

  /** Clock drift on a node (failure injection): its clock runs at `rate` × true time from now on. */
  setClockRate(nodeId: string, rate: number): void {
    this.nodeClockOf(nodeId).setRate(rate);
  }

  /** A node's clock rate (1 without drift). */
  clockRate(nodeId: string): number {
    return this.nodeClockOf(nodeId).clockRate;
  }

  /**
   * A clock jump on a node (failure injection): `ms > 0` moves its clock ahead at once, `ms < 0`
   * makes it lose that much (it stands still for −ms; the Clock port never runs backwards).
   */
  jumpClock(nodeId: string, ms: number): void {
    this.nodeClockOf(nodeId).jump(ms);
  }

  private nodeClockOf(nodeId: string): NodeClock {
    if (!this.nodes.has(nodeId)) throw new InvalidArgumentError(`no node ${nodeId}`);
    const clock = this.options.nodeClock?.(nodeId);
    if (!(clock instanceof NodeClock))
      throw new InvalidArgumentError(
        'clock faults need per-node clocks (LocalClusterOptions.nodeClock: a NodeClock)',
      );
    return clock;
  }

  /** What a client calls on `nodeId`: the session, behind the node's stall while one lasts. */
  private clientSession(nodeId: string, regionId: string): RegionSession | undefined {
    const session = this.session(nodeId, regionId);
    const queue = this.stalls.get(nodeId);
    if (session === undefined || queue === undefined) return session;
    // Handled when the node gets to it in its stall queue.
    const turn = (): Promise<void> => new Promise<void>((resolve) => queue.push(resolve));
    return {
      get isServing() {
        return session.isServing;
      },
      put: (key, value) => turn().then(() => session.put(key, value)),
      delete: (key) => turn().then(() => session.delete(key)),
      get: (key) => turn().then(() => session.get(key)),
      scan: (options) => turn().then(() => session.scan(options)),
    };
  }

  /**
   * A slow disk on a node (failure injection): for `forMs`, every persist its backup regions make
   * (seal, index segment, commit, levels install) first waits `delayMs` of clock time, so the
   * primaries' buffer-reuse waits and commits back up behind it. Resolves when the slowness ends.
   */
  async slowDevice(nodeId: string, delayMs: number, forMs: number): Promise<void> {
    const node = this.liveNode(nodeId);
    node.sim.setPersistDelay(delayMs);
    await new Promise<void>((resolve) => this.clock.setTimeout(resolve, forMs));
    this.nodes.get(nodeId)?.sim.setPersistDelay(0);
  }

  /**
   * Breaks one of a node's open connections (failure injection: a queue pair that went to the
   * error state): `pick(n)` chooses among its `n` connections. Returns false when it has none.
   */
  dropConnection(nodeId: string, pick: (count: number) => number): boolean {
    const connections = this.liveNode(nodeId).runtime.connectionList();
    if (connections.length === 0) return false;
    const index = pick(connections.length);
    assert(index >= 0 && index < connections.length, 'dropConnection: pick out of range');
    this.fabric.breakConnection(connections[index]!, `connection dropped (fault injected on ${nodeId})`);
    return true;
  }

  /**
   * Delays a node's traffic (failure injection: a congested link): for `forMs`, every operation on
   * its open connections, both directions, waits `delayMs` before delivery (order kept).
   */
  async delayTraffic(nodeId: string, delayMs: number, forMs: number): Promise<void> {
    const connections = this.liveNode(nodeId).runtime.connectionList();
    for (const connection of connections) this.fabric.delayTraffic(connection, delayMs);
    await new Promise<void>((resolve) => this.clock.setTimeout(resolve, forMs));
    for (const connection of connections) if (!connection.closed) this.fabric.delayTraffic(connection, 0);
  }

  /**
   * A failing disk on a node (failure injection): for `forMs`, every operation of `ops` its stores
   * issue (writes, syncs, manifest replaces — 'meta') fails with `errno` (ENOSPC: disk full; EIO:
   * a device error), typed as FileDevice types it (classifyDeviceError). The operation does not
   * take effect. A store that sees it fail-stops and the node with it (NodeRuntime.onFatal): the
   * supervisor kills it — unsynced writes are lost, as a kernel may drop the dirty pages of a
   * failed fsync — and restarts it once its lease ran out; while the disk still fails, the new
   * incarnation fails again. Dead or restarted, the node keeps the fault: it is the disk's.
   * Resolves when the fault ends.
   */
  async failDisk(
    nodeId: string,
    errno: 'ENOSPC' | 'EIO',
    ops: readonly DeviceOp['kind'][],
    forMs: number,
  ): Promise<void> {
    if (!this.nodes.has(nodeId)) throw new InvalidArgumentError(`no node ${nodeId}`);
    const fault = { errno, ops: new Set(ops) };
    this.diskFaults.set(nodeId, fault);
    await new Promise<void>((resolve) => this.clock.setTimeout(resolve, forMs));
    if (this.diskFaults.get(nodeId) === fault) this.diskFaults.delete(nodeId);
  }

  /**
   * Bit rot (failure injection): flips one bit of one persisted segment (a sealed log segment or a
   * level's index segment) of one of the node's backup stores, on the disk itself (what any later
   * read sees, a restart included). `pick(n)` chooses among n candidates, first the segment (all
   * backup stores' segments, by region), then the bit within its used bytes. Nothing detects it
   * here: a scrub (`scrub`), a promotion, a read or the next open of the store from disk must.
   * Returns what was flipped, or undefined when the node holds no persisted backup segment.
   */
  async flipBit(
    nodeId: string,
    pick: (count: number) => number,
    where: (segment: { regionId: string; kind: 'log' | 'index' }) => boolean = () => true,
  ): Promise<string | undefined> {
    const runtime = this.liveNode(nodeId).runtime;
    const candidates: { regionId: string; offset: number; usedBytes: number; kind: 'log' | 'index' }[] = [];
    const stores = [...(await runtime.backupStoresByRegion())].sort(([a], [b]) => (a < b ? -1 : 1));
    for (const [regionId, store] of stores) {
      if (store.isClosed || store.failure !== undefined) continue;
      for (const segment of store.persistedSegments()) {
        if (where({ regionId, kind: segment.kind })) candidates.push({ regionId, ...segment });
      }
    }
    if (candidates.length === 0) return undefined;
    const at = candidates[pick(candidates.length)]!;
    const bit = pick(at.usedBytes * 8);
    const device = this.devices.get(`${nodeId}/${at.regionId}`);
    if (device === undefined) return undefined;
    const offset = at.offset + Math.floor(bit / 8);
    const flipped = Buffer.from([device.read(offset, 1, at.kind)[0]! ^ (1 << (bit % 8))]);
    if (device instanceof SimDevice) device.corrupt(offset, flipped);
    else {
      device.write(offset, flipped, 'log');
      await device.sync();
    }
    const what = `${at.kind} segment @${at.offset} of ${nodeId}/${at.regionId}, bit ${bit}`;
    this.bitFlips.push(what);
    return what;
  }

  /** One scrub pass over a live node's stores, backup and primary (NodeRuntime.scrub); the regions found corrupt. */
  async scrub(nodeId: string): Promise<string[]> {
    if (this.dead.has(nodeId)) return [];
    return this.liveNode(nodeId).runtime.scrub();
  }

  /**
   * The supervisor's answer to a node that fail-stopped on a store failure (NodeRuntime.onFatal):
   * the process is gone (killNode: no goodbye, unsynced writes lost) and a new incarnation starts
   * on the same disks once the old lease ran out.
   */
  private failStop(nodeId: string, runtime: NodeRuntime, error: unknown): void {
    if (this.closed || this.dead.has(nodeId) || this.nodes.get(nodeId)?.runtime !== runtime) return;
    this.failStops.push({ nodeId, error });
    void this.killNode(nodeId)
      .then(() => {
        if (this.closed) return;
        for (const listener of this.restartListeners)
          listener(nodeId, `fail-stop: ${error instanceof Error ? error.message : String(error)}`);
        return this.restartNode(nodeId);
      })
      .catch(() => {});
  }

  /** Throws the injected disk error when `nodeId`'s disk fails `op` now (failDisk). */
  private injectDiskFault(nodeId: string, device: string, op: DeviceOp): void {
    const fault = this.diskFaults.get(nodeId);
    if (fault === undefined || !fault.ops.has(op.kind)) return;
    const errno = Object.assign(new Error(`${fault.errno}: injected on ${nodeId}, ${op.kind}`), {
      code: fault.errno,
    });
    throw classifyDeviceError(errno, device, op.kind);
  }

  private liveNode(nodeId: string) {
    const node = this.nodes.get(nodeId);
    if (node === undefined || this.dead.has(nodeId)) throw new InvalidArgumentError(`no live node ${nodeId}`);
    return node;
  }

  /**
   * Cuts a node off (failure injection): from its peers (the fabric breaks its connections and
   * refuses new ones), from the coordinator (no calls, deliveries or keepalives — its lease runs
   * out if this outlasts it), or from both. `heal()` ends every partition, `heal(nodeId)` that node's.
   */
  partition(nodeId: string, from: 'peers' | 'coordinator' | 'all' = 'all'): void {
    const node = this.nodes.get(nodeId);
    if (node === undefined || this.dead.has(nodeId)) throw new InvalidArgumentError(`no live node ${nodeId}`);
    if (from !== 'coordinator') this.fabric.partition(nodeId, true);
    if (from !== 'peers') node.coordinator.faults.partition(true);
  }

  /** Ends every partition made with `partition` (dead nodes stay dead). */
  heal(nodeId?: string): void {
    for (const node of this.nodes.values()) {
      if (this.dead.has(node.nodeId) || (nodeId !== undefined && node.nodeId !== nodeId)) continue;
      this.fabric.partition(node.nodeId, false);
      node.coordinator.faults.partition(false);
    }
  }

  /** Nodes killed with killNode and not restarted. */
  deadNodes(): string[] {
    return [...this.dead];
  }

  /**
   * Resolves once `predicate` holds for the region map (as this cluster's watcher sees it) and every
   * region whose primary is alive is served; rejects after `timeoutMs`.
   */
  async waitForRegions(predicate: (regions: RegionConfig[]) => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = this.clock.now() + timeoutMs;
    for (;;) {
      const served = this.regionMap.every(
        (c) => this.dead.has(c.primary) || this.session(c.primary, c.regionId)?.isServing === true,
      );
      if (served && predicate(this.regions())) return;
      if (this.clock.now() > deadline) {
        throw new TalosError(
          'TIMEOUT',
          `region map condition not met after ${timeoutMs} ms: ${this.describe()}`,
        );
      }
      await new Promise<void>((resolve) => this.clock.setTimeout(resolve, 5));
    }
  }

  /** Stops every node (closing engines cleanly), the coordinator clients and the fabric. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unwatch?.();
    await Promise.all(
      [...this.nodes.values()].map(async (node) => {
        if (this.dead.has(node.nodeId)) return;
        node.actor.send({ type: 'STOP' });
        await whenStopped(node.actor);
        node.actor.stop();
        await node.coordinator.close();
      }),
    );
    // Killed nodes' leases would otherwise run out on the clock after the cluster is gone.
    for (const nodeId of this.dead) this.coordinator.expireLease(nodeId);
    await this.watcher.close();
    await this.fabric.close();
    await Promise.all([...this.devices.values()].map((device) => device.close()));
    this.devices.clear();
  }

  private startNode(nodeId: string): void {
    // The node's host clock (the same across its incarnations); the cluster's without nodeClock.
    const clock = this.options.nodeClock?.(nodeId) ?? this.clock;
    const coordinator = this.coordinator.client({ name: nodeId, clock });
    const sim = new SimulatedNode({
      nodeId,
      fabric: this.fabric,
      fabricAddress: `mem://${nodeId}`,
      coordinator,
      clock,
      leaseTtlMs: this.leaseTtlMs,
      ...(this.options.leaseMarginMs === undefined ? {} : { leaseMarginMs: this.options.leaseMarginMs }),
      ...(this.options.maxClockDrift === undefined ? {} : { maxClockDrift: this.options.maxClockDrift }),
      ...(this.options.maxClockJumpMs === undefined ? {} : { maxClockJumpMs: this.options.maxClockJumpMs }),
      mode: this.mode,
      logBufferCount: this.options.logBufferCount ?? 4,
      openStore: (regionId, role) => this.openStore(nodeId, regionId, role),
      cpuMicros: this.options.cpuMicros ?? defaultCpuMicros,
      onFatal: (error) => this.failStop(nodeId, runtime, error),
      ...(this.options.probe === undefined ? {} : { probe: this.options.probe }),
    });
    const runtime = sim.runtime;
    const actor = createActor(nodeMachine, {
      id: nodeId,
      clock,
      input: {
        runtime,
        layout: {
          regions: this.regionSpecs,
          replicas: this.options.replicas,
          expectedNodes: this.options.nodes,
        },
        controllerRetryMs: 200,
      },
    });
    actor.subscribe({
      // A supervisor, as systemd would be: a node that stopped because its lease was lost (a pause
      // or a partition outlasted it) is started again as a new incarnation with a new lease.
      complete: () => {
        const error = actor.getSnapshot().context.error;
        if (!(error instanceof LeaseLostError) || this.closed || this.dead.has(nodeId)) return;
        if (this.nodes.get(nodeId)?.actor !== actor) return;
        this.restarts.push(nodeId);
        for (const listener of this.restartListeners) listener(nodeId, 'lease lost');
        void node.coordinator.close().then(() => {
          if (!this.closed && !this.dead.has(nodeId)) this.startNode(nodeId);
        });
      },
      error: () => {},
    });
    actor.start();
    const node: ClusterNode = { nodeId, sim, runtime, actor, coordinator };
    this.nodes.set(nodeId, node);
  }

  private async openStore(nodeId: string, regionId: string, role: Role): Promise<Store> {
    const base: StoreOptions = {
      ...this.options.store,
      autoCompact: false,
      role,
      ...(this.options.skewLayouts ? { reservedSegments: this.nodeIds().indexOf(nodeId) } : {}),
      // A Build-Index backup's L0 holds records no level covers yet: rebuild it on restart.
      rebuildL0: role === 'backup' && this.mode === 'build-index',
      ...(this.options.probe === undefined ? {} : { probe: this.options.probe }),
    };
    const key = `${nodeId}/${regionId}`;
    let device = this.devices.get(key);
    if (device === undefined) {
      device =
        this.options.dataDir !== undefined
          ? FileDevice.open(join(this.options.dataDir, nodeId, regionId))
          : new SimDevice({
              name: key,
              ...(this.options.fabricScheduler === undefined
                ? {}
                : { scheduler: this.options.fabricScheduler }),
            });
      this.devices.set(key, device);
    }
    const view = new IncarnationDevice(device, (op) => {
      this.injectDiskFault(nodeId, key, op);
      const trigger = this.crashTriggers.get(nodeId);
      if (trigger === undefined || !trigger.when({ ...op, regionId, role })) return;
      this.crashTriggers.delete(nodeId);
      // The process dies right here: this call and every later one of the incarnation fail.
      for (const v of this.views.get(nodeId) ?? []) v.cut();
      // The rest of the kill (connections, lease, actors) runs next, outside this store call.
      queueMicrotask(() => trigger.crashed(this.killNode(nodeId)));
    });
    const views = this.views.get(nodeId) ?? [];
    views.push(view);
    this.views.set(nodeId, views);
    return Store.open({ ...base, device: view });
  }

  private async waitUntilServed(timeoutMs: number): Promise<void> {
    const deadline = this.clock.now() + timeoutMs;
    for (;;) {
      const failed = [...this.nodes.values()].find((n) => n.actor.getSnapshot().value === 'failed');
      if (failed !== undefined) {
        const error = failed.actor.getSnapshot().context.error;
        throw new TalosError('NODE_FAILED', `node ${failed.nodeId} failed to start: ${String(error)}`, {
          cause: error,
        });
      }
      const served =
        this.regionMap.length === this.regionSpecs.length &&
        this.regionMap.every((c) => this.session(c.primary, c.regionId)?.isServing === true);
      if (served) return;
      if (this.clock.now() >= deadline) {
        throw new TalosError(
          'CLUSTER_NOT_READY',
          `regions not served after ${timeoutMs} ms: ${this.describe()}`,
        );
      }
      await new Promise<void>((resolve) => this.clock.setTimeout(resolve, 5));
    }
  }

  private describe(): string {
    const parts = [...this.nodes.values()].map((n) => {
      const snapshot = n.actor.getSnapshot();
      // Closed backup connections say nothing; a child's last error says why it is stuck.
      const children = Object.entries(snapshot.children)
        .map(([id, child]) => {
          const s = child?.getSnapshot() as { value?: unknown; context?: { error?: unknown } } | undefined;
          const error = s?.context?.error;
          const why =
            error === undefined ? '' : `(${error instanceof Error ? error.message : String(error)})`;
          return `${id}=${JSON.stringify(s?.value)}${why}`;
        })
        .filter((part) => !part.endsWith('="closed"') && !/^\d+\./.test(part))
        .join(',');
      return `${n.nodeId}:${JSON.stringify(snapshot.value)}[${children}]`;
    });
    const map = this.regionMap
      .map(
        (r) =>
          `${r.regionId}@${r.epoch}:${r.primary}[${r.backups.join('+')}]${r.joining?.length ? `+joining[${r.joining.join('+')}]` : ''}`,
      )
      .join(' ');
    return `map=${this.regionMap.length}/${this.regionSpecs.length} ${map} dead=[${this.deadNodes().join(',')}] ${parts.join(' ')}`;
  }
}

export async function createLocalCluster(options: LocalClusterOptions = {}): Promise<LocalCluster> {
  const nodes = options.nodes ?? 3;
  if (!Number.isInteger(nodes) || nodes < 1)
    throw new InvalidArgumentError(`nodes must be a positive integer, got ${nodes}`);
  const replicas = options.replicas ?? Math.min(3, nodes);
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > nodes) {
    throw new InvalidArgumentError(`replicas must be an integer in [1, nodes=${nodes}], got ${replicas}`);
  }
  const mode = options.mode ?? 'send-index';
  if (mode !== 'send-index' && mode !== 'build-index')
    throw new InvalidArgumentError(`unknown mode ${String(mode)}`);
  const cluster = new LocalCluster({ ...options, nodes, replicas, mode });
  try {
    await cluster.start();
  } catch (err) {
    await cluster.close().catch(() => {});
    throw err;
  }
  return cluster;
}
