/**
 * Where a put's CPU goes (issue 16 item 6): the pure parts of `bench:paper --breakdown` — the
 * per-role, per-phase CPU table in RubbleDB's form (USENIX ATC '23: primary request handling,
 * primary compaction, backup request handling, backup compaction) derived from what the node
 * processes account, and the ratios between deployments of the same workload (in-process cluster,
 * one node process at RF 1, three node processes at RF 2 / RF 3).
 *
 * What the node processes measure (src/actors/work.ts, src/actors/node-runtime.ts,
 * src/replication/backup-region.ts), and so what each column can mean:
 *   - process CPU: utime + stime of every node process (/proc/<pid>/stat), all threads;
 *   - primary role: process.cpuUsage() around each flush and compaction job of a primary store,
 *     across its awaits (`measured`);
 *   - backup role: the same around each replication message handler (by message type), plus
 *     Build-Index backups' own flushes and compactions.
 * The put path (client endpoint, the primary's append and log shipping) and the fabric's receive
 * path are charged to no role. So:
 *   - primary compaction = primary role CPU;
 *   - backup request handling = backup handlers of the per-put stream: SegmentSealed (persisting a
 *     shipped log segment; Build-Index: also indexing its records into the backup's L0) and the
 *     control messages (OpenBackup, Rebase, CloseRegion);
 *   - backup compaction = the rest of the backup role: keeping the backup's index — Send-Index:
 *     IndexSegment (verify + translate + write a shipped index segment), CompactionCommit and
 *     InstallLevels; Build-Index: its own flushes and compactions (and the same commits);
 *   - primary request handling = process CPU − both roles: the put path and log shipping, but also
 *     everything else not charged to a job (the backups' fabric receive, GC, timers, metrics
 *     scrapes). At RF 1 nothing else runs, so there it is the put path alone.
 * A job measured across its awaits is also charged the CPU of whatever ran during those awaits, so
 * the role columns are upper bounds and primary request handling a lower bound; `attributedShare`
 * (both roles ÷ process CPU) says how much of the process CPU the actors claim — above 1 the
 * overlap is certain and the remainder is negative.
 */
import type { ReplicationMode } from '../../src/replication/messages.js';
import { ratio } from '../support.js';
import { CODE_PATHS, type CodePath } from './profile-summary.js';

/** A phase's CPU seconds, summed over the nodes. */
export interface CpuSeconds {
  /** Node processes' utime + stime. */
  process: number;
  primaryRole: number;
  backupRole: number;
  /** The backup role's handlers by message type (part of backupRole). */
  backupByMessage: Record<string, number>;
}

/** Backup messages that maintain the backup's index rather than persist the put stream. */
export const INDEX_MESSAGES: readonly string[] = ['IndexSegment', 'CompactionCommit', 'InstallLevels'];

export const PHASES = ['primaryRequest', 'primaryCompaction', 'backupRequest', 'backupCompaction'] as const;
export type Phase = (typeof PHASES)[number];

export const PHASE_LABEL: Record<Phase, string> = {
  primaryRequest: 'primary request handling',
  primaryCompaction: 'primary compaction',
  backupRequest: 'backup request handling',
  backupCompaction: 'backup compaction',
};

export interface CpuPhases extends Record<Phase, number> {
  /** Process CPU seconds (the sum of the four phases). */
  total: number;
  /** Both roles' accounted CPU ÷ process CPU (null without process CPU). */
  attributedShare: number | null;
}

const round3 = (x: number): number => Number(x.toFixed(3));

/** The four RubbleDB phases from what the nodes account (see the header for what each means). */
export function cpuPhases(c: CpuSeconds): CpuPhases {
  let indexMessages = 0;
  let requestMessages = 0;
  for (const [message, seconds] of Object.entries(c.backupByMessage)) {
    if (INDEX_MESSAGES.includes(message)) indexMessages += seconds;
    else requestMessages += seconds;
  }
  // The backup role's CPU outside message handlers: Build-Index backups' own flushes + compactions.
  const ownWork = c.backupRole - indexMessages - requestMessages;
  return {
    primaryRequest: round3(c.process - c.primaryRole - c.backupRole),
    primaryCompaction: round3(c.primaryRole),
    backupRequest: round3(requestMessages),
    backupCompaction: round3(indexMessages + ownWork),
    total: round3(c.process),
    attributedShare: c.process > 0 ? round3((c.primaryRole + c.backupRole) / c.process) : null,
  };
}

