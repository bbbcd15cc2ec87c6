/**
 * One Talos node as an OS process (`talos node`): the Node actor tree on real ports — an etcd
 * coordinator, the TCP fabric (cluster secret), file-backed stores under the data directory —
 * plus the client endpoint, pino logs and a Prometheus /metrics endpoint.
 *
 * Incarnations. The process is its own supervisor: when the node loses its lease (a pause or a
 * partition outlasted it) the Node actor stops every region and ends; the process then starts a
 * new incarnation — a new etcd client, fabric listener and lease — which recovers its stores from
 * the data directory and is given regions again by the controller (roles of the old incarnation
 * are void: NodeInfo.joinedRevision). The client endpoint and the metrics outlive incarnations.
 *
 * Shutdown (SIGTERM/SIGINT, or `stop()`): STOP to the Node actor (primaries stop acknowledging,
 * stores close cleanly), leave the cluster (lease revoked), close the endpoints.
 *
 * Security (`tls`, `clientTokenFile`, `clientCertAuth`): with `tls` (CA, certificate, key files)
 * the fabric is mutual TLS between nodes (the cluster secret stays a second factor inside it) and
 * the client endpoint serves TLS; etcd at https:// endpoints is dialed with the same files unless
 * `etcdTls` names others. Clients must authenticate when a token file is given (one token per line)
 * or `clientCertAuth` is set: by a token, or by a client certificate from the CA. The files are
 * read once, at start: a missing one fails the start.
 */
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { type Logger, pino } from 'pino';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { type Actor, createActor, type InspectionEvent } from 'xstate';
import { EtcdCoordinator } from '../../coordination/etcd.js';
import { LeaseLostError, nodeMachine, whenStopped } from '../actors/node.js';
import { NodeRuntime } from '../actors/node-runtime.js';
import type { Role } from '../actors/work.js';
import { SystemClock } from '../clock/index.js';
import { IncarnationDevice } from '../cluster/incarnation-device.js';
import { hexRegionSpecs } from '../cluster/regions.js';
import { FileDevice } from '../engine/file-device.js';
import { Store, type StoreOptions } from '../engine/store.js';
import { InvalidArgumentError } from '../errors.js';
import { verbsError } from '../fabric/rdma/addon.js';
import { loadRdmaAddon, parseRdmaAddress, RdmaFabric } from '../fabric/rdma/index.js';
import { parseTcpAddress, TcpFabric } from '../fabric/tcp.js';
import { readTlsFiles, readTokenFile, type TlsCredentials, type TlsFiles, TokenSet } from '../fabric/tls.js';
import type { Fabric } from '../fabric/types.js';
import type { ReplicationMode } from '../replication/messages.js';
import { type ClientServer, startClientServer } from './client-server.js';
import { LoopHealth, startupStallWarning } from './loop-health.js';

export interface NodeProcessOptions {
  nodeId: string;
  /** Fabric listen address: `tcp://host:port`, or with `rdma`, `rdma://host:port` (its side channel). */
  listen: string;
  /** Use the rdma fabric on this device (e.g. `mlx5_0`, `rxe0`) instead of tcp. */
  rdma?: { device: string; gidIndex?: number };
  /** Client endpoint, `tcp://host:port`. */
  clientListen: string;
  /** Prometheus endpoint port (0: any; undefined: none). */
  metricsPort?: number;
  etcd: string[];
  cluster?: string;
  dataDir: string;
  mode?: ReplicationMode;
  leaseTtlMs?: number;
  /** Cluster layout (the same on every node): region count, copies, members to wait for. */
  regions?: number;
  replicas?: number;
  expectedNodes?: number;
  secret?: string;
  secretFile?: string;
  /** TLS for the fabric (mutual) and the client endpoint: CA, this node's certificate and key. */
  tls?: Required<TlsFiles>;
  /** Clients must present one of these bearer tokens (one per line), or a client certificate. */
  clientTokenFile?: string;
  /** With `tls`: clients must authenticate (a client certificate from the CA, or a token). */
  clientCertAuth?: boolean;
  /** TLS files for etcd (default: `tls`, when an endpoint is https://). */
  etcdTls?: TlsFiles;
  store?: Omit<StoreOptions, 'dir' | 'device' | 'role'>;
  logger?: Logger;
}

