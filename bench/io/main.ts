/**
 * I/O offload benchmark (issue 15 item 1: "measure both and say why you chose"): the same disk
 * work done four ways, side by side in one run, on a real file in the working directory's
 * filesystem (not tmpfs: fdatasync must reach the device).
 * `npm run bench:io -- [--quick] [--json] [--doc PATH] [--dir DIR]`.
 *
 * Designs:
 * - `sync`: writeSync / fdatasyncSync / readSync on the JS thread (what the engine does today);
 * - `threadpool`: fs.write / fs.fdatasync / fs.read with callbacks (libuv's thread pool);
 * - `worker-message`: a dedicated I/O thread (io-worker.ts), one postMessage per request, payloads
 *   transferred;
 * - `worker-shared`: the same thread fed through a SharedArrayBuffer ring (Atomics.wait there,
 *   Atomics.waitAsync here), payloads copied into shared memory.
 *
 * Workloads:
 * - commit: `writers` concurrent loops, each appending a 4 KiB record and then fdatasync-ing (a
 *   commit that must be durable before it is acknowledged), for a fixed time. Reported: commits/s,
 *   the JS thread's event-loop utilisation (ELU: the share of time it was busy — what clients,
 *   replication traffic and lease keepalives compete for), and event-loop delay p99/max (how long
 *   a timer or a socket read waited behind the disk).
 * - cached reads: random 4 KiB reads of a 64 MiB file already in the page cache: latency with one
 *   in flight (p50/p99 µs) and reads/s with 64 in flight — whether a page-cache hit is cheaper
 *   read synchronously than a round trip to another thread.
 * `--json` prints one summary object as the last line.
 */
