/**
 * The main job (`npm start` = `talos demo`): a 3-node replicated cluster in one process — embedded
 * coordinator, memory fabric, real files with fsync in a temporary directory — under a YCSB-style
 * workload, then a verification of every acknowledged write.
 *
 * Story of a run (per replication mode):
 *   1. Start the cluster; print the regions the controller placed (primary, backups, epoch).
 *   2. Load A: insert every key (hashed, hex-prefixed ~24-byte keys so they spread over regions),
 *      `concurrency` writers in flight. Run A: 50 % reads / 50 % updates of random loaded keys. A
 *      writer owns the keys ≡ its index (mod writers), so a key's writes are ordered and the latest
 *      acknowledged value of each key is known exactly. Compactions print as they commit on a
 *      primary (shipped to the backups in Send-Index mode).
 *   3. Verify: read every key back through the client (from its primary); flush every primary (a
 *      tail sync reaches every backup first) and settle, then scan each backup's own store and
 *      compare it with the acknowledged values of its region. Any difference is a lost write.
 *   4. Print per-role device I/O and CPU and the fabric bytes.
 * With `--compare` the same workload runs again in Build-Index mode and the two print side by
 * side with the ratios (Build-Index ÷ Send-Index). `--json` prints one summary object as the last
 * line. The exit code is 1 when anything acknowledged was not found.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MultiBar, Presets } from 'cli-progress';
import type { RegionConfig } from '../../coordination/types.js';
import { type ClusterStats, createLocalCluster, type LocalCluster } from '../cluster/local-cluster.js';
import { OutcomeLedger } from '../cluster/outcome-ledger.js';
import { byMinKey, regionOf } from '../cluster/regions.js';
import type { CompactionCommittedEvent } from '../engine/hooks.js';
import { createPrng } from '../engine/prng.js';
import { OutcomeUnknownError } from '../errors.js';
import type { ReplicationMode } from '../replication/messages.js';

export interface DemoOptions {
  quick?: boolean;
  json?: boolean;
  /** Parent directory of the data (default: a fresh temporary directory, removed afterwards). */
  dir?: string;
  keys?: number;
  mode?: ReplicationMode;
  /** Also run Build-Index (or Send-Index, if mode is build-index) and print both side by side. */
  compare?: boolean;
  concurrency?: number;
  valueBytes?: number;
  /** Where the human-readable story goes (default stdout); the JSON line always goes to stdout. */
  out?: (line: string) => void;
  /** Show progress bars (default: when stderr is a TTY and not --json). */
  progress?: boolean;
  /** Kill a primary mid-load, then bring it back (default true; `--no-failover`). */
  failover?: boolean;
  /** Lease TTL of the demo's nodes: how long a dead primary holds its region (default 1000). */
  leaseTtlMs?: number;
}

export interface ModeResult {
  mode: ReplicationMode;
  acknowledged: number;
  verified: number;
  lost: number;
  /** Keys whose latest acknowledged value a backup's store does not return after flush + settle. */
  backupMismatches: number;
  loadOpsPerSec: number;
  runOpsPerSec: number;
  primaryIoBytes: number;
  backupIoBytes: number;
  primaryCpuMs: number;
  backupCpuMs: number;
  fabricBytes: number;
  compactions: number;
  shippedIndexSegments: number;
  levels: number;
  /** Writes whose outcome is unknown (in flight when their primary died): neither lost nor counted. */
  unknownOutcomes: number;
  /** From killing a region's primary until its new primary served (0 without --failover). */
  failoverMs: number;
  /** Bytes the promoted primary replayed into L0 when it reopened as a primary. */
  replayedBytes: number;
  /** Bytes primaries sent to re-sync backups (the returning node, rebased ones). */
  resyncedBytes: number;
}

export interface DemoSummary extends ModeResult {
  keys: number;
  compare?: ModeResult;
  ratios?: { backupIo: number; backupCpu: number; fabric: number; loadThroughput: number };
}

/** 8 hex digits of FNV-1a over the index, then `user` and the index: 24 bytes, spread over regions. */
/** Bytes every live node's primaries sent to re-sync backups so far. */
function totalResynced(cluster: LocalCluster): number {
  let total = 0;
  for (const nodeId of cluster.nodeIds()) {
    if (!cluster.deadNodes().includes(nodeId)) total += cluster.runtime(nodeId).resyncedBytes();
  }
  return total;
}

