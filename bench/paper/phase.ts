/**
 * One measured phase of the paper benchmark on a deployment of node processes: the workload driven
 * through a TalosClient with N operations in flight, every node's gauges sampled before and after
 * (after the cluster went quiet: backup bytes, CPU and fabric bytes stopped moving), each node's
 * event-loop delay sampled every second, and the deltas turned into per-operation numbers. Shared
 * by the paper matrix (main.ts) and the CPU breakdown (breakdown-run.ts).
 */
import { Presets, SingleBar } from 'cli-progress';
import * as hdr from 'hdr-histogram-js';
import { createPrng } from '../../src/engine/prng.js';
import type { ReplicationMode } from '../../src/replication/messages.js';
import { runWorkers } from '../support.js';
import type { CpuSeconds } from './breakdown.js';
import type { Deployment, NodeSample } from './processes.js';
import type { IoShares } from './profile-summary.js';
import {
  type MixName,
  type Operation,
  recordKey,
  valueBytes,
  WORKLOAD_LABEL,
  type WorkloadName,
} from './workload.js';

const DEFAULT_REPLICAS = 3;

export interface Config {
  mix: MixName;
  gf: number;
  /** Run A–D after the load (the headline configuration of a full run). */
  runs: boolean;
  /** Copies per region (default 3): the write-once floor is (replicas − 1) × what the primaries wrote. */
  replicas?: number;
}

