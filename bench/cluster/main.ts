/**
 * Cluster benchmark: what replication costs. In one run, the same put workload on
 *   - the engine alone (one Store, real files, no replication),
 *   - a 3-node in-process cluster with RF = 3 in Send-Index mode (the Talos design), and
 *   - the same cluster in Build-Index mode (the papers' baseline),
 * then random gets of written keys. `npm run bench:cluster -- [--quick] [--json] [--keys N]
 * [--concurrency N] [--doc PATH]`.
 *
 * Workload: N puts of 100-byte values under 24-byte hashed, hex-prefixed keys (so they spread over
 * the three regions), C in flight; then N/4 gets of uniformly random written keys, every answer
 * checked. Every variant gets a fresh directory on the same file system and the same store options
 * (engine defaults: 2 MiB segments, 4 MiB L0, growth factor 8). Put latency goes into an HDR
 * histogram (p50/p99). After the puts the cluster flushes every primary and settles, so the device
 * bytes and CPU per role include the index work the load caused.
 *
 * Ratios: replicated ÷ engine for put and get throughput (the issue's target: Send-Index puts
 * ≥ 0.7× the engine's), Build-Index ÷ Send-Index for backup device bytes, backup CPU and fabric
 * bytes. Nothing is asserted: the numbers are reported (and written to docs/bench/cluster.md).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { Presets, SingleBar } from 'cli-progress';
import { Command } from 'commander';
import * as hdr from 'hdr-histogram-js';
import { demoKey } from '../../src/cli/demo.js';
import { createLocalCluster } from '../../src/cluster/local-cluster.js';
import { createPrng } from '../../src/engine/prng.js';
import { Store } from '../../src/engine/store.js';
import { keptAnalysis, randomValues, ratio, runWorkers } from '../support.js';

const VALUE_BYTES = 100;

interface Options {
  quick: boolean;
  json: boolean;
  keys?: string;
  concurrency: string;
  doc?: string;
}

interface Target {
  name: string;
  put(key: string, value: Buffer): Promise<void>;
  get(key: string): Promise<Buffer | undefined>;
  /** After the puts: make the load settled (flush + settle for a cluster). */
  settle(): Promise<void>;
  roles(): Promise<RoleNumbers>;
  close(): Promise<void>;
}

interface RoleNumbers {
  primaryIoBytes: number;
  backupIoBytes: number;
  primaryCpuMs: number;
  backupCpuMs: number;
  fabricBytes: number;
}

interface VariantResult extends RoleNumbers {
  name: string;
  putOpsPerSec: number;
  getOpsPerSec: number;
  putP50Us: number;
  putP99Us: number;
  putMaxUs: number;
  mismatches: number;
}

async function openEngine(dir: string): Promise<Target> {
  const store = await Store.open({ dir });
  return {
    name: 'engine',
    put: (k, v) => store.put(k, v),
    get: (k) => store.get(k),
    settle: () => store.flush(),
    roles: async () => {
      const io = store.stats().io;
      const bytes = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);
      return {
        primaryIoBytes: bytes(io.readBytes) + bytes(io.writtenBytes),
        backupIoBytes: 0,
        primaryCpuMs: 0,
        backupCpuMs: 0,
        fabricBytes: 0,
      };
    },
    close: () => store.close(),
  };
}

function openCluster(mode: 'send-index' | 'build-index') {
  return async (dir: string): Promise<Target> => {
    const cluster = await createLocalCluster({ nodes: 3, regions: 3, replicas: 3, mode, dataDir: dir });
    const client = cluster.client();
    return {
      name: mode,
      put: (k, v) => client.put(k, v),
      get: (k) => client.get(k),
      settle: () => cluster.flush(),
      roles: async () => {
        const stats = await cluster.stats();
        return {
          primaryIoBytes: stats.primary.ioBytes,
          backupIoBytes: stats.backup.ioBytes,
          primaryCpuMs: Math.round(stats.primary.cpuMs),
          backupCpuMs: Math.round(stats.backup.cpuMs),
          fabricBytes: stats.fabric.writtenBytes + stats.fabric.sentBytes,
        };
      },
      close: () => cluster.close(),
    };
  };
}