export function demoKey(i: number): string {
  let h = 0x811c9dc5;
  for (const c of String(i)) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return `${h.toString(16).padStart(8, '0')}user${String(i).padStart(12, '0')}`;
}

function demoValue(i: number, version: number, valueBytes: number): string {
  return `v${version}:${i}:`.padEnd(valueBytes, 'x');
}

export async function runDemo(options: DemoOptions = {}): Promise<DemoSummary> {
  const keys = options.keys ?? (options.quick ? 20_000 : 150_000);
  const mode = options.mode ?? 'send-index';
  const say = options.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  const first = await runMode(mode, keys, options, say);
  let summary: DemoSummary = { keys, ...first };
  if (options.compare) {
    const other: ReplicationMode = mode === 'send-index' ? 'build-index' : 'send-index';
    const second = await runMode(other, keys, options, say);
    const [send, build] = mode === 'send-index' ? [first, second] : [second, first];
    const ratio = (a: number, b: number): number => (b === 0 ? 0 : Number((a / b).toFixed(3)));
    summary = {
      ...summary,
      compare: second,
      ratios: {
        backupIo: ratio(build.backupIoBytes, send.backupIoBytes),
        backupCpu: ratio(build.backupCpuMs, send.backupCpuMs),
        fabric: ratio(build.fabricBytes, send.fabricBytes),
        loadThroughput: ratio(build.loadOpsPerSec, send.loadOpsPerSec),
      },
    };
    printComparison(send, build, summary.ratios!, say);
  }
  const lost =
    first.lost +
    first.backupMismatches +
    (summary.compare ? summary.compare.lost + summary.compare.backupMismatches : 0);
  say(
    lost === 0
      ? 'verified: every acknowledged write is on its primary and on every backup'
      : `LOST ${lost} acknowledged writes`,
  );
  if (options.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  if (lost > 0) process.exitCode = 1;
  return summary;
}

async function runMode(
  mode: ReplicationMode,
  keyCount: number,
  options: DemoOptions,
  say: (line: string) => void,
): Promise<ModeResult> {
  const concurrency = options.concurrency ?? 32;
  const valueBytes = options.valueBytes ?? 100;
  const parent = options.dir ?? mkdtempSync(join(tmpdir(), 'talos-demo-'));
  const dataDir = join(parent, mode);
  const showProgress = options.progress ?? (process.stderr.isTTY === true && !options.json);
  say('');
  say(
    `== ${mode}: 3 nodes, 3 regions, RF=3, ${keyCount} keys of ~24 B with ${valueBytes}-B values, data in ${dataDir}`,
  );
  const cluster = await createLocalCluster({
    nodes: 3,
    replicas: 3,
    mode,
    dataDir,
    // Small segments and L0 so that seals, flushes and compactions through several levels show.
    store: { segmentBytes: 512 * 1024, l0Bytes: 64 * 1024, growthFactor: 4 },
    // A dead primary holds its region until its lease runs out: short, so the failover shows.
    leaseTtlMs: options.leaseTtlMs ?? 1000,
  });
  const bars = showProgress
    ? new MultiBar(
        {
          format: '  {phase} [{bar}] {percentage}% {value}/{total} ops',
          hideCursor: true,
          stream: process.stderr,
        },
        Presets.shades_classic,
      )
    : undefined;
  const log = (line: string): void => {
    if (bars) bars.log(`${line}\n`);
    else say(line);
  };
  try {
    const sorted = [...cluster.regions()].sort(byMinKey);
    printRegions(sorted, say);
    const compactionLines = watchCompactions(cluster, sorted, log);

    const client = cluster.client({ operationTimeoutMs: 30_000 });
    const ledger = new OutcomeLedger();
    const versions = new Array<number>(keyCount).fill(0);
    /** A write: acknowledged, or of unknown outcome (its primary died meanwhile). */
    const write = async (key: string, value: string): Promise<void> => {
      try {
        await client.put(key, value);
        ledger.ack(key, value);
      } catch (err) {
        if (!(err instanceof OutcomeUnknownError)) throw err;
        ledger.unknown(key, value);
      }
    };

    // Load A: every key once; halfway through, the primary of the first region is killed.
    const doFailover = options.failover ?? true;
    let failover: Promise<FailoverReport> | undefined;
    const loadStarted = performance.now();
    await pool(keyCount, concurrency, bars, 'load A', async (i) => {
      if (doFailover && i === Math.floor(keyCount / 2)) failover = killPrimary(cluster, 'r0', log);
      await write(demoKey(i), demoValue(i, 0, valueBytes));
    });
    const loadMs = performance.now() - loadStarted;
    const failed = failover === undefined ? undefined : await failover;
    let resyncedBytes = 0;
    if (failed !== undefined) {
      // The dead node comes back with its disks and is re-synced as a backup of every region:
      // caught up online while the regions serve, then a member at the next epoch.
      const resyncedBefore = totalResynced(cluster);
      await cluster.restartNode(failed.victim);
      await cluster.waitForRegions((map) => map.every((r) => r.backups.includes(failed.victim)), 30_000);
      resyncedBytes = totalResynced(cluster) - resyncedBefore;
      const demoted = cluster.runtime(failed.victim).demotions;
      log(
        `  ${failed.victim} is back: a backup of every region again (${demoted.join(', ') || 'none'} re-synced from scratch, the others from where it was; caught up online while serving, then joined at the next epoch); ${mib(resyncedBytes)} re-synced`,
      );
    }

    // Run A: 50 % read / 50 % update; writer w only touches keys ≡ w (mod concurrency).
    const runOps = Math.floor(keyCount / 2);
    const random = createPrng(42);
    const picks = Array.from({ length: runOps }, () => ({
      slot: random.int(0, keyCount - 1),
      read: random.chance(0.5),
    }));
    let readMismatches = 0;
    const runStarted = performance.now();
    await pool(runOps, concurrency, bars, 'run A ', async (n, worker) => {
      const pick = picks[n]!;
      // Move the pick onto a key this worker owns, so one key's writes never race.
      const i = pick.slot - (pick.slot % concurrency) + worker;
      const slot = i < keyCount ? i : worker;
      const key = demoKey(slot);
      if (pick.read) {
        const got = (await client.get(key))?.toString('latin1');
        if (!ledger.accepts(key, got)) readMismatches++;
        return;
      }
      await write(key, demoValue(slot, ++versions[slot]!, valueBytes));
    });
    const runMs = performance.now() - runStarted;
    bars?.stop();
    compactionLines.stop();

    // Verify on the primaries through the client, then on every backup's own store.
    let verified = 0;
    let lost = readMismatches;
    for (const key of ledger.keys()) {
      if (ledger.accepts(key, (await client.get(key))?.toString('latin1'))) verified++;
      else if (ledger.ackedKeys.has(key)) lost++;
    }
    await cluster.flush();
    let backupMismatches = 0;
    const current = cluster.regions();
    for (const config of current) {
      const keys = ledger.keys().filter((key) => regionOf(current, key).regionId === config.regionId);
      for (const nodeId of config.backups) {
        const store = (await cluster.runtime(nodeId).backupStoresByRegion()).get(config.regionId);
        const rows = new Map<string, string>();
        for (const row of (await store?.scan()) ?? [])
          rows.set(row.key.toString('latin1'), row.value.toString('latin1'));
        let missing = 0;
        for (const key of keys)
          if (ledger.ackedKeys.has(key) && !ledger.accepts(key, rows.get(key))) missing++;
        const known = new Set(keys);
        const strangers = [...rows.keys()].filter((key) => !known.has(key)).length; // never written
        backupMismatches += missing + strangers;
        say(
          `  backup ${nodeId} of ${config.regionId}: ${rows.size} keys scanned, ${missing} missing or stale`,
        );
      }
    }

    const stats = await cluster.stats();
    const result = summarize(mode, cluster, stats, {
      acknowledged: ledger.ackedKeys.size,
      verified,
      lost,
      backupMismatches,
      loadOpsPerSec: Math.round(keyCount / (loadMs / 1000)),
      runOpsPerSec: Math.round(runOps / (runMs / 1000)),
      compactions: compactionLines.count(),
      unknownOutcomes: ledger.unknownOutcomes,
      failoverMs: failed?.failoverMs ?? 0,
      replayedBytes: failed?.replayedBytes ?? 0,
      resyncedBytes,
    });
    say(
      `  load A ${result.loadOpsPerSec} ops/s, run A ${result.runOpsPerSec} ops/s; ` +
        `${result.compactions} compactions, ${result.shippedIndexSegments} index segments shipped, ${result.levels} levels`,
    );
    printRoles(stats, say);
    say(
      `  verified ${verified} keys on primaries (${ledger.ackedKeys.size} acknowledged, ${ledger.unknownOutcomes} writes of unknown outcome); backup mismatches ${backupMismatches}; lost ${lost}`,
    );
    return result;
  } finally {
    bars?.stop();
    await cluster.close();
    if (options.dir === undefined) rmSync(parent, { recursive: true, force: true });
  }
}

function summarize(
  mode: ReplicationMode,
  cluster: LocalCluster,
  stats: ClusterStats,
  partial: Pick<
    ModeResult,
    | 'acknowledged'
    | 'verified'
    | 'lost'
    | 'backupMismatches'
    | 'loadOpsPerSec'
    | 'runOpsPerSec'
    | 'compactions'
    | 'unknownOutcomes'
    | 'failoverMs'
    | 'replayedBytes'
    | 'resyncedBytes'
  >,
): ModeResult {
  let shippedIndexSegments = 0;
  let levels = 0;
  for (const nodeId of cluster.nodeIds()) {
    for (const region of cluster.runtime(nodeId).backupRegionList())
      shippedIndexSegments += region.stats.shippedIndexSegments;
    for (const regionId of cluster.runtime(nodeId).servingRegions()) {
      const store = cluster.session(nodeId, regionId)?.store;
      const used = store?.stats().levels.filter((l) => l.segmentCount > 0).length ?? 0;
      levels = Math.max(levels, used);
    }
  }
  return {
    mode,
    ...partial,
    primaryIoBytes: stats.primary.ioBytes,
    backupIoBytes: stats.backup.ioBytes,
    primaryCpuMs: Math.round(stats.primary.cpuMs),
    backupCpuMs: Math.round(stats.backup.cpuMs),
    fabricBytes: stats.fabric.writtenBytes + stats.fabric.sentBytes,
    shippedIndexSegments,
    levels,
  };
}

interface FailoverReport {
  victim: string;
  failoverMs: number;
  replayedBytes: number;
}

/**
 * Kills the primary of `regionId` and waits for the region to be served again: the controller
 * promotes a backup once the dead node's lease ran out, and the promoted node rebuilds L0.
 */
async function killPrimary(
  cluster: LocalCluster,
  regionId: string,
  log: (line: string) => void,
): Promise<FailoverReport> {
  const victim = cluster.regions().find((r) => r.regionId === regionId)!.primary;
  const killedAt = performance.now();
  await cluster.killNode(victim);
  log(`  killed ${victim}, the primary of ${regionId} (and a backup of the others), mid-load`);
  await cluster.waitForRegions((map) => map.find((r) => r.regionId === regionId)!.primary !== victim, 60_000);
  const failoverMs = Math.round(performance.now() - killedAt);
  const config = cluster.regions().find((r) => r.regionId === regionId)!;
  const store = cluster.session(config.primary, regionId)!.store;
  const recovery = store.stats().recovery;
  const promotion = cluster.runtime(config.primary).promotions.find((p) => p.regionId === regionId);
  log(
    `  ${config.primary} promoted to primary of ${regionId} at epoch ${config.epoch}, serving ${failoverMs} ms after the kill ` +
      `(lease ${cluster.leaseTtlMs} ms); kept ${promotion?.keptBytes ?? 0} B from its log buffers, replayed ${recovery.replayedRecordCount} records (${recovery.replayedBytes} B) into L0`,
  );
  return { victim, failoverMs, replayedBytes: recovery.replayedBytes };
}

/** Runs `count` operations with `concurrency` workers; worker w runs operations w, w + c, … in order. */
async function pool(
  count: number,
  concurrency: number,
  bars: MultiBar | undefined,
  phase: string,
  op: (n: number, worker: number) => Promise<void>,
): Promise<void> {
  const bar = bars?.create(count, 0, { phase });
  let done = 0;
  const workers = Array.from({ length: Math.min(concurrency, count) }, async (_, worker) => {
    for (let n = worker; n < count; n += concurrency) {
      await op(n, worker);
      done++;
      if (done % 256 === 0) bar?.update(done);
    }
  });
  await Promise.all(workers);
  bar?.update(count);
}

function printRegions(sorted: RegionConfig[], say: (line: string) => void): void {
  say('  region  keys          primary  backups  epoch');
  for (const r of sorted) {
    const range = `[${r.minKey === '' ? '−∞' : r.minKey}, ${r.maxKey ?? '+∞'})`;
    say(
      `  ${r.regionId.padEnd(7)} ${range.padEnd(13)} ${r.primary.padEnd(8)} ${r.backups.join(',').padEnd(8)} ${r.epoch}`,
    );
  }
}

/** Prints primaries' compactions as they commit (the first few, then a count), and counts them. */
function watchCompactions(
  cluster: LocalCluster,
  sorted: RegionConfig[],
  log: (line: string) => void,
): { count(): number; stop(): void } {
  const maxLines = 8;
  let count = 0;
  const unsubscribe: (() => void)[] = [];
  for (const r of sorted) {
    const store = cluster.session(r.primary, r.regionId)?.store;
    if (store === undefined) continue;
    unsubscribe.push(
      store.hooks.on('compactionCommitted', (e: CompactionCommittedEvent) => {
        if (e.srcLevel === 0) return; // a flush, not a compaction
        count++;
        if (count <= maxLines) {
          const what = e.trivialMove ? 'trivial move' : `${e.newSegments.length} segments written`;
          const shipped = cluster.mode === 'send-index' ? ` → shipped to ${r.backups.join(', ')}` : '';
          log(
            `  compaction #${e.compactionId} of ${r.regionId} on ${r.primary}: L${e.srcLevel}→L${e.dstLevel}, ${what}${shipped}`,
          );
        } else if (count === maxLines + 1) log('  … (further compactions counted below)');
      }),
    );
  }
  return {
    count: () => count,
    stop: () => {
      for (const u of unsubscribe) u();
    },
  };
}

function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

function printRoles(stats: ClusterStats, say: (line: string) => void): void {
  say('  node  primary io   primary cpu  backup io    backup cpu   fabric out');
  for (const n of stats.nodes) {
    say(
      `  ${n.nodeId.padEnd(5)} ${mib(n.primary.ioBytes).padEnd(12)} ${`${Math.round(n.primary.cpuMs)} ms`.padEnd(12)} ` +
        `${mib(n.backup.ioBytes).padEnd(12)} ${`${Math.round(n.backup.cpuMs)} ms`.padEnd(12)} ${mib(n.fabric.writtenBytes + n.fabric.sentBytes)}`,
    );
  }
}

function printComparison(
  send: ModeResult,
  build: ModeResult,
  ratios: NonNullable<DemoSummary['ratios']>,
  say: (line: string) => void,
): void {
  say('');
  say('== Send-Index vs Build-Index (ratio = Build ÷ Send)');
  const row = (name: string, a: string, b: string, r: number): void =>
    say(`  ${name.padEnd(16)} ${a.padStart(12)} ${b.padStart(12)} ${r.toFixed(2).padStart(8)}×`);
  say(`  ${''.padEnd(16)} ${'send-index'.padStart(12)} ${'build-index'.padStart(12)} ${'ratio'.padStart(9)}`);
  row('backup I/O', mib(send.backupIoBytes), mib(build.backupIoBytes), ratios.backupIo);
  row('backup CPU', `${send.backupCpuMs} ms`, `${build.backupCpuMs} ms`, ratios.backupCpu);
  row('fabric bytes', mib(send.fabricBytes), mib(build.fabricBytes), ratios.fabric);
  row('load ops/s', String(send.loadOpsPerSec), String(build.loadOpsPerSec), ratios.loadThroughput);
}
