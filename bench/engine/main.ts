/**
 * Engine benchmark: the Talos engine and classic-level (LevelDB) side by side, same workload, one
 * run. `npm run bench:engine -- [--quick] [--json] [--keys N] [--concurrency N] [--doc PATH]`.
 *
 * Workload (issue 2): N puts of 100-byte values under ~24-byte YCSB-style keys ("user" + the
 * zero-padded FNV-1a-64 hash of the insert number, so the insert order is hashed, not sorted), then
 * N gets of uniformly random inserted keys, every answer checked. Keys and values are generated
 * before the clock starts. Each engine gets a fresh directory on the same file system.
 *
 * Measured per engine: ops/s for each phase; write amplification as bytes the process passed to
 * write(2) during the engine's whole life (load, gets, close; /proc/self/io `wchar`) ÷ application
 * bytes (key + value), which counts LevelDB's WAL and background compactions the same way as
 * Talos' log, index and manifest writes; Talos' own `stats().io` per category as a cross-check;
 * bytes on disk after close; RSS. Ratios are Talos ÷ classic-level.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { Command } from 'commander';
import { createPrng } from '../../src/engine/prng.js';
import { Store } from '../../src/engine/store.js';
import { keptAnalysis, randomValues, ratio, runWorkers } from '../support.js';

interface Options {
  quick: boolean;
  json: boolean;
  keys?: string;
  concurrency: string;
  doc?: string;
  seed: string;
}

interface EngineUnderTest {
  name: string;
  put(key: string, value: Buffer): Promise<void>;
  get(key: string): Promise<Buffer | undefined>;
  /** Makes the load durable / settled before the put clock stops. */
  settle(): Promise<void>;
  close(): Promise<void>;
  extra(): Record<string, unknown>;
}

interface EngineResult {
  engine: string;
  putOpsPerSec: number;
  getOpsPerSec: number;
  putMs: number;
  getMs: number;
  mismatches: number;
  writeAmplification: number;
  writtenBytes: number;
  readBytesDuringGets: number;
  diskBytes: number;
  rssBytes: number;
  extra: Record<string, unknown>;
}

interface ConcurrencyRun {
  concurrency: number;
  putRatioVsLevel: number;
  getRatioVsLevel: number;
  writeAmpRatioVsLevel: number;
  talos: EngineResult;
  level: EngineResult;
}

const VALUE_BYTES = 100;

/** YCSB's key shape: "user" + FNV-1a-64(i) as 20 decimal digits (24 bytes). */
function ycsbKey(i: number): string {
  let hash = 0xcbf29ce484222325n;
  let x = BigInt(i);
  for (let b = 0; b < 8; b++) {
    hash ^= x & 0xffn;
    hash = (hash * 0x100000001b3n) & 0xffffffffffffffffn;
    x >>= 8n;
  }
  return `user${hash.toString().padStart(20, '0')}`;
}

function processIo(): { rchar: number; wchar: number } {
  try {
    const text = readFileSync('/proc/self/io', 'utf8');
    const field = (name: string): number => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
    return { rchar: field('rchar'), wchar: field('wchar') };
  } catch {
    return { rchar: 0, wchar: 0 };
  }
}

function diskBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += diskBytes(path);
    else total += statSync(path).blocks * 512;
  }
  return total;
}

