/**
 * Bounded compaction jobs (issue 15 item 4, src/engine/compaction.ts): a due compaction takes one
 * segment of Li — the next after the level's compaction pointer, round-robin — with the Li+1
 * segments it overlaps, and never changes what the store answers.
 */
import type { CompactionCommittedEvent } from '../../src/engine/hooks.js';
import { SimDevice } from '../../src/engine/sim-device.js';
import { dump, openTiny } from '../support/store.js';

async function loadL1(segments: number) {
  const { store } = await openTiny(new SimDevice(), { autoCompact: false, maxLevels: 4 });
  const model = new Map<string, string>();
  for (let i = 0; store.levelDescriptors()[0]!.length < segments; i++) {
    // Keys spread over the key space (hashed order), so later flushes overlap earlier segments.
    const key = `k${String((i * 7919) % 10007).padStart(5, '0')}`;
    const value = `v${i}`.padEnd(24, '.');
    await store.put(key, value);
    model.set(Buffer.from(key).toString('hex'), Buffer.from(value).toString('hex'));
    if (i % 40 === 39) await store.flush();
    if (i > 20_000) throw new Error('L1 never reached the wanted segment count');
  }
  return { store, model };
}

it('a bounded job merges one L1 segment (round-robin) with what it overlaps in L2; answers never change', async () => {
  const { store, model } = await loadL1(4);
  const commits: CompactionCommittedEvent[] = [];
  store.hooks.on('compactionCommitted', (e) => commits.push(e));
  const picked: string[] = [];
  for (let job = 0; job < 3; job++) {
    const l1 = store.levelDescriptors()[0]!;
    const l2Before = new Set(store.levelDescriptors()[1]!.map((d) => d.offset));
    await store.compactLevelNow(1, { bounded: true });
    const commit = commits.at(-1)!;
    const fromL1 = commit.removedSegments.filter((o) => l1.some((d) => d.offset === o));
    expect(fromL1).toHaveLength(1); // one segment of L1, not the level
    expect(commit.removedSegments.every((o) => fromL1.includes(o) || l2Before.has(o))).toBe(true);
    expect(store.levelDescriptors()[0]).toHaveLength(l1.length - 1);
    picked.push(l1.find((d) => d.offset === fromL1[0])!.minKey);
    expect(await dump(store)).toEqual(model);
  }
  // Round-robin over the key space: each job takes the segment after the previous one's range.
  expect(picked[1]! > picked[0]!).toBe(true);
  // A whole-level call still empties L1.
  await store.compactLevelNow(1);
  expect(store.levelDescriptors()[0]).toHaveLength(0);
  expect(await dump(store)).toEqual(model);
  await store.close();
});

it('the background loop compacts in bounded jobs (one source segment each) and answers as before', async () => {
  const { store } = await openTiny(new SimDevice(), { autoCompact: true });
  // Each commit is checked against the levels as they were before it.
  let levels = store.levelDescriptors().map((l) => new Set(l.map((d) => d.offset)));
  const sourcesPerMerge: number[] = [];
  store.hooks.on('compactionCommitted', (e) => {
    if (e.srcLevel >= 1 && !e.trivialMove)
      sourcesPerMerge.push(e.removedSegments.filter((o) => levels[e.srcLevel - 1]!.has(o)).length);
    levels = store.levelDescriptors().map((l) => new Set(l.map((d) => d.offset)));
  });
  const model = new Map<string, string>();
  for (let i = 0; i < 3000; i++) {
    const key = `k${String((i * 7919) % 2999).padStart(4, '0')}`;
    const value = `v${i}`;
    await store.put(key, value);
    model.set(Buffer.from(key).toString('hex'), Buffer.from(value).toString('hex'));
  }
  await store.flush();
  expect(sourcesPerMerge.length).toBeGreaterThan(3);
  expect(new Set(sourcesPerMerge)).toEqual(new Set([1]));
  expect(await dump(store)).toEqual(model);
  await store.close();
});

it('a steady writer does not starve compaction: L1 stays near its limit and flushes do not rewrite a growing L1', async () => {
  // The shape of a node's store (bench:paper): 128 KiB segments, 16 KiB L0, growth factor 8, so
  // L1's limit is one segment. Before flushes and jobs alternated, L1 grew to 10 segments in 30 000
  // puts and every flush rewrote all of it (780 MiB of index for 120 000 puts instead of 53).
  const { store } = await openTiny(new SimDevice(), {
    segmentBytes: 131072,
    l0Bytes: 16384,
    growthFactor: 8,
    maxLevels: 6,
    maxKeyBytes: 64,
  });
  let maxL1Segments = 0;
  store.hooks.on('compactionCommitted', () => {
    maxL1Segments = Math.max(maxL1Segments, store.levelDescriptors()[0]!.length);
  });
  const value = Buffer.alloc(100, 7);
  for (let i = 0; i < 30_000; i++)
    await store.put(`user${String((i * 2654435761) % 2 ** 32).padStart(20, '0')}`, value);
  await store.flush();
  expect(maxL1Segments).toBeLessThanOrEqual(3);
  // Index bytes written: 6.6 MiB here, 10 MiB with whole-level merges, 49 MiB with the starvation.
  expect(store.stats().io.writtenBytes.index).toBeLessThan(12 * 2 ** 20);
  await store.close();
});