export interface RunningNode {
  readonly clientAddress: string;
  readonly metricsAddress: string | undefined;
  /** The current incarnation's runtime (tests, tools). */
  runtime(): NodeRuntime;
  incarnations(): number;
  stop(): Promise<void>;
}

export async function startNodeProcess(options: NodeProcessOptions): Promise<RunningNode> {
  // A bad --listen, a missing addon or device fails here, before anything starts.
  if (options.rdma === undefined) parseTcpAddress(options.listen);
  else {
    parseRdmaAddress(options.listen);
    const addon = loadRdmaAddon();
    try {
      new addon.Device(options.rdma.device).close();
    } catch (err) {
      throw verbsError(err);
    }
  }
  const security = readSecurity(options);
  const secretOptions = {
    ...(options.secret === undefined ? {} : { secret: options.secret }),
    ...(options.secretFile === undefined ? {} : { secretFile: options.secretFile }),
    ...(security.tls === undefined ? {} : { tls: security.tls }),
  };
  const newFabric = (): Fabric =>
    options.rdma === undefined
      ? new TcpFabric(secretOptions)
      : new RdmaFabric({
          device: options.rdma.device,
          ...(options.rdma.gidIndex === undefined ? {} : { gidIndex: options.rdma.gidIndex }),
          ...secretOptions,
        });
  const log =
    options.logger ??
    pino({ name: 'talos', level: process.env.TALOS_LOG_LEVEL ?? 'info' }).child({ node: options.nodeId });
  const mode = options.mode ?? 'send-index';
  const leaseTtlMs = options.leaseTtlMs ?? 3000;
  const regionSpecs = hexRegionSpecs(options.regions ?? 3);
  const clock = new SystemClock();
  const metrics = nodeMetrics(options.nodeId);
  let current:
    | { runtime: NodeRuntime; actor: Actor<typeof nodeMachine>; coordinator: EtcdCoordinator }
    | undefined;
  let incarnations = 0;
  let stopping = false;
  let metricsRefresh = async (): Promise<void> => {};

  const client: ClientServer = await startClientServer({
    address: options.clientListen,
    nodeId: options.nodeId,
    session: (regionId) => current?.runtime.session(regionId),
    observe: (op, seconds, outcome) => {
      metrics.requests.inc({ op, outcome });
      metrics.requestSeconds.observe({ op }, seconds);
    },
    observeFrame: (direction, operationCount) =>
      metrics.frameOperations.observe({ direction }, operationCount),
    ...(security.tls === undefined ? {} : { tls: security.tls }),
    ...(security.authentication === undefined ? {} : { authentication: security.authentication }),
    onAuthFailure: (reason) => metrics.authFailures.inc({ reason }),
  });
  const metricsServer =
    options.metricsPort === undefined
      ? undefined
      : await serveMetrics(metrics.registry, options.metricsPort, () => metricsRefresh());
  const metricsAddress =
    metricsServer === undefined
      ? undefined
      : `http://127.0.0.1:${(metricsServer.address() as { port: number }).port}/metrics`;
  // Event-loop health (loop-health.ts): a stall over half the lease margin (the default margin is a
  // fifth of the TTL) is logged — keepalives waited that long behind whatever blocked the thread.
  const leaseMarginMs = Math.max(1, Math.floor(leaseTtlMs / 5));
  const loopHealth = new LoopHealth({
    stallMs: Math.max(1, Math.floor(leaseMarginMs / 2)),
    onStall: (stallMs) => {
      metrics.loopStalls.inc();
      metrics.longestLoopStall.set(loopHealth.snapshot().longestStallMs / 1000);
      log.warn(
        { stallMs, leaseTtlMs, leaseMarginMs },
        `event-loop stall of ${stallMs} ms, over half the lease margin (${leaseMarginMs} ms of a ${leaseTtlMs} ms lease): keepalives waited behind it; stalls this long can cost the lease`,
      );
    },
  });

  // One device per region for the life of the process (it holds the directory's lock); stores of
  // every incarnation open it through a view whose close() leaves it open.
  const devices = new Map<string, FileDevice>();
  const openStore = async (regionId: string, role: Role): Promise<Store> => {
    let device = devices.get(regionId);
    if (device === undefined) {
      device = FileDevice.open(join(options.dataDir, regionId));
      devices.set(regionId, device);
    }
    const store = await Store.open({
      ...options.store,
      autoCompact: false,
      role,
      rebuildL0: role === 'backup' && mode === 'build-index',
      device: new IncarnationDevice(device),
    });
    // Seals and compactions this node's stores perform (a backup's seals persist shipped bytes).
    store.hooks.on('segmentSealed', (e) => metrics.seals.inc({ role, partial: String(e.partial) }));
    store.hooks.on('compactionCommitted', () => metrics.compactions.inc({ role }));
    return store;
  };

  const startIncarnation = async (): Promise<void> => {
    incarnations++;
    metrics.incarnations.inc();
    const coordinator = new EtcdCoordinator({
      endpoints: options.etcd,
      ...(options.cluster === undefined ? {} : { cluster: options.cluster }),
      ...(security.etcdCredentials === undefined ? {} : { credentials: security.etcdCredentials }),
    });
    const runtime = new NodeRuntime({
      nodeId: options.nodeId,
      fabric: newFabric(),
      fabricAddress: options.listen,
      clientAddress: client.address,
      ...(metricsAddress === undefined ? {} : { metricsAddress }),
      coordinator,
      clock,
      leaseTtlMs,
      mode,
      logBufferCount: 4,
      openStore,
      cpuMicros: () => {
        const u = process.cpuUsage();
        return u.user + u.system;
      },
      // A store hit a device error (ENOSPC, EIO) or a corrupt segment: the process fail-stops, as
      // a crash would (the lease runs out, nothing unsynced is trusted), and its service manager
      // restarts it; the new process recovers from what was synced and verifies its backup copies.
      onFatal: (err) => {
        if (stopping) return;
        log.fatal({ incarnation: incarnations, err }, 'store failure: the node fail-stops');
        process.exit(75);
      },
    });
    const actor = createActor(nodeMachine, {
      id: options.nodeId,
      clock,
      inspect: actorLogger(log.child({ incarnation: incarnations }), (work, seconds) =>
        metrics.workSeconds.observe({ work }, seconds),
      ),
      input: {
        runtime,
        layout: {
          regions: regionSpecs,
          replicas: options.replicas ?? 3,
          expectedNodes: options.expectedNodes ?? options.replicas ?? 3,
        },
        controllerRetryMs: 200,
      },
    });
    current = { runtime, actor, coordinator };
    const incarnation = incarnations;
    let lastValue = '';
    actor.subscribe({
      next: (snapshot) => {
        const serving = runtime.servingRegions().sort().join(',');
        const value = JSON.stringify(snapshot.value);
        if (value !== lastValue) log.info({ incarnation, state: snapshot.value }, 'node state');
        lastValue = value;
        metrics.servingRegions.set(serving === '' ? 0 : serving.split(',').length);
      },
      complete: () => {
        const error = actor.getSnapshot().context.error;
        void coordinator.close();
        if (stopping) return;
        if (error instanceof LeaseLostError) {
          log.warn({ incarnation }, 'lease lost: starting a new incarnation');
          void retryStart();
        } else {
          log.error({ incarnation, err: error }, 'node stopped');
        }
      },
      error: (err) => log.error({ err }, 'node actor failed'),
    });
    actor.start();
    log.info({ incarnation, fabric: options.listen, client: client.address, mode }, 'node started');
  };

  // A new incarnation may find the old listener's port still closing: try again shortly.
  const retryStart = async (): Promise<void> => {
    for (let attempt = 0; !stopping; attempt++) {
      try {
        await startIncarnation();
        return;
      } catch (err) {
        log.warn({ err, attempt }, 'incarnation failed to start; retrying');
        await new Promise((resolve) => setTimeout(resolve, Math.min(2000, 100 * 2 ** attempt)));
      }
    }
  };

  await startIncarnation();
  // A lease the node cannot keep: its start (recovery, the first re-syncs) already stalled its
  // event loop for longer than the lease margin. Say so once, with what to do about it. (One timer
  // turn first: a stall that just ended is seen by the probe when its overdue timer fires.)
  await new Promise((resolve) => setTimeout(resolve, 0));
  const startup = loopHealth.snapshot();
  const unkeepable = startupStallWarning(startup, leaseTtlMs, leaseMarginMs);
  if (unkeepable !== undefined)
    log.warn({ longestStallMs: startup.longestStallMs, leaseTtlMs, leaseMarginMs }, unkeepable);
  // Gauges read from the runtime when scraped.
  const refresh = async (): Promise<void> => {
    const runtime = current?.runtime;
    if (runtime === undefined) return;
    await refreshRoleMetrics(metrics, runtime);
    const fabric = runtime.fabricBytes();
    metrics.fabricBytes.set(fabric.written + fabric.sent);
    metrics.resyncedBytes.set(runtime.resyncedBytes());
    metrics.promotions.set(runtime.promotions.length);
    metrics.epochs.reset();
    for (const regionId of runtime.servingRegions()) {
      const session = runtime.session(regionId);
      if (session !== undefined) metrics.epochs.set({ region: regionId }, session.epoch);
    }
  };
  metricsRefresh = refresh;

  return {
    clientAddress: client.address,
    metricsAddress,
    runtime: () => current!.runtime,
    incarnations: () => incarnations,
    stop: async () => {
      stopping = true;
      const c = current;
      if (c !== undefined) {
        c.actor.send({ type: 'STOP' });
        await whenStopped(c.actor);
        await c.coordinator.close();
      }
      await client.close();
      metricsServer?.close();
      loopHealth.close();
      await Promise.all([...devices.values()].map((device) => device.close()));
      log.info('node stopped');
    },
  };
}

