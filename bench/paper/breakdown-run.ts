/**
 * `bench:paper --breakdown`: where a put's CPU goes (issue 16 item 6), in one run. The same Load A
 * (SD80 values, 24-byte hashed keys, GF 8, the paper benchmark's small stores) on
 *   1. the in-process cluster (src/cluster/local-cluster.ts: three nodes on this thread, memory
 *      fabric, embedded coordinator, real files, RF 3, Send-Index) — the protocol without the
 *      deployment;
 *   2. one `talos node` process at RF 1 with the same TalosClient and client protocol — the
 *      deployment without replication;
 *   3. three node processes at RF 3 and RF 2, Send-Index and Build-Index — today's deployment.
 * For every configuration: throughput, p50 / p99, node CPU per put, each node's event-loop delay;
 * for the node processes also the CPU seconds by role and phase (breakdown.ts says what each
 * column measures). With `--profile DIR` every node process is profiled (the JS thread by code
 * path, profile-summary.ts) and RF 3 / RF 2 also run with one region, where each process has one
 * role: RubbleDB's table exclusive by process (`processRolePhases`). The configurations run one after another on a fresh cluster each, so machine
 * load shifts between them: the ratios are of one run, not of one instant.
 */
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import * as hdr from 'hdr-histogram-js';
import { createLocalCluster } from '../../src/cluster/local-cluster.js';
import type { ReplicationMode } from '../../src/replication/messages.js';
import { runWorkers } from '../support.js';
import {
  type BreakdownRun,
  breakdownTargets,
  cpuPhases,
  cpuPhaseTable,
  type DeploymentRatios,
  deploymentRatios,
  deploymentTable,
  eventLoopTable,
  jsThreadTable,
  processRolePhases,
  processRoleTable,
  runLabel,
} from './breakdown.js';
import { type Config, type PhaseResult, round, runPhase } from './phase.js';
import { deploy, type StoreLayout } from './processes.js';
import { codePathMs, type Profile, readProfiles } from './profile-summary.js';
import { type Operation, recordKey, valueBytes } from './workload.js';

const CONFIG: Omit<Config, 'replicas'> = { mix: 'SD80', gf: 8, runs: false };
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export interface BreakdownOptions {
  etcd: string[];
  root: string;
  keyCount: number;
  concurrency: number;
  regions: number;
  layout: StoreLayout;
  pool: Buffer;
  progress: boolean;
  say: (line: string) => void;
  /** Profile every node process (node --cpu-prof) under this directory and report the JS thread by code path. */
  profileDir?: string;
}

export interface BreakdownSummary {
  runs: BreakdownRun[];
  ratios: DeploymentRatios;
  targets: ReturnType<typeof breakdownTargets>;
  /** The node-process phases in full (device bytes, network, backup CPU by message…). */
  phases: PhaseResult[];
}

/** The configurations of one breakdown run, in the order they run. */
export const BREAKDOWN_MATRIX: readonly {
  kind: BreakdownRun['kind'];
  nodes: number;
  replicas: number;
  mode: ReplicationMode;
}[] = [
  { kind: 'in-process', nodes: 3, replicas: 3, mode: 'send-index' },
  { kind: 'processes', nodes: 1, replicas: 1, mode: 'send-index' },
  { kind: 'processes', nodes: 3, replicas: 3, mode: 'send-index' },
  { kind: 'processes', nodes: 3, replicas: 3, mode: 'build-index' },
  { kind: 'processes', nodes: 3, replicas: 2, mode: 'send-index' },
  { kind: 'processes', nodes: 3, replicas: 2, mode: 'build-index' },
];

/**
 * With --profile, also RF 3 and RF 2 with one region (n1..n3: one process holds the only primary
 * store, the others only backups), so that the process is the role and its profile gives the phase.
 */
export const ROLE_PER_PROCESS_MATRIX: readonly {
  kind: 'processes';
  nodes: number;
  replicas: number;
  mode: ReplicationMode;
}[] = [
  { kind: 'processes', nodes: 3, replicas: 3, mode: 'send-index' },
  { kind: 'processes', nodes: 3, replicas: 3, mode: 'build-index' },
  { kind: 'processes', nodes: 3, replicas: 2, mode: 'send-index' },
  { kind: 'processes', nodes: 3, replicas: 2, mode: 'build-index' },
];