/** How one configuration was deployed. */
export type DeploymentKind = 'in-process' | 'processes';

/** One configuration of the breakdown run, measured. */
export interface BreakdownRun {
  kind: DeploymentKind;
  /** Node processes (in-process: nodes of the LocalCluster). */
  nodes: number;
  replicas: number;
  mode: ReplicationMode;
  ops: number;
  opsPerSec: number;
  p50Us: number;
  p99Us: number;
  /** Node CPU per put: node processes' /proc CPU; in-process: this whole process (nodes + client). */
  nodeCpuUsPerOp: number;
  /** The benchmark process (TalosClient + load generator) per put; null in-process (it is in nodeCpuUsPerOp). */
  clientCpuUsPerOp: number | null;
  /** Per node: worst 1 s event-loop delay p99 and the longest delay of the run. */
  eventLoop: { nodeId: string; p99Ms: number; maxMs: number }[];
  /** CPU seconds by role and phase (processes only: the in-process cluster shares one process). */
  cpu: CpuPhases | null;
  /**
   * With --profile: the nodes' JS-thread samples by code path (profile-summary.ts codePathMs), ms,
   * over each process's lifetime (start-up and the quiet wait included); null otherwise.
   */
  jsThreadMs: Record<CodePath, number> | null;
  /**
   * Only in role-per-process runs (`--regions 1`: one node holds the only primary store, the others
   * only backups): the four phases from each process's /proc CPU split by its profile's code paths
   * (`processRolePhases`); null otherwise.
   */
  processCpu?: CpuPhases | null;
  /** A role-per-process run (one region): it is left out of the deployment ratios. */
  rolePerProcess?: boolean;
}

export function runLabel(
  r: Pick<BreakdownRun, 'kind' | 'nodes' | 'replicas' | 'mode' | 'rolePerProcess'>,
): string {
  const one = r.rolePerProcess === true ? ', 1 region' : '';
  const where =
    r.kind === 'in-process'
      ? `in-process (${r.nodes} nodes)`
      : `${r.nodes} process${r.nodes === 1 ? '' : 'es'}`;
  return `RF ${r.replicas}, ${where}${one}, ${r.mode}`;
}

export interface DeploymentRatios {
  /** Throughput, three processes RF 3 ÷ in-process cluster RF 3, Send-Index (target ≥ 0.6). */
  processesVsInProcessThroughput: number | null;
  /** Node CPU per put, three processes ÷ in-process (the in-process figure includes its client). */
  processesVsInProcessCpu: number | null;
  /** Node + client CPU per put, three processes ÷ in-process (like for like: everything the put costs). */
  processesVsInProcessTotalCpu: number | null;
  /** Throughput, RF 3 ÷ RF 1 on node processes, Send-Index: what replication costs. */
  rf3VsRf1Throughput: number | null;
  /** Node CPU per put, RF 3 ÷ RF 1 on node processes, Send-Index. */
  rf3VsRf1Cpu: number | null;
  /** Node CPU per put, Build ÷ Send at RF 3 and RF 2 (processes). */
  buildVsSendCpuRf3: number | null;
  buildVsSendCpuRf2: number | null;
}

function find(
  runs: BreakdownRun[],
  kind: DeploymentKind,
  replicas: number,
  mode: ReplicationMode,
  nodes?: number,
): BreakdownRun | undefined {
  return runs.find(
    (r) =>
      r.rolePerProcess !== true &&
      r.kind === kind &&
      r.replicas === replicas &&
      r.mode === mode &&
      (nodes === undefined || r.nodes === nodes),
  );
}