async function measure(
  open: (dir: string) => Promise<Target>,
  keys: string[],
  values: Buffer[],
  readOrder: Uint32Array,
  concurrency: number,
  progress: boolean,
): Promise<VariantResult> {
  const dir = mkdtempSync(join(tmpdir(), 'talos-bench-cluster-'));
  const target = await open(dir);
  try {
    const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000 });
    const bar = progress
      ? new SingleBar(
          { format: `  ${target.name.padEnd(12)} [{bar}] {value}/{total}`, stream: process.stderr },
          Presets.shades_classic,
        )
      : undefined;
    bar?.start(keys.length + readOrder.length, 0);
    let done = 0;
    const putStart = performance.now();
    await runWorkers(keys.length, concurrency, async (i) => {
      const started = performance.now();
      await target.put(keys[i]!, values[i]!);
      histogram.recordValue(Math.max(1, Math.round((performance.now() - started) * 1000)));
      if (++done % 1024 === 0) bar?.update(done);
    });
    const putMs = performance.now() - putStart;
    await target.settle();
    let mismatches = 0;
    const getStart = performance.now();
    await runWorkers(readOrder.length, concurrency, async (n) => {
      const i = readOrder[n]!;
      const got = await target.get(keys[i]!);
      if (got === undefined || !got.equals(values[i]!)) mismatches++;
      if (++done % 1024 === 0) bar?.update(done);
    });
    const getMs = performance.now() - getStart;
    bar?.update(done);
    bar?.stop();
    return {
      name: target.name,
      putOpsPerSec: Math.round(keys.length / (putMs / 1000)),
      getOpsPerSec: Math.round(readOrder.length / (getMs / 1000)),
      putP50Us: histogram.getValueAtPercentile(50),
      putP99Us: histogram.getValueAtPercentile(99),
      putMaxUs: histogram.maxValue,
      mismatches,
      ...(await target.roles()),
    };
  } finally {
    await target.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}

function table(results: VariantResult[]): string[] {
  const head =
    '| variant | put ops/s | put p50 µs | put p99 µs | get ops/s | primary I/O MiB | backup I/O MiB | primary CPU ms | backup CPU ms | fabric MiB |';
  const rule = '| --- | --: | --: | --: | --: | --: | --: | --: | --: | --: |';
  return [
    head,
    rule,
    ...results.map(
      (r) =>
        `| ${r.name} | ${r.putOpsPerSec} | ${r.putP50Us} | ${r.putP99Us} | ${r.getOpsPerSec} | ${mib(r.primaryIoBytes)} | ${mib(r.backupIoBytes)} | ${r.primaryCpuMs} | ${r.backupCpuMs} | ${mib(r.fabricBytes)} |`,
    ),
  ];
}

