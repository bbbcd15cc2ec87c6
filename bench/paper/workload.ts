/**
 * YCSB-style workloads as the papers' client runs them (YCSB-CXX with the Tebis driver, see
 * /work/shared/reference/talos-code-notes.md §11): hashed insert order, ~24-byte keys, and value
 * sizes chosen deterministically by `record % 10` from a KV size mix.
 *
 * Mixes: S / M / L are 10 / 100 / 1000-byte values (the Talos-era sizes); SD = 60 % S, 20 % M,
 * 20 % L; MD = 60 % M, 20 % S, 20 % L; LD = 60 % L, 20 % S, 20 % M; SD80 = 80 % S, 10 % M, 10 % L.
 *
 * Workloads: Load A = inserts only; Run A = 50 % reads / 50 % updates; B = 95 / 5; C = reads only
 * (request distribution zipfian, θ = 0.99, scrambled over the key space as YCSB does); D = 95 %
 * reads of recently inserted records (the "latest" distribution) and 5 % inserts of new records.
 */
import { demoKey } from '../../src/cli/demo.js';
import type { Prng } from '../../src/engine/prng.js';

export const VALUE_BYTES = { S: 10, M: 100, L: 1000 } as const;
export type SizeClass = keyof typeof VALUE_BYTES;

/** Size class of records 0..9 (record % 10), as YCSB-CXX's workload_gen.h picks it; S, M, L are single-size. */
export const MIXES = {
  S: ['S', 'S', 'S', 'S', 'S', 'S', 'S', 'S', 'S', 'S'],
  M: ['M', 'M', 'M', 'M', 'M', 'M', 'M', 'M', 'M', 'M'],
  L: ['L', 'L', 'L', 'L', 'L', 'L', 'L', 'L', 'L', 'L'],
  SD: ['S', 'S', 'S', 'S', 'S', 'S', 'M', 'M', 'L', 'L'],
  MD: ['M', 'M', 'M', 'M', 'M', 'M', 'S', 'S', 'L', 'L'],
  LD: ['L', 'L', 'L', 'L', 'L', 'L', 'S', 'S', 'M', 'M'],
  SD80: ['S', 'S', 'S', 'S', 'S', 'S', 'S', 'S', 'M', 'L'],
} as const satisfies Record<string, readonly SizeClass[]>;
export type MixName = keyof typeof MIXES;
export const MIX_NAMES = Object.keys(MIXES) as MixName[];

export type WorkloadName = 'loadA' | 'runA' | 'runB' | 'runC' | 'runD';
export const RUN_WORKLOADS: readonly WorkloadName[] = ['runA', 'runB', 'runC', 'runD'];
export const WORKLOAD_LABEL: Record<WorkloadName, string> = {
  loadA: 'Load A',
  runA: 'Run A',
  runB: 'Run B',
  runC: 'Run C',
  runD: 'Run D',
};

/** Read fraction of each run workload; the rest are updates (A, B) or inserts (D). */
const READ_FRACTION: Record<Exclude<WorkloadName, 'loadA'>, number> = {
  runA: 0.5,
  runB: 0.95,
  runC: 1,
  runD: 0.95,
};

/** The key of record `i`: 24 bytes, an 8-hex-digit hash prefix first (hashed insert order). */
export const recordKey = demoKey;

export function valueBytes(mix: MixName, record: number): number {
  return VALUE_BYTES[MIXES[mix][record % 10]!];
}

/** Mean key + value bytes of a mix (keys are 24 bytes). */
export function meanRecordBytes(mix: MixName): number {
  return 24 + MIXES[mix].reduce((sum, c) => sum + VALUE_BYTES[c], 0) / 10;
}

/**
 * YCSB's ZipfianGenerator (Gray et al., "Quickly generating billion-record synthetic databases"):
 * ranks 0..n−1, rank 0 the most popular, θ = 0.99. `zetan` costs O(n) once.
 */
export class Zipfian {
  private readonly alpha: number;
  private readonly zetan: number;
  private readonly eta: number;
  private readonly zeta2: number;

  constructor(
    readonly n: number,
    theta = 0.99,
  ) {
    let zetan = 0;
    for (let i = 1; i <= n; i++) zetan += 1 / i ** theta;
    this.zetan = zetan;
    this.zeta2 = 1 + 1 / 2 ** theta;
    this.alpha = 1 / (1 - theta);
    this.eta = (1 - (2 / n) ** (1 - theta)) / (1 - this.zeta2 / zetan);
  }

  /** A rank in [0, n). `u` is uniform in [0, 1). */
  next(u: number): number {
    const uz = u * this.zetan;
    if (uz < 1) return 0;
    if (uz < this.zeta2) return 1;
    return Math.min(this.n - 1, Math.floor(this.n * (this.eta * u - this.eta + 1) ** this.alpha));
  }
}

/** FNV-1a of a number: YCSB scrambles zipfian ranks over the key space with a hash. */
export function scramble(rank: number, n: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < 4; i++) h = Math.imul(h ^ ((rank >>> (8 * i)) & 0xff), 0x01000193) >>> 0;
  return h % n;
}

export interface Operation {
  kind: 'read' | 'update' | 'insert';
  record: number;
}

const uniform = (rng: Prng): number => rng.int(0, 0x3fffffff) / 0x40000000;

/**
 * The operations of a run workload over `records` loaded records (D inserts records `records`,
 * `records + 1`, …). Reads of D pick among the most recently inserted records (zipfian over
 * recency); A, B and C pick scrambled-zipfian records.
 */
export function runOperations(
  workload: Exclude<WorkloadName, 'loadA'>,
  records: number,
  count: number,
  rng: Prng,
): Operation[] {
  const zipf = new Zipfian(records);
  const ops: Operation[] = [];
  let inserted = records;
  for (let i = 0; i < count; i++) {
    const read = uniform(rng) < READ_FRACTION[workload];
    if (workload === 'runD') {
      if (read) ops.push({ kind: 'read', record: Math.max(0, inserted - 1 - zipf.next(uniform(rng))) });
      else ops.push({ kind: 'insert', record: inserted++ });
    } else {
      ops.push({ kind: read ? 'read' : 'update', record: scramble(zipf.next(uniform(rng)), records) });
    }
  }
  return ops;
}