/** The node's TLS material, client authentication and etcd credentials, read from their files. */
function readSecurity(options: NodeProcessOptions): {
  tls?: TlsCredentials;
  authentication?: { tokens?: TokenSet; clientCertificates: boolean };
  etcdCredentials?: { rootCertificate: Buffer; privateKey?: Buffer; certChain?: Buffer };
} {
  const tls = options.tls === undefined ? undefined : readTlsFiles(options.tls);
  if (options.clientCertAuth === true && tls === undefined) {
    throw new InvalidArgumentError(
      'client certificate authentication needs TLS (--tls-ca --tls-cert --tls-key)',
    );
  }
  const tokens =
    options.clientTokenFile === undefined ? undefined : new TokenSet(readTokenFile(options.clientTokenFile));
  const authentication =
    tokens === undefined && options.clientCertAuth !== true
      ? undefined
      : { ...(tokens === undefined ? {} : { tokens }), clientCertificates: tls !== undefined };
  const etcdFiles =
    options.etcdTls ?? (options.etcd.some((e) => e.startsWith('https:')) ? options.tls : undefined);
  const etcd = etcdFiles === undefined ? undefined : readTlsFiles(etcdFiles);
  const etcdCredentials =
    etcd === undefined
      ? undefined
      : {
          rootCertificate: Buffer.from(etcd.ca),
          ...(etcd.key === undefined ? {} : { privateKey: Buffer.from(etcd.key) }),
          ...(etcd.cert === undefined ? {} : { certChain: Buffer.from(etcd.cert) }),
        };
  return {
    ...(tls === undefined ? {} : { tls }),
    ...(authentication === undefined ? {} : { authentication }),
    ...(etcdCredentials === undefined ? {} : { etcdCredentials }),
  };
}

