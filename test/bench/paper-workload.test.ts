/**
 * The paper benchmark's workload generator (bench/paper/workload.ts): KV size mixes as YCSB-CXX
 * picks them, 24-byte hashed keys, zipfian ranks, and the run workloads' operation mixes. The
 * benchmark itself (node processes, numbers) is not run here.
 */
import {
  type MIXES,
  meanRecordBytes,
  recordKey,
  runOperations,
  scramble,
  valueBytes,
  Zipfian,
} from '../../bench/paper/workload.js';
import { createPrng } from '../../src/engine/prng.js';

test('KV mixes give the papers proportions of 10 / 100 / 1000-byte values', () => {
  const share = (mix: keyof typeof MIXES, bytes: number): number =>
    Array.from({ length: 1000 }, (_, i) => valueBytes(mix, i)).filter((b) => b === bytes).length / 1000;
  expect([share('SD80', 10), share('SD80', 100), share('SD80', 1000)]).toEqual([0.8, 0.1, 0.1]);
  expect([share('S', 10), share('M', 100), share('L', 1000)]).toEqual([1, 1, 1]);
  expect([share('SD', 10), share('SD', 100), share('SD', 1000)]).toEqual([0.6, 0.2, 0.2]);
  expect([share('MD', 10), share('MD', 100), share('MD', 1000)]).toEqual([0.2, 0.6, 0.2]);
  expect([share('LD', 10), share('LD', 100), share('LD', 1000)]).toEqual([0.2, 0.2, 0.6]);
  expect(meanRecordBytes('SD80')).toBe(24 + 118);
});

test('keys are 24 bytes, distinct and spread over hex prefixes', () => {
  const keys = Array.from({ length: 10_000 }, (_, i) => recordKey(i));
  expect(new Set(keys).size).toBe(keys.length);
  expect(keys.every((k) => k.length === 24)).toBe(true);
  const firstDigits = new Set(keys.map((k) => k[0]));
  expect(firstDigits.size).toBe(16);
});

test('zipfian ranks stay in range and favour the first ranks; scrambling stays in range', () => {
  const z = new Zipfian(100_000);
  const rng = createPrng(3);
  const ranks = Array.from({ length: 20_000 }, () => z.next(rng.int(0, 0x3fffffff) / 0x40000000));
  expect(ranks.every((r) => r >= 0 && r < 100_000)).toBe(true);
  expect(ranks.filter((r) => r < 10).length / ranks.length).toBeGreaterThan(0.15);
  expect(ranks.filter((r) => scramble(r, 100_000) >= 100_000).length).toBe(0);
});

test('run workloads mix reads, updates and inserts as YCSB A, B, C and D do', () => {
  const count = 20_000;
  const kinds = (w: 'runA' | 'runB' | 'runC' | 'runD') => {
    const ops = runOperations(w, 50_000, count, createPrng(9));
    return { ops, reads: ops.filter((o) => o.kind === 'read').length / count };
  };
  expect(kinds('runA').reads).toBeCloseTo(0.5, 1);
  expect(kinds('runB').reads).toBeCloseTo(0.95, 1);
  expect(kinds('runC').reads).toBe(1);
  const d = kinds('runD');
  expect(d.reads).toBeCloseTo(0.95, 1);
  const inserts = d.ops.filter((o) => o.kind === 'insert').map((o) => o.record);
  expect(inserts[0]).toBe(50_000);
  expect(inserts).toEqual(inserts.map((_, i) => 50_000 + i)); // new records, in order
  // Read-latest: most reads hit the newest records.
  const readRecords = d.ops.filter((o) => o.kind === 'read').map((o) => o.record);
  expect(readRecords.filter((r) => r >= 49_000).length / readRecords.length).toBeGreaterThan(0.5);
  for (const w of ['runA', 'runB', 'runC'] as const)
    expect(kinds(w).ops.every((o) => o.kind !== 'insert' && o.record >= 0 && o.record < 50_000)).toBe(true);
});