export async function runBreakdown(o: BreakdownOptions): Promise<BreakdownSummary> {
  const load: Operation[] = Array.from({ length: o.keyCount }, (_, i) => ({ kind: 'insert', record: i }));
  const runs: BreakdownRun[] = [];
  const phases: PhaseResult[] = [];
  let n = 0;
  const matrix = [
    ...BREAKDOWN_MATRIX.map((c) => ({ ...c, rolePerProcess: false })),
    ...(o.profileDir === undefined
      ? []
      : ROLE_PER_PROCESS_MATRIX.map((c) => ({ ...c, rolePerProcess: true }))),
  ];
  for (const c of matrix) {
    n++;
    const dir = join(o.root, `breakdown-${n}`);
    let run: BreakdownRun;
    try {
      if (c.kind === 'in-process') {
        run = await inProcess(o, load, dir);
      } else {
        const profileDir =
          o.profileDir === undefined ? undefined : join(o.profileDir, `${n}-rf${c.replicas}-${c.mode}`);
        const dep = await deploy({
          etcd: o.etcd,
          cluster: `breakdown-${process.pid}-${n}`,
          dir,
          mode: c.mode,
          regions: c.rolePerProcess ? 1 : o.regions,
          layout: o.layout,
          nodes: c.nodes,
          replicas: c.replicas,
          ...(profileDir === undefined ? {} : { profileDir }),
        });
        let phase: PhaseResult | undefined;
        try {
          const config: Config = { ...CONFIG, replicas: c.replicas };
          phase = await runPhase(dep, config, c.mode, 'loadA', load, o.pool, o.concurrency, o.progress);
          phases.push(phase);
        } finally {
          await dep.stop();
        }
        // The node processes wrote their profiles as they exited.
        const { rolePerProcess, ...shape } = c;
        run = {
          ...shape,
          ...(rolePerProcess ? { rolePerProcess, processCpu: roleProcesses(phase, profileDir) } : {}),
          ops: phase.ops,
          opsPerSec: phase.opsPerSec,
          p50Us: phase.p50Us,
          p99Us: phase.p99Us,
          nodeCpuUsPerOp: phase.nodeCpuUsPerOp,
          clientCpuUsPerOp: phase.clientCpuUsPerOp,
          eventLoop: phase.eventLoop,
          cpu: cpuPhases(phase.cpuSeconds),
          jsThreadMs: profileDir === undefined ? null : codePathMs(readProfiles(profileDir)),
        };
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    runs.push(run);
    o.say(
      `  ${runLabel(run)}: ${run.opsPerSec} puts/s, p50 ${run.p50Us} µs, p99 ${run.p99Us} µs, node CPU ${run.nodeCpuUsPerOp} µs/put`,
    );
  }
  const ratios = deploymentRatios(runs);
  return { runs, ratios, targets: breakdownTargets(runs, ratios), phases };
}

/** The RubbleDB phases of a one-region run: each process's /proc CPU split by its own profile. */
function roleProcesses(phase: PhaseResult, profileDir: string | undefined): BreakdownRun['processCpu'] {
  if (profileDir === undefined) return null;
  return processRolePhases(
    phase.perNode.map((n) => ({
      ...n,
      jsThreadMs: codePathMs([
        JSON.parse(readFileSync(join(profileDir, `${n.nodeId}.cpuprofile`), 'utf8')) as Profile,
      ]),
    })),
  );
}

/**
 * The in-process cluster on the same workload and store layout. Its CPU is this process's
 * (nodes + client + load generator: one thread does everything), from the first put until the
 * cluster is quiet, as for the node processes; its event loop is this process's, worst 1 s p99.
 */
async function inProcess(o: BreakdownOptions, load: Operation[], dir: string): Promise<BreakdownRun> {
  mkdirSync(dir, { recursive: true });
  const cluster = await createLocalCluster({
    nodes: 3,
    regions: o.regions,
    replicas: 3,
    mode: 'send-index',
    dataDir: dir,
    store: {
      segmentBytes: o.layout.segmentBytes,
      l0Bytes: o.layout.l0Bytes,
      growthFactor: o.layout.growthFactor,
      maxLevels: o.layout.maxLevels,
    },
  });
  try {
    const client = cluster.client();
    const loop = monitorEventLoopDelay({ resolution: 10 });
    const worst = { p99Ms: 0, maxMs: 0 };
    const note = (): void => {
      worst.p99Ms = Math.max(worst.p99Ms, round(loop.percentile(99) / 1e6));
      worst.maxMs = Math.max(worst.maxMs, round(loop.max / 1e6));
      loop.reset();
    };
    loop.enable();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        await sleep(1000);
        note();
      }
    })();
    const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000 });
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    await runWorkers(load.length, o.concurrency, async (i) => {
      const record = load[i]!.record;
      const bytes = valueBytes(CONFIG.mix, record);
      const at = ((record * 7919) >>> 0) % (o.pool.length - bytes);
      const t = performance.now();
      await client.put(recordKey(record), o.pool.subarray(at, at + bytes));
      histogram.recordValue(Math.max(1, Math.round((performance.now() - t) * 1000)));
    });
    const seconds = (performance.now() - started) / 1000;
    note();
    await quietCluster(() => cluster.stats());
    const cpu = process.cpuUsage(cpuBefore);
    sampling = false;
    await sampler;
    loop.disable();
    return {
      kind: 'in-process',
      nodes: 3,
      replicas: 3,
      mode: 'send-index',
      ops: load.length,
      opsPerSec: Math.round(load.length / seconds),
      p50Us: histogram.getValueAtPercentile(50),
      p99Us: histogram.getValueAtPercentile(99),
      nodeCpuUsPerOp: round((cpu.user + cpu.system) / load.length),
      clientCpuUsPerOp: null,
      eventLoop: [{ nodeId: 'in-process', ...worst }],
      cpu: null,
      jsThreadMs: null,
    };
  } finally {
    await cluster.close();
  }
}