/**
 * Logs every actor's state changes through a child logger per actor, named by the actor's id
 * (`primary:<region>:<epoch>` carries the region and epoch). Protocol code stays free of logging.
 */
function actorLogger(
  log: Logger,
  onWork?: (work: 'flush' | 'compaction', seconds: number) => void,
): (event: InspectionEvent) => void {
  const loggers = new Map<string, Logger>();
  const last = new Map<string, string>();
  const busySince = new Map<string, number>();
  return (event) => {
    if (event.type !== '@xstate.snapshot') return;
    const id = (event.actorRef as { id?: string }).id ?? event.actorRef.sessionId;
    const snapshot = event.snapshot as { value?: unknown; status?: string };
    const value = JSON.stringify(snapshot.value ?? snapshot.status ?? null);
    if (last.get(id) === value) return;
    last.set(id, value);
    // Flush and compaction durations: time spent in `flushing` / `compacting`, per actor.
    const session = event.actorRef.sessionId;
    if (id === 'flush' || id === 'compaction') {
      const busy = snapshot.value === 'flushing' || snapshot.value === 'compacting';
      const since = busySince.get(session);
      if (busy && since === undefined) busySince.set(session, performance.now());
      if (!busy && since !== undefined) {
        busySince.delete(session);
        onWork?.(id, (performance.now() - since) / 1000);
      }
    }
    let logger = loggers.get(id);
    if (logger === undefined) {
      const [kind, region, epoch] = id.split(':');
      logger = log.child({
        actor: kind,
        ...(region === undefined ? {} : { region }),
        ...(epoch === undefined ? {} : { epoch: Number(epoch) }),
      });
      loggers.set(id, logger);
    }
    // Region actors' transitions (a handful per epoch) at info; flush/compaction churn at debug.
    if (id.startsWith('primary:') || id.startsWith('backup:'))
      logger.info({ state: snapshot.value ?? snapshot.status }, 'state');
    else logger.debug({ state: snapshot.value ?? snapshot.status }, 'state');
    if (snapshot.status === 'done' || snapshot.status === 'stopped') {
      loggers.delete(id);
      last.delete(id);
    }
  };
}

