/**
 * Store API behaviour: bad input gets typed errors and loses nothing, lifecycle errors, options
 * validation, roles, byte-order semantics, hooks, group commit, back-pressure, recovery counters.
 */
import { crc32c } from '../../src/engine/crc.js';
import { SimDevice } from '../../src/engine/sim-device.js';
import { NotWritableError, Store, StoreFailedError } from '../../src/engine/store.js';
import {
  InvalidArgumentError,
  KeyTooLargeError,
  StoreClosedError,
  ValueTooLargeError,
} from '../../src/errors.js';
import { openTiny, TINY } from '../support/store.js';

describe('bad input', () => {
  it('rejects oversized keys with KeyTooLargeError and writes nothing', async () => {
    const { store } = await openTiny();
    await store.put('k', 'v1');
    const lsnBefore = store.stats().nextLsn;
    const big = Buffer.alloc(TINY.maxKeyBytes! + 1, 0x61);
    await expect(store.put(big, 'x')).rejects.toThrow(KeyTooLargeError);
    await expect(store.delete(big)).rejects.toThrow(KeyTooLargeError);
    await expect(store.get(big)).rejects.toThrow(KeyTooLargeError);
    await expect(store.put(big, 'x')).rejects.toMatchObject({
      code: 'KEY_TOO_LARGE',
      keyBytes: 65,
      maxKeyBytes: 64,
    });
    expect(store.stats().nextLsn).toBe(lsnBefore);
    expect((await store.get('k'))?.toString()).toBe('v1');
    // The limit itself is allowed.
    await store.put(Buffer.alloc(TINY.maxKeyBytes!, 0x62), 'ok');
  });

  it('rejects values over maxValueBytes, or too big for one segment, with ValueTooLargeError', async () => {
    const { store } = await openTiny(new SimDevice(), { maxValueBytes: 2000 });
    await expect(store.put('k', Buffer.alloc(2001))).rejects.toMatchObject({
      code: 'VALUE_TOO_LARGE',
      maxValueBytes: 2000,
    });
    await store.put('k', Buffer.alloc(2000, 7));
    expect((await store.get('k'))?.length).toBe(2000);

    const { store: wide } = await openTiny(new SimDevice(), { maxValueBytes: 1 << 20 });
    const fits = 4096 - 18 - 1;
    await wide.put('k', Buffer.alloc(fits, 1));
    await expect(wide.put('k', Buffer.alloc(fits + 1))).rejects.toThrow(ValueTooLargeError);
    expect((await wide.get('k'))?.length).toBe(fits);
  });

  it('rejects keys and values of the wrong type', async () => {
    const { store } = await openTiny();
    await expect(store.put(42 as unknown as string, 'v')).rejects.toThrow(InvalidArgumentError);
    await expect(store.put('k', { a: 1 } as unknown as string)).rejects.toThrow(InvalidArgumentError);
    await expect(store.scan({ limit: -1 })).rejects.toThrow(InvalidArgumentError);
  });

  it('validates options with InvalidArgumentError', async () => {
    const device = new SimDevice();
    await expect(Store.open({ ...TINY, device, segmentBytes: 1000 })).rejects.toThrow(InvalidArgumentError);
    await expect(Store.open({ ...TINY, device, growthFactor: 1 })).rejects.toThrow(InvalidArgumentError);
    await expect(Store.open({ ...TINY, device, l0Bytes: 0 })).rejects.toThrow(InvalidArgumentError);
    await expect(Store.open({ ...TINY, device, syncPolicy: 'never' as 'seal' })).rejects.toThrow(
      InvalidArgumentError,
    );
    await expect(Store.open({ ...TINY })).rejects.toThrow(InvalidArgumentError);
    await expect(Store.open({ ...TINY, device, dir: '/tmp/x' })).rejects.toThrow(InvalidArgumentError);
    const store = await Store.open({ ...TINY, device });
    await store.close();
    await expect(Store.open({ ...TINY, device, segmentBytes: 8192 })).rejects.toThrow(/fixed at creation/);
  });
});