async function measure(
  open: (dir: string) => Promise<EngineUnderTest>,
  keys: string[],
  values: Buffer[],
  readOrder: Uint32Array,
  concurrency: number,
  say: (line: string) => void,
): Promise<EngineResult> {
  const dir = mkdtempSync(join(tmpdir(), 'talos-bench-engine-'));
  try {
    globalThis.gc?.();
    const ioStart = processIo();
    const engine = await open(dir);
    say(`${engine.name}: ${keys.length} puts…`);
    const putStart = performance.now();
    await runWorkers(keys.length, concurrency, (i) => engine.put(keys[i]!, values[i]!));
    await engine.settle();
    const putMs = performance.now() - putStart;

    say(`${engine.name}: ${readOrder.length} random gets…`);
    const ioBeforeGets = processIo();
    let mismatches = 0;
    const getStart = performance.now();
    await runWorkers(readOrder.length, concurrency, async (n) => {
      const i = readOrder[n]!;
      const got = await engine.get(keys[i]!);
      if (got === undefined || !got.equals(values[i]!)) mismatches++;
    });
    const getMs = performance.now() - getStart;
    const ioAfterGets = processIo();
    const rssBytes = process.memoryUsage().rss;
    const extra = engine.extra();
    await engine.close();
    const ioEnd = processIo();
    const appBytes = keys.reduce((sum, key) => sum + key.length, 0) + values.length * VALUE_BYTES;
    const writtenBytes = ioEnd.wchar - ioStart.wchar;
    return {
      engine: engine.name,
      putOpsPerSec: Math.round(keys.length / (putMs / 1000)),
      getOpsPerSec: Math.round(readOrder.length / (getMs / 1000)),
      putMs: Math.round(putMs),
      getMs: Math.round(getMs),
      mismatches,
      writeAmplification: Number((writtenBytes / appBytes).toFixed(3)),
      writtenBytes,
      readBytesDuringGets: ioAfterGets.rchar - ioBeforeGets.rchar,
      diskBytes: diskBytes(dir),
      rssBytes,
      extra,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function openTalos(dir: string): Promise<EngineUnderTest> {
  const store = await Store.open({ dir });
  return {
    name: 'talos',
    put: (key, value) => store.put(key, value),
    get: (key) => store.get(key),
    settle: () => store.sync(),
    close: () => store.close(),
    extra: () => {
      const stats = store.stats();
      return {
        ioWrittenBytes: stats.io.writtenBytes,
        ioReadBytes: stats.io.readBytes,
        statsWriteAmplification: Number(stats.writeAmplification.toFixed(3)),
        levels: stats.levels
          .filter((l) => l.segmentCount > 0)
          .map((l) => ({ level: l.level, segments: l.segmentCount, entries: l.entryCount })),
        flushes: stats.flushCount,
        compactions: stats.compactionCount,
        trivialMoves: stats.trivialMoveCount,
      };
    },
  };
}

async function openLevel(dir: string): Promise<EngineUnderTest> {
  const db = new ClassicLevel<string, Buffer>(dir, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await db.open();
  return {
    name: 'classic-level',
    put: (key, value) => db.put(key, value),
    get: (key) => db.get(key),
    settle: async () => {},
    close: () => db.close(),
    extra: () => ({}),
  };
}

function toMarkdown(
  summary: Record<string, unknown>,
  runs: ConcurrencyRun[],
  options: { keyCount: number; seed: number },
): string {
  const mib = (n: number): string => (n / 2 ** 20).toFixed(1);
  const count = (n: number): string => n.toLocaleString('en-US');
  const row = (label: string, a: string | number, b: string | number, r: string | number): string =>
    `| ${label} | ${a} | ${b} | ${r} |`;
  const tables = runs.flatMap(({ concurrency, talos, level }) => [
    `### ${concurrency} operation${concurrency === 1 ? '' : 's'} in flight`,
    '',
    '| metric | Talos | classic-level | Talos ÷ classic-level |',
    '| --- | ---: | ---: | ---: |',
    row(
      'put ops/s',
      count(talos.putOpsPerSec),
      count(level.putOpsPerSec),
      ratio(talos.putOpsPerSec, level.putOpsPerSec),
    ),
    row(
      'get ops/s',
      count(talos.getOpsPerSec),
      count(level.getOpsPerSec),
      ratio(talos.getOpsPerSec, level.getOpsPerSec),
    ),
    row(
      'write amplification',
      talos.writeAmplification,
      level.writeAmplification,
      ratio(talos.writeAmplification, level.writeAmplification),
    ),
    row(
      'MiB written',
      mib(talos.writtenBytes),
      mib(level.writtenBytes),
      ratio(talos.writtenBytes, level.writtenBytes),
    ),
    row(
      'MiB read during gets',
      mib(talos.readBytesDuringGets),
      mib(level.readBytesDuringGets),
      ratio(talos.readBytesDuringGets, level.readBytesDuringGets),
    ),
    row(
      'MiB on disk after close',
      mib(talos.diskBytes),
      mib(level.diskBytes),
      ratio(talos.diskBytes, level.diskBytes),
    ),
    row('RSS MiB after gets', mib(talos.rssBytes), mib(level.rssBytes), ''),
    row('mismatched gets', talos.mismatches, level.mismatches, ''),
    '',
    `Talos \`stats().io\` and shape: \`${JSON.stringify(talos.extra)}\``,
    '',
  ]);
  return [
    '# Engine benchmark: Talos engine vs classic-level (LevelDB)',
    '',
    'Generated by `npm run bench:engine -- --doc docs/bench/engine.md` (bench/engine/main.ts); the',
    'Analysis section at the end is written by hand and kept when the file is regenerated.',
    '',
    '## Configuration',
    '',
    `- Workload: ${count(options.keyCount)} puts of ${VALUE_BYTES}-byte values under 24-byte YCSB keys (\`user\` + FNV-1a-64 of the insert number, hashed order), then ${count(options.keyCount)} gets of uniformly random inserted keys (seed ${options.seed}), every answer compared with the value written.`,
    '- Client: N async workers, each awaiting its operation before issuing the next (N = operations in flight). With 1, every operation is a full round trip; classic-level runs each operation on the libuv thread pool, so it needs many in flight to overlap them.',
    '- Talos: `Store.open({ dir })` defaults — 2 MiB segments, 4 MiB L0, growth factor 8, 32 MiB block cache, `syncPolicy: "seal"` (fdatasync at every segment seal and at the end of the load, which is inside the timed put phase).',
    '- classic-level 3.0.0 defaults (LevelDB 1.23: 4 MiB write buffer, 8 MiB block cache, Snappy, no fsync on put, compaction on a background thread).',
    "- Write amplification: bytes the process passed to write(2) over the engine's whole life (load, gets, close), from /proc/self/io `wchar`, ÷ application bytes (key + value). It counts LevelDB's WAL and background compactions and Talos' log, index and manifest writes alike.",
    `- Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${process.platform}.`,
    '',
    '## Results',
    '',
    'Targets (issue 15; reported, not asserted): at 64 in flight put ratio ≥ 1.5 and get ratio ≥ 1.0; at 1 in flight get ratio ≥ 1.0. The `--json` headline is the',
    'last concurrency listed (the most favourable to classic-level).',
    '',
    ...tables,
    '### Summary (`--json`)',
    '',
    '```json',
    JSON.stringify(summary),
    '```',
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const program = new Command()
    .name('bench:engine')
    .option('--quick', 'small run (100k keys), under 60 s', false)
    .option('--json', 'print one JSON summary as the last line', false)
    .option('--keys <n>', 'keys to put and get (default 1,000,000; 100,000 with --quick)')
    .option(
      '--concurrency <list>',
      'operations in flight per phase; a comma-separated list runs each (the last is the headline)',
      '1,64',
    )
    .option('--seed <n>', 'seed of the random read order', '42')
    .option('--doc <path>', 'also write the results as Markdown to this file');
  program.parse(process.argv);
  const options = program.opts<Options>();
  const keyCount = options.keys !== undefined ? Number(options.keys) : options.quick ? 100_000 : 1_000_000;
  const concurrencies = options.concurrency.split(',').map(Number);
  const seed = Number(options.seed);
  if (!Number.isInteger(keyCount) || keyCount <= 0)
    throw new Error(`--keys must be a positive integer, got ${options.keys}`);
  if (concurrencies.some((c) => !Number.isInteger(c) || c <= 0))
    throw new Error(`--concurrency must list positive integers, got ${options.concurrency}`);
  const say = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };

  say(
    `engine benchmark: ${keyCount} keys, ${VALUE_BYTES}-byte values, concurrency ${concurrencies.join(' and ')}`,
  );
  const keys = Array.from({ length: keyCount }, (_, i) => ycsbKey(i));
  const rng = createPrng(seed);
  const values = randomValues(rng, keyCount, VALUE_BYTES);
  const readOrder = new Uint32Array(keyCount);
  for (let n = 0; n < keyCount; n++) readOrder[n] = rng.int(0, keyCount - 1);

  const runs: ConcurrencyRun[] = [];
  for (const concurrency of concurrencies) {
    const talos = await measure(openTalos, keys, values, readOrder, concurrency, say);
    const level = await measure(openLevel, keys, values, readOrder, concurrency, say);
    runs.push({
      concurrency,
      putRatioVsLevel: ratio(talos.putOpsPerSec, level.putOpsPerSec),
      getRatioVsLevel: ratio(talos.getOpsPerSec, level.getOpsPerSec),
      writeAmpRatioVsLevel: ratio(talos.writeAmplification, level.writeAmplification),
      talos,
      level,
    });
  }

  say('');
  say('in flight  engine          put ops/s   get ops/s   write amp   MiB on disk   mismatches');
  for (const run of runs) {
    for (const r of [run.talos, run.level]) {
      say(
        `${String(run.concurrency).padStart(9)}  ${r.engine.padEnd(14)} ${String(r.putOpsPerSec).padStart(10)} ${String(r.getOpsPerSec).padStart(11)} ${r.writeAmplification.toFixed(2).padStart(11)} ${(r.diskBytes / 2 ** 20).toFixed(1).padStart(13)} ${String(r.mismatches).padStart(12)}`,
      );
    }
    say(
      `${' '.repeat(11)}put ratio ${run.putRatioVsLevel} (target ≥ ${run.concurrency === 1 ? '—' : '1.5'}), get ratio ${run.getRatioVsLevel} (target ≥ 1.0)`,
    );
  }
  const headline = runs[runs.length - 1]!;
  const summary = {
    keys: keyCount,
    valueBytes: VALUE_BYTES,
    concurrency: headline.concurrency,
    putRatioVsLevel: headline.putRatioVsLevel,
    getRatioVsLevel: headline.getRatioVsLevel,
    writeAmpRatioVsLevel: headline.writeAmpRatioVsLevel,
    runs: runs.map((run) => ({
      ...run,
      talos: { ...run.talos, extra: undefined, io: run.talos.extra.ioWrittenBytes },
      level: { ...run.level, extra: undefined },
    })),
  };
  if (options.doc !== undefined) {
    // The hand-written analysis (from "## Analysis" on) survives regeneration.
    const analysis = keptAnalysis(options.doc);
    writeFileSync(options.doc, toMarkdown(summary, runs, { keyCount, seed }) + analysis);
  }
  if (options.json) say(JSON.stringify(summary));
  if (runs.some((run) => run.talos.mismatches > 0 || run.level.mismatches > 0)) process.exitCode = 1;
}

await main();