/**
 * The node's Prometheus registry and metrics (exported for the dashboard test, which checks every
 * metric docs/ops/grafana-dashboard.json queries against this registry). Besides Talos' own, the
 * registry holds prom-client's default process and Node.js metrics — among them the event-loop
 * delay from `monitorEventLoopDelay` (nodejs_eventloop_lag_p50/p90/p99_seconds, …): a stalled loop
 * is a lost lease.
 */
export function nodeMetrics(nodeId: string) {
  const registry = new Registry();
  registry.setDefaultLabels({ node: nodeId });
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 10 });
  return {
    registry,
    authFailures: new Counter({
      name: 'talos_client_auth_failures_total',
      help: 'client connections refused: missing credentials, a wrong token, an unverified certificate',
      labelNames: ['reason'],
      registers: [registry],
    }),
    incarnations: new Counter({
      name: 'talos_incarnations_total',
      help: 'node incarnations started',
      registers: [registry],
    }),
    loopStalls: new Counter({
      name: 'talos_event_loop_stalls_total',
      help: 'event-loop stalls longer than half the lease margin (each also logged as a warning)',
      registers: [registry],
    }),
    longestLoopStall: new Gauge({
      name: 'talos_event_loop_longest_stall_seconds',
      help: 'the longest event-loop stall seen by this process',
      registers: [registry],
    }),
    servingRegions: new Gauge({
      name: 'talos_serving_regions',
      help: 'regions this node serves as primary',
      registers: [registry],
    }),
    fabricBytes: new Gauge({
      name: 'talos_fabric_bytes',
      help: 'bytes this node put on the fabric',
      registers: [registry],
    }),
    resyncedBytes: new Gauge({
      name: 'talos_resynced_bytes',
      help: 'bytes sent to re-sync backups',
      registers: [registry],
    }),
    promotions: new Gauge({
      name: 'talos_promotions',
      help: 'promotions this incarnation went through',
      registers: [registry],
    }),
    requests: new Counter({
      name: 'talos_client_requests_total',
      help: 'client requests by op and outcome (ok or an error code)',
      labelNames: ['op', 'outcome'],
      registers: [registry],
    }),
    requestSeconds: new Histogram({
      name: 'talos_client_request_seconds',
      help: 'client request latency by op',
      labelNames: ['op'],
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers: [registry],
    }),
    frameOperations: new Histogram({
      name: 'talos_client_frame_operations',
      help: 'operations per client protocol frame (requests received, replies sent): the batching',
      labelNames: ['direction'],
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096],
      registers: [registry],
    }),
    seals: new Counter({
      name: 'talos_segment_seals_total',
      help: 'log segment seals (partial: tail syncs) by store role',
      labelNames: ['role', 'partial'],
      registers: [registry],
    }),
    compactions: new Counter({
      name: 'talos_compactions_total',
      help: 'compactions committed (or installed) by store role',
      labelNames: ['role'],
      registers: [registry],
    }),
    workSeconds: new Histogram({
      name: 'talos_work_seconds',
      help: 'duration of flushes and compaction runs (primaries and Build-Index backups)',
      labelNames: ['work'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      registers: [registry],
    }),
    // Per role (the stores this node holds as a primary / as a backup), read at scrape time: what
    // the paper benchmark compares between Send-Index and Build-Index.
    roleIoBytes: new Gauge({
      name: 'talos_role_io_bytes',
      help: "device bytes of this node's stores by role, direction (read/written) and category",
      labelNames: ['role', 'direction', 'category'],
      registers: [registry],
    }),
    roleCpuSeconds: new Gauge({
      name: 'talos_role_cpu_seconds',
      help: 'CPU charged to a role by the actors: primary = flushes and compactions; backup = replication message handlers, and flushes and compactions of Build-Index backups',
      labelNames: ['role'],
      registers: [registry],
    }),
    backupMessageCpuSeconds: new Gauge({
      name: 'talos_backup_message_cpu_seconds',
      help: "the backup role's CPU in replication message handlers, by message type",
      labelNames: ['message'],
      registers: [registry],
    }),
    roleL0Bytes: new Gauge({
      name: 'talos_role_l0_bytes',
      help: "bytes in the active L0s of this node's stores by role",
      labelNames: ['role'],
      registers: [registry],
    }),
    roleUserBytes: new Gauge({
      name: 'talos_role_user_bytes',
      help: "key + value bytes accepted from users by this node's stores (primaries)",
      labelNames: ['role'],
      registers: [registry],
    }),
    storeLevels: new Gauge({
      name: 'talos_store_levels',
      help: 'deepest populated level (L1 = 1) of each store, by role and region',
      labelNames: ['role', 'region'],
      registers: [registry],
    }),
    backupBufferBytes: new Gauge({
      name: 'talos_backup_log_buffer_bytes',
      help: 'log buffer bytes this node registered for its backup regions (K buffers of one segment each)',
      registers: [registry],
    }),
    epochs: new Gauge({
      name: 'talos_region_epoch',
      help: 'epoch of each region this node serves',
      labelNames: ['region'],
      registers: [registry],
    }),
  };
}

