/**
 * The paper benchmark's deployment: three (or `nodes`) `talos node` processes (compiled CLI, TCP fabric on
 * loopback, files, one shared etcd) and what is measured from outside them:
 *   - each node's Prometheus gauges (device bytes, actor-charged CPU and L0 bytes per role, fabric
 *     bytes, deepest level per store, backup log buffers: src/server/node-process.ts);
 *   - each process's CPU time (/proc/<pid>/stat utime + stime), storage I/O (/proc/<pid>/io
 *     read_bytes / write_bytes: what reached the block layer) and peak RSS (VmHWM).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../coordination/etcd-server.js';
import { TalosClient } from '../../src/client/talos-client.js';
import type { ReplicationMode } from '../../src/replication/messages.js';
import { type LoopHealthSnapshot, readMetricsHealth } from '../../src/server/loop-health.js';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'main.js');
const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

export interface StoreLayout {
  segmentBytes: number;
  l0Bytes: number;
  growthFactor: number;
  maxLevels: number;
}

/** One node's numbers at one instant. */
export interface NodeSample {
  nodeId: string;
  /** Device bytes by role: read + written, and the write-once parts (log / index written). */
  primaryReadBytes: number;
  primaryWrittenBytes: number;
  primaryLogWrittenBytes: number;
  primaryIndexWrittenBytes: number;
  backupReadBytes: number;
  backupWrittenBytes: number;
  backupIndexReadBytes: number;
  backupIndexWrittenBytes: number;
  backupLogWrittenBytes: number;
  /** Manifest bytes read + written by the backup stores. */
  backupManifestBytes: number;
  primaryCpuSeconds: number;
  backupCpuSeconds: number;
  /** The backup role's CPU in replication message handlers, by message type. */
  backupCpuSecondsByMessage: Record<string, number>;
  backupL0Bytes: number;
  backupBufferBytes: number;
  primaryUserBytes: number;
  fabricBytes: number;
  /** Deepest populated level of each store, `role:region` → level. */
  levels: Record<string, number>;
  /** /proc: process CPU seconds, block-layer bytes, peak RSS. */
  processCpuSeconds: number;
  procReadBytes: number;
  procWriteBytes: number;
  peakRssBytes: number;
  /** Event-loop delay since the previous scrape (prom-client resets its histogram on each). */
  loop: LoopHealthSnapshot;
}

interface NodeProc {
  id: string;
  proc: ChildProcess;
  metricsUrl: string;
}

