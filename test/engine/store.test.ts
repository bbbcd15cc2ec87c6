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
  OutcomeUnknownError,
  StoreClosedError,
  ValueTooLargeError,
} from '../../src/errors.js';
import { backupStore } from '../../src/replication/backup-store.js';
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
    await expect(
      backupStore(primary).writeShippedLogSegment({
        seq: 0,
        primarySegmentOffset: 0,
        bytes: Buffer.alloc(4),
      }),
    ).rejects.toThrow(NotWritableError);
  });

  it('a backup rejects a shipped log segment whose CRC does not match', async () => {
    const backup = await Store.open({ ...TINY, device: new SimDevice(), role: 'backup' });
    const bytes = Buffer.from('abc');
    await expect(
      backupStore(backup).writeShippedLogSegment({
        seq: 0,
        primarySegmentOffset: 0,
        bytes,
        crc32c: crc32c(bytes) ^ 1,
      }),
    ).rejects.toThrow(/crc mismatch/);
    await expect(
      backupStore(backup).writeShippedLogSegment({ seq: 0, primarySegmentOffset: 17, bytes }),
    ).rejects.toThrow(InvalidArgumentError);
  });
  it('partial seals then the full seal write each log byte to the backup device once, and read back whole', async () => {
    const device = new SimDevice();
    let backup = await Store.open({ ...TINY, device, role: 'backup' });
    const whole = Buffer.alloc(3000);
    for (let i = 0; i < whole.length; i++) whole[i] = (i * 31) & 0xff;
    for (const used of [100, 100, 1200, 3000]) {
      const bytes = whole.subarray(0, used);
      await backupStore(backup).writeShippedLogSegment({
        seq: 0,
        primarySegmentOffset: 0,
        bytes,
        crc32c: crc32c(bytes),
      });
    }
    expect(backup.stats().io.writtenBytes.log).toBe(3000);
    await backup.close();
    backup = await Store.open({ ...TINY, device, role: 'backup' });
    const [entry] = backup.logSegments();
    expect(entry?.usedBytes).toBe(3000);
    expect(Buffer.from(device.read(entry!.offset, 3000, 'log')).equals(whole)).toBe(true);
    await backup.close();
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

describe('regressions', () => {
  // Found while adding replication's commit gate: a group-commit batch was applied record by
  // record and L0 could freeze in the middle, so the rest of the batch went into the new L0 while
  // replayFrom already pointed past it — a crash before the next flush lost acknowledged writes.
  it("an L0 freeze inside a group-commit batch loses nothing after a crash ('always')", async () => {
    const device = new SimDevice();
    const store = await Store.open({ ...TINY, device, syncPolicy: 'always' });
    const keys = Array.from({ length: 200 }, (_, i) => `k${String(i).padStart(4, '0')}`);
    await Promise.all(keys.map((k) => store.put(k, `v-${k}`)));
    await store.settleCommits();
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    device.crash({ keepProbability: 0 });
    const reopened = await Store.open({ ...TINY, device, syncPolicy: 'always' });
    const missing: string[] = [];
    for (const k of keys) if ((await reopened.get(k))?.toString() !== `v-${k}`) missing.push(k);
    expect(missing).toEqual([]);
  });
});

describe('replication gates', () => {
  it('a commit gate holds acknowledgement and L0 visibility until it resolves', async () => {
    const { store } = await openTiny(new SimDevice(), { l0Bytes: 1 << 20 });
    const releases: (() => void)[] = [];
    const tails: { seq: number; usedBytes: number }[] = [];
    store.setCommitGate((tail) => {
      tails.push({ seq: tail.seq, usedBytes: tail.usedBytes });
      return new Promise<void>((resolve) => releases.push(resolve));
    });
    let acked = false;
    const put = store.put('a', '1').then(() => {
      acked = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(tails).toHaveLength(1);
    expect(tails[0]!.usedBytes).toBeGreaterThan(0);
    expect(acked).toBe(false);
    expect(await store.get('a')).toBeUndefined();
    releases[0]!();
    await put;
    expect(acked).toBe(true);
    expect((await store.get('a'))?.toString()).toBe('1');
  });

  it('a rejected gate fails its group and keeps it out of L0; later groups still commit in order', async () => {
    const { store } = await openTiny(new SimDevice(), { l0Bytes: 1 << 20 });
    let calls = 0;
    store.setCommitGate(async () => {
      calls++;
      if (calls === 1) throw new Error('backup write failed');
    });
    // Appended before the gate failed: an unknown outcome carrying the gate's error, never a definite failure.
    const err = await store.put('a', '1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutcomeUnknownError);
    expect(((err as Error).cause as Error).message).toBe('backup write failed');
    expect(await store.get('a')).toBeUndefined();
    await store.put('b', '2');
    expect((await store.get('b'))?.toString()).toBe('2');
  });

  it('an L0 flushed while groups are in flight replays them after a crash instead of losing them', async () => {
    const device = new SimDevice();
    const { store } = await openTiny(device);
    let hold: (() => void) | undefined;
    let holding = false;
    store.setCommitGate(() =>
      // Once `holding`, the group stays in flight while L0 is flushed.
      holding ? new Promise<void>((resolve) => (hold = resolve)) : Promise.resolve(),
    );
    for (let i = 0; i < 30; i++) await store.put(`a${String(i).padStart(2, '0')}`, 'x'.repeat(20));
    holding = true;
    const held = store.put('held', 'h');
    await new Promise((resolve) => setImmediate(resolve));
    await store.sync();
    await store.flush();
    expect(hold).toBeDefined();
    device.crash({ keepProbability: 0 });
    const reopened = await Store.open({ ...TINY, device });
    // 'held' was never acknowledged but sits in the log after replayFrom: replay brings it back.
    expect((await reopened.get('held'))?.toString()).toBe('h');
    for (let i = 0; i < 30; i++)
      expect((await reopened.get(`a${String(i).padStart(2, '0')}`))?.toString()).toBe('x'.repeat(20));
    hold!();
    await held.catch(() => {});
  });

  it('compaction awaits the ship gate after each index segment, and l0Full announces a full L0 once', async () => {
    const { store } = await openTiny(new SimDevice(), { autoCompact: false });
    const full: number[] = [];
    store.hooks.on('l0Full', (e) => full.push(e.entryCount));
    // Enough keys for several index segments of the flush (4 KiB each, prefix-compressed).
    for (let i = 0; i < 600; i++) await store.put(`k${String(i).padStart(3, '0')}`, 'v'.repeat(10));
    expect(full).toHaveLength(1);
    const shipped: number[] = [];
    let release: (() => void) | undefined;
    store.setShipGate(async (event) => {
      shipped.push(event.ordinal);
      if (event.ordinal === 0) await new Promise<void>((resolve) => (release = resolve));
    });
    const flushing = store.flush();
    for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(shipped).toEqual([0]);
    release!();
    await flushing;
    expect(shipped.length).toBeGreaterThan(1);
    expect(shipped).toEqual(shipped.map((_, i) => i));
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