async function serveMetrics(registry: Registry, port: number, refresh: () => Promise<void>): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    void refresh()
      .catch(() => {}) // a store closing under the scrape: serve what the registry holds
      .then(() => registry.metrics())
      .then((body) => {
        res.writeHead(200, { 'content-type': registry.contentType }).end(body);
      });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
  return server;
}

/** Device bytes, CPU, L0 and levels per role, from the runtime's stores (Store.stats()). */
async function refreshRoleMetrics(
  metrics: ReturnType<typeof nodeMetrics>,
  runtime: NodeRuntime,
): Promise<void> {
  const backupStores = [...(await runtime.backupStoresByRegion())].filter(([, s]) => !s.isClosed);
  const primaryStores: [string, Store][] = [];
  for (const regionId of runtime.servingRegions()) {
    const store = runtime.session(regionId)?.store;
    if (store !== undefined && !store.isClosed) primaryStores.push([regionId, store]);
  }
  metrics.roleIoBytes.reset();
  metrics.storeLevels.reset();
  let bufferBytes = 0;
  for (const [role, stores] of [
    ['primary', primaryStores],
    ['backup', backupStores],
  ] as const) {
    let l0Bytes = 0;
    let userBytes = 0;
    const io = { read: new Map<string, number>(), written: new Map<string, number>() };
    for (const [regionId, store] of stores) {
      const stats = store.stats();
      for (const [category, bytes] of Object.entries(stats.io.readBytes))
        io.read.set(category, (io.read.get(category) ?? 0) + bytes);
      for (const [category, bytes] of Object.entries(stats.io.writtenBytes))
        io.written.set(category, (io.written.get(category) ?? 0) + bytes);
      l0Bytes += stats.l0.bytes;
      userBytes += stats.userBytes;
      const deepest = stats.levels.reduce((d, l) => (l.entryCount > 0 ? Math.max(d, l.level) : d), 0);
      metrics.storeLevels.set({ role, region: regionId }, deepest);
      if (role === 'backup') bufferBytes += runtime.logBufferCount * store.segmentBytes;
    }
    for (const direction of ['read', 'written'] as const)
      for (const [category, bytes] of io[direction])
        metrics.roleIoBytes.set({ role, direction, category }, bytes);
    metrics.roleCpuSeconds.set({ role }, runtime.cpuMicrosByRole[role] / 1e6);
    metrics.roleL0Bytes.set({ role }, l0Bytes);
    metrics.roleUserBytes.set({ role }, userBytes);
  }
  metrics.backupBufferBytes.set(bufferBytes);
  for (const [message, micros] of Object.entries(runtime.backupCpuMicrosByMessage))
    metrics.backupMessageCpuSeconds.set({ message }, (micros ?? 0) / 1e6);
}