export interface Deployment {
  client: TalosClient;
  sample(): Promise<NodeSample[]>;
  stop(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts `nodes` node processes (default 3, RF `replicas`, default 3) in `mode` on a fresh cluster
 * name and waits until every region has its backups.
 */
export async function deploy(options: {
  etcd: string[];
  cluster: string;
  dir: string;
  mode: ReplicationMode;
  regions: number;
  layout: StoreLayout;
  /** Node processes (default 3). */
  nodes?: number;
  /** Copies per region, primary included (default 3, at most `nodes`). */
  replicas?: number;
  /** Write a V8 CPU profile of each node process into this directory (node --cpu-prof). */
  profileDir?: string;
}): Promise<Deployment> {
  mkdirSync(options.dir, { recursive: true });
  const nodeCount = options.nodes ?? 3;
  const replicas = options.replicas ?? 3;
  if (!(replicas >= 1 && replicas <= nodeCount))
    throw new Error(`RF ${replicas} needs 1..${nodeCount} nodes`);
  const nodes: NodeProc[] = [];
  for (const id of Array.from({ length: nodeCount }, (_, i) => `n${i + 1}`)) {
    const metricsPort = await freePort();
    const log = openSync(join(options.dir, `${id}.log`), 'a');
    const l = options.layout;
    const proc = spawn(
      process.execPath,
      [
        ...(options.profileDir === undefined
          ? []
          : ['--cpu-prof', '--cpu-prof-dir', options.profileDir, '--cpu-prof-name', `${id}.cpuprofile`]),
        CLI,
        'node',
        '--id',
        id,
        '--listen',
        `tcp://127.0.0.1:${await freePort()}`,
        '--client',
        `tcp://127.0.0.1:${await freePort()}`,
        '--data-dir',
        join(options.dir, id),
        '--etcd',
        options.etcd.join(','),
        '--cluster',
        options.cluster,
        '--mode',
        options.mode,
        '--regions',
        String(options.regions),
        '--replicas',
        String(replicas),
        '--nodes',
        String(nodeCount),
        '--metrics-port',
        String(metricsPort),
        '--segment-bytes',
        String(l.segmentBytes),
        '--l0-bytes',
        String(l.l0Bytes),
        '--growth-factor',
        String(l.growthFactor),
        '--max-levels',
        String(l.maxLevels),
      ],
      {
        stdio: ['ignore', log, log],
        env: { ...process.env, TALOS_LOG_LEVEL: 'warn', TALOS_CLUSTER_SECRET: `paper-${options.cluster}` },
      },
    );
    nodes.push({ id, proc, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics` });
  }
  const stopAll = async (): Promise<void> => {
    await Promise.all(
      nodes.map(
        (n) =>
          new Promise<void>((resolve) => {
            if (n.proc.exitCode !== null || n.proc.signalCode !== null) return resolve();
            const timer = setTimeout(() => n.proc.kill('SIGKILL'), 15_000);
            n.proc.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            n.proc.kill('SIGTERM');
          }),
      ),
    );
  };
  let client: TalosClient | undefined;
  try {
    client = await TalosClient.connect({
      etcd: options.etcd,
      cluster: options.cluster,
      operationTimeoutMs: 60_000,
    });
    const deadline = Date.now() + 60_000;
    for (;;) {
      const map = client.regions();
      if (
        map.length === options.regions &&
        map.every((r) => r.backups.length === replicas - 1 && (r.joining ?? []).length === 0)
      )
        break;
      for (const n of nodes)
        if (n.proc.exitCode !== null) throw new Error(`node ${n.id} exited (see ${options.dir}/${n.id}.log)`);
      if (Date.now() > deadline) throw new Error(`cluster not whole after 60 s: ${JSON.stringify(map)}`);
      await sleep(100);
    }
    // Every node answers /metrics (the endpoint starts with the process, but wait for it).
    for (const n of nodes) {
      for (let attempt = 0; ; attempt++) {
        try {
          await fetch(n.metricsUrl).then((r) => r.text());
          break;
        } catch (err) {
          if (attempt > 100) throw err;
          await sleep(100);
        }
      }
    }
  } catch (err) {
    await client?.close();
    await stopAll();
    throw err;
  }
  const c = client;
  return {
    client: c,
    sample: () => Promise.all(nodes.map((n) => sampleNode(n))),
    stop: async () => {
      await c.close();
      await stopAll();
    },
  };
}

async function sampleNode(node: NodeProc): Promise<NodeSample> {
  const text = await fetch(node.metricsUrl).then((r) => r.text());
  const gauges = parseProm(text);
  const sum = (name: string, labels: Record<string, string> = {}): number => {
    let total = 0;
    for (const g of gauges) {
      if (g.name !== name) continue;
      if (Object.entries(labels).every(([k, v]) => g.labels[k] === v)) total += g.value;
    }
    return total;
  };
  const byMessage: Record<string, number> = {};
  for (const g of gauges)
    if (g.name === 'talos_backup_message_cpu_seconds') byMessage[g.labels.message ?? '?'] = g.value;
  const levels: Record<string, number> = {};
  for (const g of gauges)
    if (g.name === 'talos_store_levels') levels[`${g.labels.role}:${g.labels.region}`] = g.value;
  const pid = node.proc.pid!;
  return {
    nodeId: node.id,
    loop: readMetricsHealth(text),
    primaryReadBytes: sum('talos_role_io_bytes', { role: 'primary', direction: 'read' }),
    primaryWrittenBytes: sum('talos_role_io_bytes', { role: 'primary', direction: 'written' }),
    primaryLogWrittenBytes: sum('talos_role_io_bytes', {
      role: 'primary',
      direction: 'written',
      category: 'log',
    }),
    primaryIndexWrittenBytes: sum('talos_role_io_bytes', {
      role: 'primary',
      direction: 'written',
      category: 'index',
    }),
    backupReadBytes: sum('talos_role_io_bytes', { role: 'backup', direction: 'read' }),
    backupWrittenBytes: sum('talos_role_io_bytes', { role: 'backup', direction: 'written' }),
    backupIndexReadBytes: sum('talos_role_io_bytes', {
      role: 'backup',
      direction: 'read',
      category: 'index',
    }),
    backupIndexWrittenBytes: sum('talos_role_io_bytes', {
      role: 'backup',
      direction: 'written',
      category: 'index',
    }),
    backupLogWrittenBytes: sum('talos_role_io_bytes', {
      role: 'backup',
      direction: 'written',
      category: 'log',
    }),
    backupManifestBytes: sum('talos_role_io_bytes', { role: 'backup', category: 'manifest' }),
    primaryCpuSeconds: sum('talos_role_cpu_seconds', { role: 'primary' }),
    backupCpuSeconds: sum('talos_role_cpu_seconds', { role: 'backup' }),
    backupCpuSecondsByMessage: byMessage,
    backupL0Bytes: sum('talos_role_l0_bytes', { role: 'backup' }),
    backupBufferBytes: sum('talos_backup_log_buffer_bytes'),
    primaryUserBytes: sum('talos_role_user_bytes', { role: 'primary' }),
    fabricBytes: sum('talos_fabric_bytes'),
    levels,
    ...procNumbers(pid),
  };
}

function procNumbers(
  pid: number,
): Pick<NodeSample, 'processCpuSeconds' | 'procReadBytes' | 'procWriteBytes' | 'peakRssBytes'> {
  const out = { processCpuSeconds: 0, procReadBytes: 0, procWriteBytes: 0, peakRssBytes: 0 };
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    out.processCpuSeconds = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
    if (existsSync(`/proc/${pid}/io`)) {
      const io = readFileSync(`/proc/${pid}/io`, 'utf8');
      out.procReadBytes = Number(/^read_bytes: (\d+)/m.exec(io)?.[1] ?? 0);
      out.procWriteBytes = Number(/^write_bytes: (\d+)/m.exec(io)?.[1] ?? 0);
    }
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    out.peakRssBytes = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
  } catch {
    // not Linux, or the process is gone: leave zeros
  }
  return out;
}

interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The sample lines of a Prometheus text exposition. */
export function parseProm(text: string): PromSample[] {
  const out: PromSample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (m === null) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}