export interface PhaseResult {
  workload: WorkloadName;
  mode: ReplicationMode;
  mix: MixName;
  gf: number;
  ops: number;
  appBytes: number;
  seconds: number;
  opsPerSec: number;
  p50Us: number;
  p99Us: number;
  notFound: number;
  backupIoBytes: number;
  backupIoAmp: number | null;
  floorAmp: number | null;
  backupVsFloor: number | null;
  backupLogWrittenBytes: number;
  backupIndexWrittenBytes: number;
  backupIndexReadBytes: number;
  backupManifestBytes: number;
  backupOtherBytes: number;
  backupCpuUsPerOp: number;
  /**
   * Backup CPU per op by where it went: log segments persisted (SegmentSealed), shipped index
   * segments verified + translated + written (IndexSegment), compactions installed
   * (CompactionCommit / InstallLevels), other messages, and the rest: Build-Index backups' own
   * flushes and compactions.
   */
  backupCpuBreakdown: Record<string, number>;
  primaryCpuUsPerOp: number;
  nodeCpuUsPerOp: number;
  /**
   * CPU of the benchmark process itself during the workload (the TalosClient and the load
   * generator), per op: not node CPU, reported so the in-process cluster (which runs its nodes and
   * its client on this one thread) can be compared with node + client CPU.
   */
  clientCpuUsPerOp: number;
  /** Per node: its /proc CPU seconds in the phase and whether it holds a primary / a backup store. */
  perNode: { nodeId: string; cpuSeconds: number; primary: boolean; backup: boolean }[];
  /** The phase's CPU seconds summed over the nodes: /proc process CPU and the actors' role accounting. */
  cpuSeconds: CpuSeconds;
  /** Process CPU of the nodes that hold no primary store (only with --regions 1), per op; null otherwise. */
  pureBackupCpuUsPerOp: number | null;
  networkBytes: number;
  networkAmp: number | null;
  procWriteBytes: number;
  backupBufferBytes: number;
  backupL0PeakBytes: number;
  peakRssBytes: number;
  levelsMin: number;
  levelsMax: number;
  /**
   * Per node: the worst event-loop delay p99 of the run's 1 s scrape intervals, and the longest
   * delay seen (prom-client's histogram, reset at every scrape).
   */
  eventLoop: { nodeId: string; p99Ms: number; maxMs: number }[];
  /** With --profile: where the nodes' JS threads waited on I/O, as shares of non-idle samples. */
  jsThreadIo?: IoShares;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
export const total = (samples: NodeSample[], f: (s: NodeSample) => number): number =>
  samples.reduce((sum, s) => sum + f(s), 0);
export const round = (x: number, digits = 2): number => Number(x.toFixed(digits));

/** Values: views into one pool of random bytes (deterministic per seed). */
export function valuePool(seed: number): Buffer {
  const rng = createPrng(seed);
  const pool = Buffer.alloc(1 << 20);
  for (let i = 0; i < pool.length; i += 4) pool.writeUInt32LE(rng.int(0, 0x7fffffff), i);
  return pool;
}

/** Waits until backup bytes, CPU and fabric bytes stop moving (two equal samples), up to 30 s. */
async function quiet(dep: Deployment): Promise<NodeSample[]> {
  let last = '';
  const deadline = Date.now() + 30_000;
  for (;;) {
    await sleep(500);
    const samples = await dep.sample();
    const key = JSON.stringify(
      samples.map((s) => [s.backupWrittenBytes, s.backupReadBytes, s.fabricBytes, s.primaryWrittenBytes]),
    );
    if (key === last || Date.now() > deadline) return samples;
    last = key;
  }
}

export async function runPhase(
  dep: Deployment,
  config: Config,
  mode: ReplicationMode,
  workload: WorkloadName,
  ops: Operation[],
  pool: Buffer,
  concurrency: number,
  progress: boolean,
): Promise<PhaseResult> {
  const value = (record: number, version: number): Buffer => {
    const bytes = valueBytes(config.mix, record);
    const at = ((record * 7919 + version * 104729) >>> 0) % (pool.length - bytes);
    return pool.subarray(at, at + bytes);
  };
  const before = await dep.sample();
  let l0Peak = total(before, (s) => s.backupL0Bytes);
  const loop = new Map<string, { p99Ms: number; maxMs: number }>();
  const noteLoop = (samples: NodeSample[]): void => {
    for (const s of samples) {
      const seen = loop.get(s.nodeId) ?? { p99Ms: 0, maxMs: 0 };
      if (Number.isFinite(s.loop.p99Ms)) seen.p99Ms = Math.max(seen.p99Ms, s.loop.p99Ms);
      if (Number.isFinite(s.loop.maxMs)) seen.maxMs = Math.max(seen.maxMs, s.loop.maxMs);
      loop.set(s.nodeId, seen);
    }
  };
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      await sleep(1000);
      if (!sampling) break;
      const now = await dep.sample().catch(() => undefined);
      if (now !== undefined) noteLoop(now);
      if (now !== undefined)
        l0Peak = Math.max(
          l0Peak,
          total(now, (s) => s.backupL0Bytes),
        );
    }
  })();
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000 });
  const bar = progress
    ? new SingleBar(
        {
          format: `  ${`${WORKLOAD_LABEL[workload]} ${config.mix} GF${config.gf} ${mode}`.padEnd(34)} [{bar}] {value}/{total} {eta}s`,
          stream: process.stderr,
        },
        Presets.shades_classic,
      )
    : undefined;
  bar?.start(ops.length, 0);
  let done = 0;
  let appBytes = 0;
  let notFound = 0;
  const client = dep.client;
  const clientCpuBefore = process.cpuUsage();
  const started = performance.now();
  await runWorkers(ops.length, concurrency, async (i) => {
    const op = ops[i]!;
    const key = recordKey(op.record);
    const t = performance.now();
    if (op.kind === 'read') {
      if ((await client.get(key)) === undefined) notFound++;
    } else {
      const v = value(op.record, op.kind === 'update' ? i + 1 : 0);
      appBytes += key.length + v.length;
      await client.put(key, v);
    }
    histogram.recordValue(Math.max(1, Math.round((performance.now() - t) * 1000)));
    if (++done % 512 === 0) bar?.update(done);
  });
  const seconds = (performance.now() - started) / 1000;
  const clientCpu = process.cpuUsage(clientCpuBefore);
  noteLoop(await dep.sample()); // the last interval of the run, before the quiet wait
  bar?.update(done);
  bar?.stop();
  const after = await quiet(dep);
  sampling = false;
  await sampler;
  const d = (f: (s: NodeSample) => number): number => total(after, f) - total(before, f);
  const backupIoBytes = d((s) => s.backupReadBytes + s.backupWrittenBytes);
  const floorBytes =
    ((config.replicas ?? DEFAULT_REPLICAS) - 1) *
    d((s) => s.primaryLogWrittenBytes + s.primaryIndexWrittenBytes);
  const backupLogWrittenBytes = d((s) => s.backupLogWrittenBytes);
  const backupIndexWrittenBytes = d((s) => s.backupIndexWrittenBytes);
  const backupIndexReadBytes = d((s) => s.backupIndexReadBytes);
  const backupManifestBytes = d((s) => s.backupManifestBytes);
  const networkBytes = d((s) => s.fabricBytes);
  const levels = after.flatMap((s) => Object.values(s.levels));
  const pureBackups = after
    .filter((s) => !Object.keys(s.levels).some((k) => k.startsWith('primary:')))
    .map((s) => s.nodeId);
  const perOp = (seconds: number): number => round((seconds * 1e6) / ops.length);
  const amp = (bytes: number): number | null => (appBytes === 0 ? null : round(bytes / appBytes, 3));
  return {
    workload,
    mode,
    mix: config.mix,
    gf: config.gf,
    ops: ops.length,
    appBytes,
    seconds: round(seconds),
    opsPerSec: Math.round(ops.length / seconds),
    p50Us: histogram.getValueAtPercentile(50),
    p99Us: histogram.getValueAtPercentile(99),
    notFound,
    backupIoBytes,
    backupIoAmp: amp(backupIoBytes),
    floorAmp: amp(floorBytes),
    backupVsFloor: floorBytes === 0 ? null : round(backupIoBytes / floorBytes, 3),
    backupLogWrittenBytes,
    backupIndexWrittenBytes,
    backupIndexReadBytes,
    backupManifestBytes,
    backupOtherBytes:
      backupIoBytes -
      backupLogWrittenBytes -
      backupIndexWrittenBytes -
      backupIndexReadBytes -
      backupManifestBytes,
    backupCpuUsPerOp: perOp(d((s) => s.backupCpuSeconds)),
    backupCpuBreakdown: cpuBreakdown(before, after, perOp),
    primaryCpuUsPerOp: perOp(d((s) => s.primaryCpuSeconds)),
    nodeCpuUsPerOp: perOp(d((s) => s.processCpuSeconds)),
    clientCpuUsPerOp: perOp((clientCpu.user + clientCpu.system) / 1e6),
    perNode: after.map((a) => ({
      nodeId: a.nodeId,
      cpuSeconds: a.processCpuSeconds - (before.find((b) => b.nodeId === a.nodeId)?.processCpuSeconds ?? 0),
      primary: Object.keys(a.levels).some((k) => k.startsWith('primary:')),
      backup: Object.keys(a.levels).some((k) => k.startsWith('backup:')),
    })),
    cpuSeconds: {
      process: d((s) => s.processCpuSeconds),
      primaryRole: d((s) => s.primaryCpuSeconds),
      backupRole: d((s) => s.backupCpuSeconds),
      backupByMessage: messageDeltas(before, after),
    },
    pureBackupCpuUsPerOp:
      pureBackups.length === 0
        ? null
        : perOp(
            pureBackups.reduce((sum, id) => {
              const a = after.find((s) => s.nodeId === id)!;
              const b = before.find((s) => s.nodeId === id)!;
              return sum + a.processCpuSeconds - b.processCpuSeconds;
            }, 0),
          ),
    networkBytes,
    networkAmp: amp(networkBytes),
    procWriteBytes: d((s) => s.procWriteBytes),
    backupBufferBytes: total(after, (s) => s.backupBufferBytes),
    backupL0PeakBytes: l0Peak,
    peakRssBytes: Math.max(...after.map((s) => s.peakRssBytes)),
    levelsMin: levels.length === 0 ? 0 : Math.min(...levels),
    levelsMax: levels.length === 0 ? 0 : Math.max(...levels),
    eventLoop: [...loop].map(([nodeId, l]) => ({ nodeId, ...l })),
  };
}

