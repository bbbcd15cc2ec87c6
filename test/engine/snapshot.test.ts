/**
 * Snapshots and streaming cursors (src/engine/snapshot.ts, cursor.ts): an iterator reads the store
 * as of its creation; an explicit snapshot pins the index segments it reads, so flushes and
 * compactions meanwhile change nothing it sees, and the segments they replaced are freed only once
 * it is released.
 */
import { SimDevice } from '../../src/engine/sim-device.js';
import { Store } from '../../src/engine/store.js';
import { TINY } from '../support/store.js';

const text = (rows: { key: Buffer; value: Buffer }[]): string[] =>
  rows.map((r) => `${r.key.toString()}=${r.value.toString()}`);
const pad = (n: number): string => String(n).padStart(3, '0');

async function filled(count: number, extra: Partial<Parameters<typeof Store.open>[0]> = {}) {
  const store = await Store.open({ ...TINY, device: new SimDevice(), ...extra });
  for (let i = 0; i < count; i++) await store.put(`k${pad(i)}`, `v${i}`);
  return store;
}

describe('snapshots', () => {
  it('an iterator created before `put c; del b` sees b and not c', async () => {
    const store = await Store.open({ ...TINY, device: new SimDevice() });
    await store.batch([
      { type: 'put', key: 'a', value: '1' },
      { type: 'put', key: 'b', value: '2' },
    ]);
    const cursor = store.iterator();
    await store.put('c', '3');
    await store.delete('b');
    expect(text(cursor.all())).toEqual(['a=1', 'b=2']);
    cursor.close();
    expect(text(await store.scan())).toEqual(['a=1', 'c=3']);
    await store.close();
  });

  it('an explicit snapshot survives flushes and compactions, and pins what it reads', async () => {
    const store = await filled(200);
    await store.flush();
    const snapshot = store.snapshot();
    const before = text(store.iterator({ snapshot }).all());
    for (let i = 0; i < 200; i += 2) await store.put(`k${pad(i)}`, `new${i}`);
    for (let i = 1; i < 200; i += 4) await store.delete(`k${pad(i)}`);
    await store.compactAll();
    expect(text(store.iterator({ snapshot }).all())).toEqual(before);
    expect((await store.get('k001', { snapshot }))?.toString()).toBe('v1');
    expect(await store.get('k001')).toBeUndefined();
    expect(await store.has('k002', { snapshot })).toBe(true);
    const pinned = store.stats().segmentsInUse;
    snapshot.release();
    expect(store.stats().segmentsInUse).toBeLessThan(pinned);
    expect(() => store.iterator({ snapshot }).next()).toThrow(
      expect.objectContaining({ code: 'SNAPSHOT_RELEASED' }),
    );
    await expect(store.get('k001', { snapshot })).rejects.toMatchObject({ code: 'SNAPSHOT_RELEASED' });
    await store.close();
  });

  it('a freed segment is not reused while a snapshot pins it', async () => {
    // No block cache: every read of the snapshot goes to the device.
    const store = await filled(100, { blockCacheBytes: 1 });
    await store.compactAll();
    const snapshot = store.snapshot();
    const expected = text(store.iterator({ snapshot }).all());
    // Rewrite everything several times: without the pin, the allocator would hand the snapshot's
    // segments to the new outputs and the snapshot would read garbage (or CRC errors).
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 100; i++) await store.put(`k${pad(i)}`, `r${round}-${i}`);
      await store.compactAll();
    }
    expect(text(store.iterator({ snapshot }).all())).toEqual(expected);
    snapshot.release();
    await store.close();
  });
});

describe('cursors', () => {
  it('seek, bounds, reverse, limit and nextv over L0 and levels', async () => {
    const store = await filled(120);
    await store.flush();
    for (let i = 100; i < 120; i++) await store.put(`k${pad(i)}`, `w${i}`); // newer in L0
    const keys = (rows: { key: Buffer }[]) => rows.map((r) => r.key.toString());

    const forward = store.iterator({ gt: 'k010', lte: 'k020' });
    expect(keys(forward.nextv(3))).toEqual(['k011', 'k012', 'k013']);
    forward.seek('k018');
    expect(keys(forward.all())).toEqual(['k018', 'k019', 'k020']);
    forward.seek('k000'); // outside the bounds: the cursor ends, as memory-level's
    expect(keys(forward.nextv(1))).toEqual([]);
    forward.rewind();
    expect(keys(forward.nextv(1))).toEqual(['k011']);
    forward.close();

    const reverse = store.iterator({ gte: 'k100', lt: 'k115', reverse: true, limit: 4 });
    expect(text(reverse.nextv(2))).toEqual(['k114=w114', 'k113=w113']);
    reverse.seek('k105');
    expect(keys(reverse.all())).toEqual(['k105', 'k104']); // the limit counts across the seek
    reverse.close();

    const keysOnly = store.iterator({ gte: 'k050', limit: 2, values: false });
    expect(keysOnly.all().map((r) => [r.key.toString(), r.value.length])).toEqual([
      ['k050', 0],
      ['k051', 0],
    ]);
    keysOnly.close();
    await store.close();
  });

  it('clear(range) deletes the range only, in atomic chunks', async () => {
    const store = await filled(100);
    await store.flush();
    await store.clear({ gte: 'k010', lt: 'k090' });
    const rows = await store.scan();
    expect(rows.length).toBe(20);
    expect(rows[9]!.key.toString()).toBe('k009');
    expect(rows[10]!.key.toString()).toBe('k090');
    await store.clear();
    expect(await store.scan()).toEqual([]);
    await store.close();
  });
});