/** The ratios between configurations (null when one side was not run or measured zero). */
export function deploymentRatios(runs: BreakdownRun[]): DeploymentRatios {
  const inProcess = find(runs, 'in-process', 3, 'send-index');
  const rf3 = find(runs, 'processes', 3, 'send-index', 3);
  const rf1 = find(runs, 'processes', 1, 'send-index', 1);
  const rf3Build = find(runs, 'processes', 3, 'build-index', 3);
  const rf2 = find(runs, 'processes', 2, 'send-index');
  const rf2Build = find(runs, 'processes', 2, 'build-index');
  const of = (
    a: BreakdownRun | undefined,
    b: BreakdownRun | undefined,
    f: (r: BreakdownRun) => number,
  ): number | null => (a === undefined || b === undefined || f(b) === 0 ? null : ratio(f(a), f(b)));
  return {
    processesVsInProcessThroughput: of(rf3, inProcess, (r) => r.opsPerSec),
    processesVsInProcessCpu: of(rf3, inProcess, (r) => r.nodeCpuUsPerOp),
    processesVsInProcessTotalCpu: of(rf3, inProcess, (r) => r.nodeCpuUsPerOp + (r.clientCpuUsPerOp ?? 0)),
    rf3VsRf1Throughput: of(rf3, rf1, (r) => r.opsPerSec),
    rf3VsRf1Cpu: of(rf3, rf1, (r) => r.nodeCpuUsPerOp),
    buildVsSendCpuRf3: of(rf3Build, rf3, (r) => r.nodeCpuUsPerOp),
    buildVsSendCpuRf2: of(rf2Build, rf2, (r) => r.nodeCpuUsPerOp),
  };
}

export interface BreakdownTarget {
  name: string;
  value: number | null;
  goal: string;
  met: boolean;
}

/** Issue 16's targets this run measures (RF 3, three processes, Send-Index). */
export function breakdownTargets(runs: BreakdownRun[], ratios: DeploymentRatios): BreakdownTarget[] {
  const rf3 = find(runs, 'processes', 3, 'send-index', 3);
  const cpu = rf3?.nodeCpuUsPerOp ?? null;
  const p99Ms = rf3 === undefined ? null : rf3.p99Us / 1000;
  const t = ratios.processesVsInProcessThroughput;
  return [
    {
      name: 'node CPU per put, three processes (µs)',
      value: cpu,
      goal: '≤ 40',
      met: cpu !== null && cpu <= 40,
    },
    {
      name: 'throughput, three processes ÷ in-process',
      value: t,
      goal: '≥ 0.6',
      met: t !== null && t >= 0.6,
    },
    { name: 'put p99, three processes (ms)', value: p99Ms, goal: '≤ 5', met: p99Ms !== null && p99Ms <= 5 },
  ];
}

const cell = (x: number | null): string => (x === null ? '–' : String(x));

export function deploymentTable(runs: BreakdownRun[]): string[] {
  return [
    '| configuration | puts | puts/s | p50 µs | p99 µs | node CPU µs/put | client CPU µs/put | worst loop p99 ms | longest loop delay ms |',
    '| --- | --: | --: | --: | --: | --: | --: | --: | --: |',
    ...runs.map((r) => {
      const p99 = r.eventLoop.length === 0 ? null : Math.max(...r.eventLoop.map((l) => l.p99Ms));
      const max = r.eventLoop.length === 0 ? null : Math.max(...r.eventLoop.map((l) => l.maxMs));
      return `| ${runLabel(r)} | ${r.ops} | ${r.opsPerSec} | ${r.p50Us} | ${r.p99Us} | ${r.nodeCpuUsPerOp} | ${cell(r.clientCpuUsPerOp)} | ${cell(p99)} | ${cell(max)} |`;
    }),
  ];
}

/** RubbleDB's table: CPU seconds per role and phase, one row per (RF, mode) on node processes. */
export function cpuPhaseTable(runs: BreakdownRun[]): string[] {
  const rows = runs.filter((r) => r.kind === 'processes' && r.cpu !== null);
  return [
    `| configuration | ${PHASES.map((p) => `${PHASE_LABEL[p]} s`).join(' | ')} | total s | µs/put | roles ÷ process |`,
    `| --- | ${PHASES.map(() => '--:').join(' | ')} | --: | --: | --: |`,
    ...rows.map((r) => {
      const c = r.cpu!;
      return `| ${runLabel(r)} | ${PHASES.map((p) => c[p]).join(' | ')} | ${c.total} | ${r.nodeCpuUsPerOp} | ${cell(c.attributedShare)} |`;
    }),
  ];
}

export function eventLoopTable(runs: BreakdownRun[]): string[] {
  return [
    '| configuration | node | worst 1 s p99 ms | longest delay ms |',
    '| --- | --- | --: | --: |',
    ...runs.flatMap((r) =>
      r.eventLoop.map((l) => `| ${runLabel(r)} | ${l.nodeId} | ${l.p99Ms} | ${l.maxMs} |`),
    ),
  ];
}