/** Waits until device and fabric bytes stop moving (two equal samples 500 ms apart), up to 30 s. */
async function quietCluster(
  stats: () => Promise<{
    primary: { ioBytes: number };
    backup: { ioBytes: number };
    fabric: { writtenBytes: number; sentBytes: number };
  }>,
): Promise<void> {
  let last = '';
  const deadline = Date.now() + 30_000;
  for (;;) {
    await sleep(500);
    const s = await stats();
    const key = JSON.stringify([
      s.primary.ioBytes,
      s.backup.ioBytes,
      s.fabric.writtenBytes,
      s.fabric.sentBytes,
    ]);
    if (key === last || Date.now() > deadline) return;
    last = key;
  }
}

/** The breakdown's report, as Markdown lines (stdout and docs). */
export function breakdownReport(s: BreakdownSummary): string[] {
  const r = s.ratios;
  const cell = (x: number | null): string => (x === null ? '–' : String(x));
  return [
    ...deploymentTable(s.runs),
    '',
    `- Throughput, three processes ÷ in-process (RF 3, Send-Index): **${cell(r.processesVsInProcessThroughput)}** (target ≥ 0.6); node CPU per put ${cell(r.processesVsInProcessCpu)}×, node + client CPU per put ${cell(r.processesVsInProcessTotalCpu)}×.`,
    `- Replication on node processes, RF 3 ÷ RF 1 (Send-Index): throughput ${cell(r.rf3VsRf1Throughput)}×, node CPU per put ${cell(r.rf3VsRf1Cpu)}×.`,
    `- Node CPU per put, Build ÷ Send: RF 3 ${cell(r.buildVsSendCpuRf3)}, RF 2 ${cell(r.buildVsSendCpuRf2)}.`,
    '',
    ...cpuPhaseTable(s.runs),
    '',
    ...eventLoopTable(s.runs),
    '',
    ...(s.runs.some((r) => r.jsThreadMs !== null) ? [...jsThreadTable(s.runs), ''] : []),
    ...(s.runs.some((r) => r.processCpu != null) ? [...processRoleTable(s.runs), ''] : []),
    ...s.targets.map((t) => `target ${t.name}: ${cell(t.value)} (${t.goal}) ${t.met ? 'met' : 'missed'}`),
  ];
}