describe('lifecycle', () => {
  it('every operation after close fails with StoreClosedError; close is idempotent', async () => {
    const { store } = await openTiny();
    await store.put('a', '1');
    await store.close();
    await store.close();
    expect(store.isClosed).toBe(true);
    await expect(store.put('a', '2')).rejects.toThrow(StoreClosedError);
    await expect(store.get('a')).rejects.toThrow(StoreClosedError);
    await expect(store.delete('a')).rejects.toThrow(StoreClosedError);
    await expect(store.scan()).rejects.toThrow(StoreClosedError);
    await expect(store.flush()).rejects.toThrow(StoreClosedError);
    await expect(store.sync()).rejects.toThrow(StoreClosedError);
  });

  it('close waits for in-flight writes and background flushes; a reopen sees everything', async () => {
    const device = new SimDevice();
    const store = await Store.open({ ...TINY, device, syncPolicy: 'always' });
    const writes = Array.from({ length: 500 }, (_, i) => store.put(`k${i}`, `v${i}`));
    await store.close();
    await Promise.all(writes);
    const reopened = await Store.open({ ...TINY, device });
    expect((await reopened.scan()).length).toBe(500);
  });

  it('a device failure makes the store fail-stop with StoreFailedError', async () => {
    const device = new SimDevice();
    const store = await Store.open({ ...TINY, device: device.attach() });
    await store.put('a', '1');
    await store.sync();
    device.scheduleCrash(1);
    // The next put fills the segment and seals: the seal's write hits the crash.
    await expect(store.put('b', Buffer.alloc(4070))).rejects.toMatchObject({ code: 'DEVICE_CRASHED' });
    await expect(store.get('a')).rejects.toThrow(StoreFailedError);
    await expect(store.put('c', '3')).rejects.toThrow(StoreFailedError);
    await store.close();
    const recovered = await Store.open({ ...TINY, device: device.attach() });
    expect((await recovered.get('a'))?.toString()).toBe('1');
    expect(await recovered.get('b')).toBeUndefined();
  });
});

describe('roles', () => {
  it('a backup refuses writes; a primary refuses shipped segments', async () => {
    const backup = await Store.open({ ...TINY, device: new SimDevice(), role: 'backup' });
    await expect(backup.put('a', '1')).rejects.toThrow(NotWritableError);
    const { store: primary } = await openTiny();
    expect(() =>
      primary.writeShippedLogSegment({ seq: 0, primarySegmentOffset: 0, bytes: Buffer.alloc(4) }),
    ).toThrow(NotWritableError);
  });

  it('a backup rejects a shipped log segment whose CRC does not match', async () => {
    const backup = await Store.open({ ...TINY, device: new SimDevice(), role: 'backup' });
    const bytes = Buffer.from('abc');
    expect(() =>
      backup.writeShippedLogSegment({ seq: 0, primarySegmentOffset: 0, bytes, crc32c: crc32c(bytes) ^ 1 }),
    ).toThrow(/crc mismatch/);
    expect(() => backup.writeShippedLogSegment({ seq: 0, primarySegmentOffset: 17, bytes })).toThrow(
      InvalidArgumentError,
    );
  });
});

describe('semantics', () => {
  it('distinguishes an empty value from a deleted key', async () => {
    const { store } = await openTiny();
    await store.put('empty', '');
    await store.put('gone', 'x');
    await store.delete('gone');
    expect((await store.get('empty'))?.length).toBe(0);
    expect(await store.get('gone')).toBeUndefined();
    await store.flush();
    expect((await store.get('empty'))?.length).toBe(0);
    expect(await store.get('gone')).toBeUndefined();
    expect((await store.scan()).map((e) => e.key.toString())).toEqual(['empty']);
  });

  it('orders keys by unsigned bytes, prefixes first, across L0 and levels', async () => {
    const { store } = await openTiny();
    const keys = [
      Buffer.from([0xff]),
      Buffer.from([0x00]),
      Buffer.from([0x00, 0x00]),
      Buffer.from('a'),
      Buffer.from('ab'),
      Buffer.from([0x80]),
    ];
    for (const [i, k] of keys.entries()) {
      await store.put(k, `v${i}`);
      if (i === 2) await store.flush();
    }
    const expected = [...keys].sort(Buffer.compare).map((k) => k.toString('hex'));
    expect((await store.scan()).map((e) => e.key.toString('hex'))).toEqual(expected);
    expect((await store.scan({ reverse: true })).map((e) => e.key.toString('hex'))).toEqual(
      [...expected].reverse(),
    );
    expect(
      (await store.scan({ gte: Buffer.from([0x00]), lt: Buffer.from('a') })).map((e) =>
        e.key.toString('hex'),
      ),
    ).toEqual(['00', '0000']);
  });

  it('accepts strings and Uint8Arrays (not only Buffers) as keys and values', async () => {
    const { store } = await openTiny();
    await store.put(new Uint8Array([1, 2, 3]), new Uint8Array([9, 8]));
    expect([...((await store.get(Buffer.from([1, 2, 3]))) ?? [])]).toEqual([9, 8]);
    await store.put('ключ', 'значение');
    expect((await store.get('ключ'))?.toString()).toBe('значение');
  });
});

