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
 */
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { type Logger, pino } from 'pino';
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { type Actor, createActor } from 'xstate';
import { EtcdCoordinator } from '../../coordination/etcd.js';
import { LeaseLostError, nodeMachine } from '../actors/node.js';
import { NodeRuntime } from '../actors/node-runtime.js';
import type { Role } from '../actors/work.js';
import { SystemClock } from '../clock/index.js';
import { IncarnationDevice } from '../cluster/incarnation-device.js';
import { hexRegionSpecs } from '../cluster/regions.js';
import { FileDevice } from '../engine/file-device.js';
import { Store, type StoreOptions } from '../engine/store.js';
import { InvalidArgumentError } from '../errors.js';
import { TcpFabric } from '../fabric/tcp.js';
import type { ReplicationMode } from '../replication/messages.js';
import { type ClientServer, startClientServer } from './client-server.js';

export interface NodeProcessOptions {
  nodeId: string;
  /** Fabric listen address, `tcp://host:port`. */
  listen: string;
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
  if (!/^tcp:\/\/[^:/]+:\d+$/.test(options.listen)) {
    throw new InvalidArgumentError(`--listen must be tcp://host:port, got ${options.listen}`);
  }
  const log = options.logger ?? pino({ name: 'talos' }).child({ node: options.nodeId });
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

  const client: ClientServer = await startClientServer({
    address: options.clientListen,
    nodeId: options.nodeId,
    session: (regionId) => current?.runtime.session(regionId),
  });
  const metricsServer =
    options.metricsPort === undefined ? undefined : await serveMetrics(metrics.registry, options.metricsPort);

  // One device per region for the life of the process (it holds the directory's lock); stores of
  // every incarnation open it through a view whose close() leaves it open.
  const devices = new Map<string, FileDevice>();
  const openStore = async (regionId: string, role: Role): Promise<Store> => {
    let device = devices.get(regionId);
    if (device === undefined) {
      device = FileDevice.open(join(options.dataDir, regionId));
      devices.set(regionId, device);
    }
    return Store.open({
      ...options.store,
      autoCompact: false,
      role,
      rebuildL0: role === 'backup' && mode === 'build-index',
      device: new IncarnationDevice(device),
    });
  };

  const startIncarnation = async (): Promise<void> => {
    incarnations++;
    metrics.incarnations.inc();
    const coordinator = new EtcdCoordinator({
      endpoints: options.etcd,
      ...(options.cluster === undefined ? {} : { cluster: options.cluster }),
    });
    const runtime = new NodeRuntime({
      nodeId: options.nodeId,
      fabric: new TcpFabric({
        ...(options.secret === undefined ? {} : { secret: options.secret }),
        ...(options.secretFile === undefined ? {} : { secretFile: options.secretFile }),
      }),
      fabricAddress: options.listen,
      clientAddress: client.address,
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
    });
    const actor = createActor(nodeMachine, {
      id: options.nodeId,
      clock,
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
  const stats = setInterval(() => {
    const runtime = current?.runtime;
    if (runtime === undefined) return;
    const fabric = runtime.fabricBytes();
    metrics.fabricBytes.set(fabric.written + fabric.sent);
    metrics.resyncedBytes.set(runtime.resyncedBytes());
    metrics.promotions.set(runtime.promotions.length);
  }, 1000);
  stats.unref();

  return {
    clientAddress: client.address,
    metricsAddress:
      metricsServer === undefined
        ? undefined
        : `http://127.0.0.1:${(metricsServer.address() as { port: number }).port}/metrics`,
    runtime: () => current!.runtime,
    incarnations: () => incarnations,
    stop: async () => {
      stopping = true;
      clearInterval(stats);
      const c = current;
      if (c !== undefined) {
        c.actor.send({ type: 'STOP' });
        await waitFinal(c.actor);
        await c.coordinator.close();
      }
      await client.close();
      metricsServer?.close();
      for (const device of devices.values()) device.close();
      log.info('node stopped');
    },
  };
}

function waitFinal(actor: Actor<typeof nodeMachine>): Promise<void> {
  return new Promise((resolve) => {
    if (actor.getSnapshot().status !== 'active') return resolve();
    const sub = actor.subscribe({
      next: () => {
        if (actor.getSnapshot().status !== 'active') {
          sub.unsubscribe();
          resolve();
        }
      },
      complete: () => resolve(),
      error: () => resolve(),
    });
  });
}

function nodeMetrics(nodeId: string) {
  const registry = new Registry();
  registry.setDefaultLabels({ node: nodeId });
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    incarnations: new Counter({
      name: 'talos_incarnations_total',
      help: 'node incarnations started',
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
  };
}

async function serveMetrics(registry: Registry, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    void registry.metrics().then((body) => {
      res.writeHead(200, { 'content-type': registry.contentType }).end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
  return server;
}