async function main(): Promise<void> {
  const program = new Command()
    .name('bench:cluster')
    .option('--quick', 'small run (30k keys), a few seconds', false)
    .option('--json', 'print one JSON summary as the last line', false)
    .option('--keys <n>', 'keys to put (default 300,000; 30,000 with --quick)')
    .option('--concurrency <n>', 'operations in flight', '64')
    .option('--doc <path>', 'also write the results as Markdown to this file');
  program.parse(process.argv);
  const options = program.opts<Options>();
  const keyCount = options.keys !== undefined ? Number(options.keys) : options.quick ? 30_000 : 300_000;
  const concurrency = Number(options.concurrency);
  if (!Number.isInteger(keyCount) || keyCount <= 0)
    throw new Error(`--keys must be a positive integer, got ${options.keys}`);
  if (!Number.isInteger(concurrency) || concurrency <= 0)
    throw new Error(`--concurrency must be a positive integer, got ${options.concurrency}`);
  const say = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  say(
    `cluster benchmark: ${keyCount} puts of ${VALUE_BYTES}-byte values, ${concurrency} in flight; engine vs 3-node RF=3 cluster`,
  );
  const keys = Array.from({ length: keyCount }, (_, i) => demoKey(i));
  const rng = createPrng(7);
  const values = randomValues(rng, keyCount, VALUE_BYTES);
  const readOrder = new Uint32Array(Math.floor(keyCount / 4));
  for (let n = 0; n < readOrder.length; n++) readOrder[n] = rng.int(0, keyCount - 1);

  const progress = process.stderr.isTTY === true && !options.json;
  const results: VariantResult[] = [];
  for (const open of [openEngine, openCluster('send-index'), openCluster('build-index')]) {
    results.push(await measure(open, keys, values, readOrder, concurrency, progress));
  }
  const [engine, send, build] = results as [VariantResult, VariantResult, VariantResult];
  const ratios = {
    replicatedVsEnginePuts: ratio(send.putOpsPerSec, engine.putOpsPerSec),
    replicatedVsEngineGets: ratio(send.getOpsPerSec, engine.getOpsPerSec),
    buildVsSendPuts: ratio(build.putOpsPerSec, send.putOpsPerSec),
    buildVsSendBackupIo: ratio(build.backupIoBytes, send.backupIoBytes),
    buildVsSendBackupCpu: ratio(build.backupCpuMs, send.backupCpuMs),
    buildVsSendFabric: ratio(build.fabricBytes, send.fabricBytes),
  };
  say('');
  for (const line of table(results)) say(line);
  say('');
  say(
    `Send-Index puts ${ratios.replicatedVsEnginePuts}× the engine's (target ≥ 0.7: ${ratios.replicatedVsEnginePuts >= 0.7 ? 'met' : 'missed'}), gets ${ratios.replicatedVsEngineGets}×`,
  );
  say(
    `Build-Index ÷ Send-Index: backup I/O ${ratios.buildVsSendBackupIo}×, backup CPU ${ratios.buildVsSendBackupCpu}×, fabric ${ratios.buildVsSendFabric}×, puts ${ratios.buildVsSendPuts}×`,
  );
  const summary = {
    keys: keyCount,
    valueBytes: VALUE_BYTES,
    concurrency,
    replicatedVsEngineRatio: ratios.replicatedVsEnginePuts,
    ratios,
    engine,
    sendIndex: send,
    buildIndex: build,
  };
  if (options.doc !== undefined) {
    const analysis = keptAnalysis(options.doc);
    const doc = [
      '# Cluster benchmark: what replication costs',
      '',
      'Generated by `npm run bench:cluster -- --doc docs/bench/cluster.md` (bench/cluster/main.ts); the',
      'Analysis section is written by hand and kept when the numbers are regenerated.',
      '',
      `- Workload: ${keyCount} puts of ${VALUE_BYTES}-byte values under 24-byte hashed hex-prefixed keys, ${concurrency} in flight, then ${readOrder.length} random gets (every answer checked).`,
      '- Variants: the engine alone (one Store); a 3-node in-process cluster (memory fabric, embedded coordinator, real files), 3 regions, RF = 3, in Send-Index and Build-Index modes. Same store options everywhere (engine defaults).',
      "- Role numbers are measured after the cluster flushed every primary and settled: device bytes read + written per role (`Store.stats().io`), CPU per role (the actors' own accounting), bytes over the fabric.",
      `- Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${process.platform}.`,
      '',
      ...table(results),
      '',
      `- Send-Index puts ÷ engine puts: **${ratios.replicatedVsEnginePuts}** (target ≥ 0.7); gets: ${ratios.replicatedVsEngineGets}.`,
      `- Build-Index ÷ Send-Index: backup I/O ${ratios.buildVsSendBackupIo}, backup CPU ${ratios.buildVsSendBackupCpu}, fabric bytes ${ratios.buildVsSendFabric}, puts ${ratios.buildVsSendPuts}.`,
      '',
    ].join('\n');
    writeFileSync(options.doc, doc + (analysis === '' ? '' : `\n${analysis}`));
  }
  if (options.json) say(JSON.stringify(summary));
  if (results.some((r) => r.mismatches > 0)) process.exitCode = 1;
}

await main();
