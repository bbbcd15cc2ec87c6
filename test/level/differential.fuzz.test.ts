/**
 * Differential fuzz: TalosLevel against memory-level (the Level reference), driven by one seeded
 * random program each: puts, deletes, batches, clears of random ranges, explicit snapshots taken
 * and released, iterators (random bounds, reverse, limit, seeks, with or without a snapshot),
 * getMany, flushes and compactions, and reopens (close + open on the same device). After every
 * read both must answer the same. Keys are UTF-8 strings over an alphabet that mixes 1- to 4-byte
 * characters and NUL, so byte order differs from UTF-16 order. The seed is printed
 * (`TALOS_SEED=<seed>` replays it; `TALOS_RUNS` sets the number of programs).
 */
import { MemoryLevel } from 'memory-level';
import { createPrng, type Prng } from '../../src/engine/prng.js';
import { SimDevice } from '../../src/engine/sim-device.js';
import { TalosLevel } from '../../src/level/index.js';

const ALPHABET = ['a', 'b', 'z', '\u0000', 'é', '\uffee', '\u{1F600}'];
const STORE = {
  segmentBytes: 4096,
  maxKeyBytes: 64,
  l0Bytes: 512,
  growthFactor: 2,
  maxLevels: 4,
  blockCacheBytes: 8192,
};

/** Both speak abstract-level; typed as memory-level's for brevity. */
type Db = MemoryLevel<string, string>;
type Snap = ReturnType<Db['snapshot']>;

function randomKey(prng: Prng): string {
  let key = '';
  const length = prng.int(1, 3);
  for (let i = 0; i < length; i++) key += ALPHABET[prng.int(0, ALPHABET.length - 1)];
  return key;
}

function randomRange(prng: Prng): Record<string, unknown> {
  const range: Record<string, unknown> = {};
  const lower = prng.int(0, 2);
  if (lower === 1) range.gte = randomKey(prng);
  if (lower === 2) range.gt = randomKey(prng);
  const upper = prng.int(0, 2);
  if (upper === 1) range.lt = randomKey(prng);
  if (upper === 2) range.lte = randomKey(prng);
  if (prng.chance(0.3)) range.reverse = true;
  if (prng.chance(0.3)) range.limit = prng.int(0, 8);
  return range;
}

/** Runs the same read on both and expects the same answer; returns nothing (assertions inside). */
async function same<T>(
  what: string,
  talos: Db,
  memory: Db,
  read: (db: Db, side: 0 | 1) => Promise<T>,
): Promise<void> {
  const [a, b] = await Promise.all([read(talos, 0), read(memory, 1)]);
  if (JSON.stringify(a) !== JSON.stringify(b)) {
    throw new Error(`${what}: talos ${JSON.stringify(a)} vs memory-level ${JSON.stringify(b)}`);
  }
}

async function program(seed: number, steps: number): Promise<void> {
  const prng = createPrng(seed);
  const device = new SimDevice({ seed });
  const talos = new TalosLevel<string, string>('fuzz', { store: { ...STORE, device } });
  const memory = new MemoryLevel<string, string>();
  const talosDb = talos as unknown as Db;
  await Promise.all([talos.open(), memory.open()]);
  const snapshots: [Snap, Snap][] = [];
  const both = async (op: (db: Db) => Promise<unknown>): Promise<void> => {
    await Promise.all([op(talosDb), op(memory)]);
  };
  for (let step = 0; step < steps; step++) {
    const what = `seed ${seed} step ${step}`;
    const roll = prng.int(0, 99);
    if (roll < 30) {
      const key = randomKey(prng);
      const value = `v${step}`;
      await both((db) => db.put(key, value));
    } else if (roll < 38) {
      const key = randomKey(prng);
      await both((db) => db.del(key));
    } else if (roll < 50) {
      const ops = Array.from({ length: prng.int(1, 6) }, (_, i) =>
        prng.chance(0.7)
          ? { type: 'put' as const, key: randomKey(prng), value: `b${step}.${i}` }
          : { type: 'del' as const, key: randomKey(prng) },
      );
      await both((db) => db.batch(ops) as Promise<void>);
    } else if (roll < 53) {
      const range = randomRange(prng);
      await both((db) => db.clear(range));
    } else if (roll < 58) {
      if (snapshots.length < 3) snapshots.push([talos.snapshot(), memory.snapshot()]);
      else {
        const [a, b] = snapshots.splice(prng.int(0, snapshots.length - 1), 1)[0]!;
        await Promise.all([a.close(), b.close()]);
      }
    } else if (roll < 85) {
      const range = randomRange(prng);
      const pick = snapshots.length > 0 && prng.chance(0.5) ? prng.int(0, snapshots.length - 1) : -1;
      const seekTo = prng.chance(0.3) ? randomKey(prng) : undefined;
      const first = prng.int(0, 3);
      await same(
        `${what} iterator ${JSON.stringify(range)} seek ${JSON.stringify(seekTo)}`,
        talosDb,
        memory,
        async (db, side) => {
          const snapshot = pick < 0 ? undefined : snapshots[pick]![side];
          const it = db.iterator({ ...range, ...(snapshot === undefined ? {} : { snapshot }) });
          const head = await it.nextv(first);
          if (seekTo !== undefined) it.seek(seekTo);
          const rest = await it.all();
          return [head, rest];
        },
      );
    } else if (roll < 92) {
      const keys = Array.from({ length: prng.int(1, 4) }, () => randomKey(prng));
      const pick = snapshots.length > 0 && prng.chance(0.5) ? prng.int(0, snapshots.length - 1) : -1;
      await same(`${what} getMany`, talosDb, memory, (db, side) =>
        db.getMany(keys, pick < 0 ? {} : { snapshot: snapshots[pick]![side] }),
      );
    } else if (roll < 96) {
      await (prng.chance(0.5) ? talos.store.flush() : talos.store.compactAll());
    } else {
      // Reopen: snapshots end with the database (abstract-level closes them).
      snapshots.length = 0;
      await both(async (db) => {
        await db.close();
        await db.open();
      });
    }
  }
  await same(`seed ${seed} final`, talosDb, memory, (db) => db.iterator().all());
  await Promise.all([talos.close(), memory.close()]);
}

test('TalosLevel answers as memory-level on random programs', async () => {
  const fromEnv = process.env.TALOS_SEED;
  const seed = fromEnv !== undefined ? Number(fromEnv) : (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;
  const runs = Number(process.env.TALOS_RUNS ?? 20);
  process.stderr.write(`[fuzz] talos-level vs memory-level: seed=${seed} programs=${runs}\n`);
  for (let run = 0; run < runs; run++) await program(seed + run, 400);
}, 300_000);