/**
 * The exclusive view: JS-thread samples by code path per configuration (profiled runs only), as
 * shares of the non-idle samples outside start-up. Shares, not times: V8 samples wall time, so on a
 * loaded machine a descheduled thread's samples are longer than its CPU time, and the profiles
 * cover each process's whole life (start-up waits, the quiet wait), not the phase alone.
 */
export function jsThreadTable(runs: BreakdownRun[]): string[] {
  const rows = runs.filter((r) => r.jsThreadMs !== null);
  if (rows.length === 0) return [];
  const paths = CODE_PATHS.filter((p) => p !== 'startup');
  return [
    `| configuration | ${paths.map((p) => `${p} %`).join(' | ')} | non-idle ms outside start-up |`,
    `| --- | ${paths.map(() => '--:').join(' | ')} | --: |`,
    ...rows.map((r) => {
      const ms = r.jsThreadMs!;
      const all = paths.reduce((sum, p) => sum + ms[p], 0);
      const share = (p: CodePath): string => (all === 0 ? '–' : ((100 * ms[p]) / all).toFixed(1));
      return `| ${runLabel(r)} | ${paths.map(share).join(' | ')} | ${all} |`;
    }),
  ];
}

/** One node process of a profiled phase. */
export interface ProcessProfile {
  nodeId: string;
  /** /proc CPU seconds in the phase. */
  cpuSeconds: number;
  /** Holds a primary store. */
  primary: boolean;
  /** Holds a backup store. */
  backup: boolean;
  jsThreadMs: Record<CodePath, number>;
}

/**
 * The four phases exactly by role where each process has one role (one region: the primary's
 * process, the backups' processes): each process's phase CPU (/proc) split by its JS thread's
 * code-path shares outside start-up — compaction = flush + compaction (and, on a backup, backup
 * index: IndexSegment, CompactionCommit, InstallLevels, translation), request handling = the rest
 * (GC, fabric, etcd client and other included, in proportion to where they ran). Null when a
 * process holds both roles (they cannot be told apart inside one process). A process with neither
 * (RF 2 on three nodes, one region) is left out.
 */
export function processRolePhases(all: ProcessProfile[]): CpuPhases | null {
  const nodes = all.filter((n) => n.primary || n.backup);
  if (nodes.length === 0 || nodes.some((n) => n.primary && n.backup)) return null;
  const out = { primaryRequest: 0, primaryCompaction: 0, backupRequest: 0, backupCompaction: 0 };
  for (const n of nodes) {
    const ms = n.jsThreadMs;
    const nonIdleMs = CODE_PATHS.reduce((sum, p) => (p === 'startup' ? sum : sum + ms[p]), 0);
    const compactionMs = ms['flush + compaction'] + (n.primary ? 0 : ms['backup index']);
    const compaction = nonIdleMs === 0 ? 0 : (n.cpuSeconds * compactionMs) / nonIdleMs;
    if (n.primary) {
      out.primaryCompaction += compaction;
      out.primaryRequest += n.cpuSeconds - compaction;
    } else {
      out.backupCompaction += compaction;
      out.backupRequest += n.cpuSeconds - compaction;
    }
  }
  return {
    primaryRequest: round3(out.primaryRequest),
    primaryCompaction: round3(out.primaryCompaction),
    backupRequest: round3(out.backupRequest),
    backupCompaction: round3(out.backupCompaction),
    total: round3(nodes.reduce((sum, n) => sum + n.cpuSeconds, 0)),
    attributedShare: null,
  };
}

/** RubbleDB's table from role-per-process runs (exclusive by process; phase split by profile). */
export function processRoleTable(runs: BreakdownRun[]): string[] {
  const rows = runs.filter((r) => r.processCpu !== undefined && r.processCpu !== null);
  if (rows.length === 0) return [];
  return [
    `| configuration | ${PHASES.map((p) => `${PHASE_LABEL[p]} s`).join(' | ')} | total s | puts/s | µs/put |`,
    `| --- | ${PHASES.map(() => '--:').join(' | ')} | --: | --: | --: |`,
    ...rows.map((r) => {
      const c = r.processCpu!;
      return `| ${runLabel(r)} | ${PHASES.map((p) => c[p]).join(' | ')} | ${c.total} | ${r.opsPerSec} | ${r.nodeCpuUsPerOp} |`;
    }),
  ];
}