import {
  closeSync,
  fdatasync,
  fdatasyncSync,
  mkdtempSync,
  openSync,
  read,
  readSync,
  rmSync,
  write,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { Command } from 'commander';
import * as hdr from 'hdr-histogram-js';
import { keptAnalysis, ratio } from '../support.js';
import { type MessageRequest, OP_CODES, SHARED } from './io-worker.js';

interface IoEngine {
  readonly name: string;
  write(fd: number, offset: number, bytes: Uint8Array): Promise<void>;
  sync(fd: number): Promise<void>;
  read(fd: number, offset: number, length: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

const PAGE = 4096;

function syncEngine(): IoEngine {
  return {
    name: 'sync',
    write: async (fd, offset, bytes) => {
      writeSync(fd, bytes, 0, bytes.length, offset);
    },
    sync: async (fd) => fdatasyncSync(fd),
    read: async (fd, offset, length) => {
      const bytes = new Uint8Array(length);
      readSync(fd, bytes, 0, length, offset);
      return bytes;
    },
    close: async () => {},
  };
}

function threadPoolEngine(): IoEngine {
  return {
    name: 'threadpool',
    write: (fd, offset, bytes) =>
      new Promise((resolve, reject) =>
        write(fd, bytes, 0, bytes.length, offset, (e) => (e ? reject(e) : resolve())),
      ),
    sync: (fd) => new Promise((resolve, reject) => fdatasync(fd, (e) => (e ? reject(e) : resolve()))),
    read: (fd, offset, length) =>
      new Promise((resolve, reject) => {
        const bytes = new Uint8Array(length);
        read(fd, bytes, 0, length, offset, (e) => (e ? reject(e) : resolve(bytes)));
      }),
    close: async () => {},
  };
}

/** Atomics.waitAsync (Node ≥ 16; not in this project's ES2022 lib types). */
const waitAsync = (
  Atomics as unknown as {
    waitAsync(
      array: Int32Array,
      index: number,
      value: number,
    ): { async: false; value: string } | { async: true; value: Promise<string> };
  }
).waitAsync;

const workerUrl = new URL('./io-worker.js', import.meta.url);

function messageWorkerEngine(): IoEngine {
  const worker = new Worker(workerUrl, { workerData: { mode: 'message' } });
  const waiting = new Map<number, (bytes?: ArrayBuffer) => void>();
  let nextId = 0;
  worker.on('message', (reply: { id: number; bytes?: ArrayBuffer }) => {
    const resolve = waiting.get(reply.id)!;
    waiting.delete(reply.id);
    resolve(reply.bytes);
  });
  const call = (
    request: Omit<MessageRequest, 'id'>,
    transfer: ArrayBuffer[] = [],
  ): Promise<ArrayBuffer | undefined> =>
    new Promise((resolve) => {
      const id = nextId++;
      waiting.set(id, resolve);
      worker.postMessage({ ...request, id }, transfer);
    });
  return {
    name: 'worker-message',
    write: async (fd, offset, bytes) => {
      // The engine's buffers are its own: a transfer needs a copy it may give away.
      const copy = bytes.slice().buffer;
      await call({ op: 'write', fd, offset, length: bytes.length, bytes: copy }, [copy]);
    },
    sync: async (fd) => {
      await call({ op: 'sync', fd, offset: 0, length: 0 });
    },
    read: async (fd, offset, length) => new Uint8Array((await call({ op: 'read', fd, offset, length }))!),
    close: () => worker.terminate().then(() => {}),
  };
}

function sharedWorkerEngine(): IoEngine {
  const SLOT_DATA = 64 * 1024;
  const controlBuffer = new SharedArrayBuffer((SHARED.slots + SHARED.slotCount * SHARED.slotWords) * 4);
  const dataBuffer = new SharedArrayBuffer(SHARED.slotCount * SLOT_DATA);
  const control = new Int32Array(controlBuffer);
  const area = new Uint8Array(dataBuffer);
  const worker = new Worker(workerUrl, {
    workerData: { mode: 'shared', control: controlBuffer, data: dataBuffer },
  });
  let posted = 0;
  let completed = 0;
  const pending: { seq: number; slot: number; resolve: (bytes?: Uint8Array) => void; readLength: number }[] =
    [];
  const slotFree: (() => void)[] = [];
  let watching = false;
  const watch = (): void => {
    if (watching || pending.length === 0) return;
    watching = true;
    const result = waitAsync(control, SHARED.completed, completed);
    const onChange = (): void => {
      watching = false;
      completed = Atomics.load(control, SHARED.completed);
      while (pending.length > 0 && pending[0]!.seq < completed) {
        const done = pending.shift()!;
        const at = done.slot * SLOT_DATA;
        done.resolve(done.readLength > 0 ? area.slice(at, at + done.readLength) : undefined);
        slotFree.shift()?.();
      }
      watch();
    };
    if (result.async) void result.value.then(onChange);
    else onChange();
  };
  const submit = async (
    op: number,
    fd: number,
    offset: number,
    bytes: Uint8Array | undefined,
    readLength: number,
  ) => {
    while (posted - completed >= SHARED.slotCount) await new Promise<void>((r) => slotFree.push(r));
    const seq = posted;
    const slot = seq % SHARED.slotCount;
    const words = SHARED.slots + slot * SHARED.slotWords;
    const length = bytes?.length ?? readLength;
    if (bytes !== undefined) area.set(bytes, slot * SLOT_DATA);
    control[words] = op;
    control[words + 1] = fd;
    control[words + 2] = offset / PAGE;
    control[words + 3] = length;
    control[words + 4] = slot * SLOT_DATA;
    control[words + 5] = 0;
    const done = new Promise<Uint8Array | undefined>((resolve) =>
      pending.push({ seq, slot, resolve, readLength }),
    );
    posted++;
    Atomics.store(control, SHARED.posted, posted);
    Atomics.notify(control, SHARED.posted);
    watch();
    return done;
  };
  return {
    name: 'worker-shared',
    write: async (fd, offset, bytes) => {
      await submit(OP_CODES.write, fd, offset, bytes, 0);
    },
    sync: async (fd) => {
      await submit(OP_CODES.sync, fd, 0, undefined, 0);
    },
    read: async (fd, offset, length) => (await submit(OP_CODES.read, fd, offset, undefined, length))!,
    close: async () => {
      // Opcode 0 tells the thread to leave its loop; it never completes, so it is not awaited.
      void submit(0, 0, 0, undefined, 0);
      await worker.terminate();
    },
  };
}

interface CommitRow {
  design: string;
  writers: number;
  commitsPerSec: number;
  elu: number;
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
}

async function commitRun(
  engine: IoEngine,
  dir: string,
  writers: number,
  durationMs: number,
): Promise<CommitRow> {
  const path = join(dir, `commit-${engine.name}-${writers}.log`);
  const fd = openSync(path, 'w+');
  const record = new Uint8Array(PAGE).fill(7);
  let nextOffset = 0;
  let commits = 0;
  const delay = monitorEventLoopDelay({ resolution: 1 });
  // A timer every millisecond: what a lease keepalive or a socket handler would be waiting behind.
  const ticker = setInterval(() => {}, 1);
  delay.enable();
  const eluStart = performance.eventLoopUtilization();
  const end = performance.now() + durationMs;
  await Promise.all(
    Array.from({ length: writers }, async () => {
      while (performance.now() < end) {
        const offset = nextOffset;
        nextOffset += PAGE;
        await engine.write(fd, offset, record);
        await engine.sync(fd);
        commits++;
        // Yield like a real handler would between requests (sync calls would otherwise starve the loop).
        await new Promise<void>((r) => setImmediate(r));
      }
    }),
  );
  const elu = performance.eventLoopUtilization(eluStart);
  delay.disable();
  clearInterval(ticker);
  closeSync(fd);
  rmSync(path);
  return {
    design: engine.name,
    writers,
    commitsPerSec: Math.round(commits / (durationMs / 1000)),
    elu: Number(elu.utilization.toFixed(3)),
    loopDelayP99Ms: Number((delay.percentile(99) / 1e6).toFixed(2)),
    loopDelayMaxMs: Number((delay.max / 1e6).toFixed(2)),
  };
}

interface ReadRow {
  design: string;
  p50Us: number;
  p99Us: number;
  readsPerSecAt64: number;
}

async function readRun(engine: IoEngine, fd: number, fileBytes: number, reads: number): Promise<ReadRow> {
  const pages = fileBytes / PAGE;
  let state = 12345;
  const nextPage = (): number => {
    state = (state * 1103515245 + 12345) >>> 0;
    return state % pages;
  };
  const latency = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 10_000_000,
    numberOfSignificantValueDigits: 3,
  });
  for (let i = 0; i < reads / 4; i++) {
    const started = performance.now();
    await engine.read(fd, nextPage() * PAGE, PAGE);
    latency.recordValue(Math.max(1, Math.round((performance.now() - started) * 1000)));
  }
  const started = performance.now();
  let issued = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (issued++ < reads) await engine.read(fd, nextPage() * PAGE, PAGE);
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const row = {
    design: engine.name,
    p50Us: latency.getValueAtPercentile(50),
    p99Us: latency.getValueAtPercentile(99),
    readsPerSecAt64: Math.round(reads / seconds),
  };
  latency.destroy();
  return row;
}

interface Options {
  quick: boolean;
  json: boolean;
  doc?: string;
  dir?: string;
}

async function main(): Promise<void> {
  const options = new Command()
    .option('--quick', 'short runs')
    .option('--json', 'print one JSON summary object as the last line')
    .option('--doc <path>', 'write the results as markdown here (e.g. docs/bench/io.md)')
    .option('--dir <dir>', 'directory for the test files (a real disk; default: the working directory)')
    .parse()
    .opts<Options>();
  const log = (line: string): void => {
    if (!options.json) process.stdout.write(`${line}\n`);
  };
  const dir = mkdtempSync(join(options.dir ?? process.cwd(), '.bench-io-'));
  const durationMs = options.quick ? 1500 : 6000;
  const reads = options.quick ? 8000 : 40000;
  const designs = [syncEngine, threadPoolEngine, messageWorkerEngine, sharedWorkerEngine];
  const commits: CommitRow[] = [];
  const readRows: ReadRow[] = [];
  try {
    for (const writers of [1, 16]) {
      for (const make of designs) {
        const engine = make();
        const row = await commitRun(engine, dir, writers, durationMs);
        await engine.close();
        commits.push(row);
        log(
          `commit  ${row.design.padEnd(15)} writers ${String(writers).padStart(2)}: ${String(row.commitsPerSec).padStart(6)} commits/s, ELU ${row.elu}, loop delay p99 ${row.loopDelayP99Ms} ms, max ${row.loopDelayMaxMs} ms`,
        );
      }
    }
    const fileBytes = 64 * 1024 * 1024;
    const path = join(dir, 'reads.dat');
    const fd = openSync(path, 'w+');
    const chunk = new Uint8Array(1 << 20).fill(3);
    for (let at = 0; at < fileBytes; at += chunk.length) writeSync(fd, chunk, 0, chunk.length, at);
    fdatasyncSync(fd);
    // Warm the page cache: every page read once.
    for (let at = 0; at < fileBytes; at += chunk.length) readSync(fd, chunk, 0, chunk.length, at);
    for (const make of designs) {
      const engine = make();
      const row = await readRun(engine, fd, fileBytes, reads);
      await engine.close();
      readRows.push(row);
      log(
        `read    ${row.design.padEnd(15)}: p50 ${row.p50Us} µs, p99 ${row.p99Us} µs at 1 in flight; ${row.readsPerSecAt64} reads/s at 64 in flight`,
      );
    }
    closeSync(fd);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const at = (design: string, writers: number) =>
    commits.find((r) => r.design === design && r.writers === writers)!;
  const readOf = (design: string) => readRows.find((r) => r.design === design)!;
  const summary = {
    bench: 'io',
    quick: options.quick,
    cpus: cpus().length,
    commits,
    reads: readRows,
    /** Commits/s at 16 writers, each design ÷ sync. */
    threadpoolVsSyncCommits: ratio(at('threadpool', 16).commitsPerSec, at('sync', 16).commitsPerSec),
    workerSharedVsSyncCommits: ratio(at('worker-shared', 16).commitsPerSec, at('sync', 16).commitsPerSec),
    workerMessageVsSyncCommits: ratio(at('worker-message', 16).commitsPerSec, at('sync', 16).commitsPerSec),
    /** JS-thread utilisation at 16 writers, sync ÷ each design (how much of the thread is given back). */
    syncVsThreadpoolElu: ratio(at('sync', 16).elu, at('threadpool', 16).elu),
    syncVsWorkerSharedElu: ratio(at('sync', 16).elu, at('worker-shared', 16).elu),
    /** Cached 4 KiB read latency at 1 in flight, each design ÷ sync. */
    threadpoolVsSyncReadLatency: ratio(readOf('threadpool').p50Us, readOf('sync').p50Us),
    workerSharedVsSyncReadLatency: ratio(readOf('worker-shared').p50Us, readOf('sync').p50Us),
  };
  if (options.doc !== undefined) writeDoc(options.doc, summary, commits, readRows);
  if (options.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
}

function writeDoc(
  path: string,
  summary: Record<string, unknown>,
  commits: CommitRow[],
  reads: ReadRow[],
): void {
  const lines = [
    "# I/O offload: where the engine's disk calls should run",
    '',
    `Generated by \`npm run bench:io${summary.quick ? ' -- --quick' : ''}\` on ${new Date().toISOString().slice(0, 10)} (${summary.cpus} cores, ext4 on the VM's virtual disk). See bench/io/main.ts for the designs and workloads.`,
    '',
    '## Durable commits (4 KiB append + fdatasync each)',
    '',
    '| design | writers | commits/s | JS-thread ELU | loop delay p99 (ms) | loop delay max (ms) |',
    '| --- | --: | --: | --: | --: | --: |',
    ...commits.map(
      (r) =>
        `| ${r.design} | ${r.writers} | ${r.commitsPerSec} | ${r.elu} | ${r.loopDelayP99Ms} | ${r.loopDelayMaxMs} |`,
    ),
    '',
    '## Cached 4 KiB reads (page-cache hits)',
    '',
    '| design | p50 µs (1 in flight) | p99 µs | reads/s (64 in flight) |',
    '| --- | --: | --: | --: |',
    ...reads.map((r) => `| ${r.design} | ${r.p50Us} | ${r.p99Us} | ${r.readsPerSecAt64} |`),
    '',
    '## Ratios',
    '',
    '```json',
    JSON.stringify(Object.fromEntries(Object.entries(summary).filter(([k]) => k.includes('Vs'))), null, 2),
    '```',
    '',
  ];
  const analysis = keptAnalysis(path);
  writeFileSync(path, lines.join('\n') + (analysis === '' ? '' : `\n${analysis}`));
}

await main();