/** The backup role's CPU seconds by message type, after − before, summed over the nodes. */
function messageDeltas(before: NodeSample[], after: NodeSample[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [samples, sign] of [
    [after, 1],
    [before, -1],
  ] as const)
    for (const s of samples)
      for (const [message, sec] of Object.entries(s.backupCpuSecondsByMessage))
        out[message] = (out[message] ?? 0) + sign * sec;
  return out;
}

export const CPU_PARTS = [
  'SegmentSealed',
  'IndexSegment',
  'install',
  'other messages',
  'own flush + compaction',
];

function cpuBreakdown(
  before: NodeSample[],
  after: NodeSample[],
  perOp: (seconds: number) => number,
): Record<string, number> {
  const seconds = (samples: NodeSample[]): Record<string, number> => {
    const out: Record<string, number> = Object.fromEntries(CPU_PARTS.map((p) => [p, 0]));
    for (const s of samples) {
      let messages = 0;
      for (const [message, sec] of Object.entries(s.backupCpuSecondsByMessage)) {
        const part =
          message === 'SegmentSealed' || message === 'IndexSegment'
            ? message
            : message === 'CompactionCommit' || message === 'InstallLevels'
              ? 'install'
              : 'other messages';
        out[part] = (out[part] ?? 0) + sec;
        messages += sec;
      }
      out['own flush + compaction'] = (out['own flush + compaction'] ?? 0) + s.backupCpuSeconds - messages;
    }
    return out;
  };
  const a = seconds(after);
  const b = seconds(before);
  return Object.fromEntries(CPU_PARTS.map((p) => [p, perOp((a[p] ?? 0) - (b[p] ?? 0))]));
}