describe('hooks', () => {
  it('report seals, index segments and commits with consistent data', async () => {
    const { store } = await openTiny();
    const sealed: { seq: number; crcOk: boolean; partial: boolean }[] = [];
    const written: number[] = [];
    const commits: { src: number; dst: number; newSegments: number[]; replayLsn: number }[] = [];
    store.hooks.on('segmentSealed', (e) =>
      sealed.push({ seq: e.seq, crcOk: crc32c(e.bytes) === e.crc32c, partial: e.partial }),
    );
    store.hooks.on('indexSegmentWritten', (e) => {
      expect(crc32c(e.bytes)).toBe(e.crc32c);
      expect(e.bytes.length).toBe(e.usedBytes);
      written.push(e.segmentOffset);
    });
    const off = store.hooks.on('compactionCommitted', (e) =>
      commits.push({
        src: e.srcLevel,
        dst: e.dstLevel,
        newSegments: e.newSegments,
        replayLsn: e.replayFrom.lsn,
      }),
    );
    for (let i = 0; i < 300; i++) await store.put(`key-${i % 50}`, Buffer.alloc(120, i));
    await store.flush();
    expect(sealed.every((s) => s.crcOk)).toBe(true);
    const full = sealed.filter((s) => !s.partial).map((s) => s.seq);
    expect(full).toEqual(full.map((_, i) => i));
    expect(sealed.some((s) => s.partial)).toBe(true);
    expect(written.length).toBeGreaterThan(0);
    expect(commits.some((c) => c.src === 0 && c.dst === 1)).toBe(true);
    // Every shipped segment was announced before its commit named it.
    for (const c of commits) for (const s of c.newSegments) expect(written).toContain(s);
    // replayFrom only moves forward.
    const flushLsns = commits.filter((c) => c.src === 0).map((c) => c.replayLsn);
    expect([...flushLsns].sort((a, b) => a - b)).toEqual(flushLsns);
    off();
    const before = commits.length;
    await store.put('x', 'y');
    await store.flush();
    expect(commits.length).toBe(before);
  });
});

describe('durability and flow control', () => {
  it("group-commits concurrent writes under syncPolicy 'always'", async () => {
    const device = new SimDevice();
    const store = await Store.open({ ...TINY, l0Bytes: 1 << 20, device, syncPolicy: 'always' });
    const syncsBefore = device.io().syncCount;
    await Promise.all(Array.from({ length: 200 }, (_, i) => store.put(`k${i}`, 'v')));
    const syncs = device.io().syncCount - syncsBefore;
    expect(syncs).toBeGreaterThan(0);
    expect(syncs).toBeLessThan(20);
  });

  it('many writes in flight with a tiny L0 all land (back-pressure, no loss)', async () => {
    const { store } = await openTiny();
    await Promise.all(Array.from({ length: 3000 }, (_, i) => store.put(`k${i % 700}`, `v${i}`)));
    for (let i = 2300; i < 3000; i++) expect((await store.get(`k${i % 700}`))?.toString()).toBe(`v${i}`);
    expect(store.stats().flushCount).toBeGreaterThan(10);
  });

  it('replays exactly the records after replayFrom on reopen', async () => {
    const device = new SimDevice();
    const store = await Store.open({ ...TINY, l0Bytes: 1 << 20, device });
    for (let i = 0; i < 40; i++) await store.put(`k${i}`, 'v');
    await store.close();
    const reopened = await Store.open({ ...TINY, l0Bytes: 1 << 20, device });
    expect(reopened.stats().recovery.replayedRecordCount).toBe(40);
    await reopened.flush();
    await reopened.close();
    const again = await Store.open({ ...TINY, l0Bytes: 1 << 20, device });
    expect(again.stats().recovery.replayedRecordCount).toBe(0);
    expect((await again.scan()).length).toBe(40);
  });

  it('counts device bytes per category and reports write amplification', async () => {
    const { store } = await openTiny();
    for (let i = 0; i < 500; i++) await store.put(`k${i % 100}`, Buffer.alloc(100, i));
    await store.flush();
    const stats = store.stats();
    expect(stats.io.writtenBytes.log).toBeGreaterThan(50_000);
    expect(stats.io.writtenBytes.index).toBeGreaterThan(0);
    expect(stats.io.writtenBytes.manifest).toBeGreaterThan(0);
    // Keys k0..k99 written five times each: 5·(10·2 + 90·3) key bytes, plus 500·100 value bytes.
    expect(stats.userBytes).toBe(5 * (10 * 2 + 90 * 3) + 500 * 100);
    expect(stats.writeAmplification).toBeGreaterThan(1);
  });
});

describe('regressions found by the property tests', () => {
  // model.property counterexample: [put(00, 100B), compactAll(), delete(), compactAll()].
  // The tombstone for '' was trivially moved (no overlap) level by level into the deepest level,
  // where no compaction could ever drop it.
  it('a trivial move never carries tombstones into the deepest populated level', async () => {
    const { store } = await openTiny();
    await store.put(Buffer.from([0x00]), Buffer.alloc(100));
    await store.compactAll();
    await store.delete(Buffer.alloc(0));
    await store.compactAll();
    const levels = store.stats().levels;
    expect(levels.map((l) => l.entryCount)).toEqual([0, 0, 0, 1]);
    expect(store.levelDescriptors()[3]!.every((d) => d.tombstoneCount === 0)).toBe(true);
    expect((await store.scan()).map((e) => e.key.toString('hex'))).toEqual(['00']);
  });
});
