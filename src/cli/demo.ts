/**
 * The engine demo (`npm start` until the replicated cluster lands): writes keys into a Store on a
 * real FileDevice, reads every one back, closes, reopens (recovery), verifies again and prints the
 * level shape, I/O counters and write amplification.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../engine/store.js';

export interface DemoOptions {
  quick?: boolean;
  json?: boolean;
  dir?: string;
  keys?: number;
}

export async function runDemo(options: DemoOptions): Promise<void> {
  const keyCount = options.keys ?? (options.quick ? 20_000 : 200_000);
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'talos-demo-'));
  const say = (line: string): void => {
    if (!options.json) process.stdout.write(`${line}\n`);
  };
  const storeOptions = { dir, l0Bytes: 256 * 1024, growthFactor: 4 };
  say(`talos engine demo: ${keyCount} keys in ${dir}`);
  const key = (i: number): string => `user${String(i).padStart(10, '0')}`;
  const value = (i: number): string => `value-${i}-`.padEnd(100, 'x');

  const started = performance.now();
  let store = await Store.open(storeOptions);
  for (let i = 0; i < keyCount; i++) await store.put(key(i), value(i));
  await store.sync();
  const putMs = performance.now() - started;
  say(`put    ${keyCount} keys in ${putMs.toFixed(0)} ms (${Math.round(keyCount / (putMs / 1000))} ops/s)`);

  let lost = 0;
  const readStarted = performance.now();
  for (let i = 0; i < keyCount; i++) if ((await store.get(key(i)))?.toString() !== value(i)) lost++;
  const getMs = performance.now() - readStarted;
  say(
    `get    ${keyCount} keys in ${getMs.toFixed(0)} ms (${Math.round(keyCount / (getMs / 1000))} ops/s), mismatches: ${lost}`,
  );
  const stats = store.stats();
  for (const level of stats.levels) {
    if (level.segmentCount > 0)
      say(
        `  L${level.level}: ${level.segmentCount} segments, ${level.entryCount} entries, ${level.bytes} bytes`,
      );
  }
  say(`  L0: ${stats.l0.entryCount} entries; log segments: ${stats.logSegmentCount}`);
  say(
    `  flushes ${stats.flushCount}, compactions ${stats.compactionCount}, trivial moves ${stats.trivialMoveCount}`,
  );
  say(
    `  write amplification ${stats.writeAmplification.toFixed(2)}; io written ${JSON.stringify(stats.io.writtenBytes)}`,
  );
  await store.close();

  store = await Store.open(storeOptions);
  const recovery = store.stats().recovery;
  for (let i = 0; i < keyCount; i++) if ((await store.get(key(i)))?.toString() !== value(i)) lost++;
  say(
    `reopen replayed ${recovery.replayedRecordCount} records (${recovery.replayedBytes} bytes); mismatches after reopen: ${lost}`,
  );
  await store.close();
  if (options.dir === undefined) rmSync(dir, { recursive: true, force: true });

  const summary = {
    keys: keyCount,
    putOpsPerSec: Math.round(keyCount / (putMs / 1000)),
    getOpsPerSec: Math.round(keyCount / (getMs / 1000)),
    lost,
    replayedRecords: recovery.replayedRecordCount,
    writeAmplification: Number(stats.writeAmplification.toFixed(3)),
    io: stats.io,
  };
  if (options.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  if (lost > 0) process.exitCode = 1;
}
