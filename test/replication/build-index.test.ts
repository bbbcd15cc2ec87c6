/**
 * Build-Index mode on engine stores alone (the backup side, src/replication/backup-store.ts) (PROTOCOL §5, last paragraph): a backup store persists
 * shipped log segments and indexes their records into its own L0 (`indexShippedLogSegment`), with
 * local pointers, then flushes and compacts by itself. Partial seals followed by the full seal index
 * each record once; segments are indexed in order; corrupt bytes are refused; a restart with
 * `rebuildL0` replays the persisted log into L0 so nothing indexed is lost.
 */
import * as fc from 'fast-check';
import type { Device } from '../../src/engine/device.js';
import { encodeRecord } from '../../src/engine/record.js';
import { SimDevice } from '../../src/engine/sim-device.js';
import { NotWritableError, Store, type StoreOptions } from '../../src/engine/store.js';
import {
  AssertionFailedError,
  CorruptSegmentError,
  InvalidArgumentError,
  type TalosError,
} from '../../src/errors.js';
import { backupStore } from '../../src/replication/backup-store.js';
import { propertyParams } from '../support/property.js';
import { backupIdle, dump, onBackupQueue, openTiny, TINY } from '../support/store.js';

const SEGMENT = TINY.segmentBytes!;

type Rec = [lsn: number, key: string, value: string | null];

/** The used prefix of a log segment holding `records` back to back. */
function segment(records: Rec[]): Buffer {
  const buf = Buffer.alloc(SEGMENT);
  let at = 0;
  for (const [lsn, key, value] of records) {
    at += encodeRecord(buf, at, lsn, Buffer.from(key), value === null ? null : Buffer.from(value));
  }
  return Buffer.from(buf.subarray(0, at));
}

/** Byte length of the first `n` records of `records`. */
function prefixBytes(records: Rec[], n: number): number {
  return segment(records.slice(0, n)).length;
}

async function openBackup(
  device: Device = new SimDevice(),
  extra: Partial<StoreOptions> = {},
): Promise<Store> {
  return Store.open({ ...TINY, device, role: 'backup', ...extra });
}

/** Persists and indexes `bytes` as segment `seq` (primary segment far from the backup's own numbers). */
async function shipAndIndex(backup: Store, seq: number, bytes: Buffer): Promise<number> {
  await backupStore(backup).writeShippedLogSegment({
    seq,
    primarySegmentOffset: (100 + seq) * SEGMENT,
    bytes,
  });
  return backupStore(backup).indexShippedLogSegment({ seq, bytes });
}

/**
 * Feeds a primary's seals (partial and full) to a Build-Index backup, as BackupRegion does.
 * `target.backup` can be swapped (after a backup restart).
 */
function feed(primary: Store, target: { backup: Store }): void {
  primary.hooks.on('segmentSealed', (e) => {
    const bytes = Buffer.from(e.bytes);
    const backup = target.backup;
    void onBackupQueue(backup, async () => {
      await backupStore(backup).writeShippedLogSegment({
        seq: e.seq,
        primarySegmentOffset: e.segmentOffset,
        bytes,
        crc32c: e.crc32c,
      });
      backupStore(backup).indexShippedLogSegment({ seq: e.seq, bytes });
    });
  });
}

const str = (b: Buffer | undefined): string | undefined => b?.toString();

describe('indexShippedLogSegment', () => {
  const seg0: Rec[] = [
    [1, 'a', 'A1'],
    [2, 'b', 'B1'],
    [3, 'c', 'C1'],
    [4, 'a', 'A2'],
    [5, 'd', 'D1'],
    [6, 'b', null],
  ];
  const seg1: Rec[] = [
    [7, 'e', 'E1'],
    [8, 'c', null],
    [9, 'b', 'B2'],
  ];

  it('a partial seal then the full seal index each record once, with local pointers', async () => {
    const backup = await openBackup();
    const full0 = segment(seg0);
    const partial0 = full0.subarray(0, prefixBytes(seg0, 3));
    expect(await shipAndIndex(backup, 0, partial0)).toBe(3);
    expect(str(await backup.get('b'))).toBe('B1');
    expect(backup.stats().l0.entryCount).toBe(3);
    // The full seal: only the suffix is new.
    expect(await shipAndIndex(backup, 0, full0)).toBe(3);
    // The same seal again (a re-sent message): nothing new.
    expect(backupStore(backup).indexShippedLogSegment({ seq: 0, bytes: full0 })).toBe(0);
    expect(await shipAndIndex(backup, 1, segment(seg1))).toBe(3);

    expect(backup.stats().nextLsn).toBe(10);
    expect(str(await backup.get('a'))).toBe('A2');
    expect(str(await backup.get('b'))).toBe('B2');
    expect(await backup.get('c')).toBeUndefined();
    expect(str(await backup.get('d'))).toBe('D1');
    expect(str(await backup.get('e'))).toBe('E1');
    expect(await dump(backup)).toEqual(
      new Map(
        [
          ['a', 'A2'],
          ['b', 'B2'],
          ['d', 'D1'],
          ['e', 'E1'],
        ].map(([k, v]) => [Buffer.from(k!).toString('hex'), Buffer.from(v!).toString('hex')]),
      ),
    );
    // Pointers are local: the backup's segments are not at the primary offsets it was given.
    const local = new Map(backup.replica.segmentMapEntries());
    expect(local.get(100 * SEGMENT)).not.toBe(100 * SEGMENT);
  });

  it('a tombstone hides a value that already reached a level', async () => {
    const backup = await openBackup(new SimDevice(), { autoCompact: false });
    await shipAndIndex(backup, 0, segment(seg0.slice(0, 3)));
    await backup.flush();
    expect(backup.levelDescriptors()[0]!.length).toBeGreaterThan(0);
    expect(str(await backup.get('c'))).toBe('C1');
    expect(await shipAndIndex(backup, 0, segment([...seg0.slice(0, 3), [4, 'c', null], [5, 'z', '']]))).toBe(
      2,
    );
    expect(await backup.get('c')).toBeUndefined();
    expect(str(await backup.get('z'))).toBe('');
    expect((await backup.scan()).map((kv) => kv.key.toString())).toEqual(['a', 'b', 'z']);
  });

  it('asserts seq order: no segment skipped, none left half indexed, none indexed twice', async () => {
    const backup = await openBackup();
    const full0 = segment(seg0);
    const bytes1 = segment(seg1);
    // Seq 1 before seq 0.
    await backupStore(backup).writeShippedLogSegment({
      seq: 1,
      primarySegmentOffset: 101 * SEGMENT,
      bytes: bytes1,
    });
    expect(() => backupStore(backup).indexShippedLogSegment({ seq: 1, bytes: bytes1 })).toThrow(
      AssertionFailedError,
    );
    // Seq 0 persisted whole, but only its partial seal indexed: seq 1 would skip records.
    await backupStore(backup).writeShippedLogSegment({
      seq: 0,
      primarySegmentOffset: 100 * SEGMENT,
      bytes: full0,
    });
    expect(
      backupStore(backup).indexShippedLogSegment({ seq: 0, bytes: full0.subarray(0, prefixBytes(seg0, 2)) }),
    ).toBe(2);
    expect(() => backupStore(backup).indexShippedLogSegment({ seq: 1, bytes: bytes1 })).toThrow(
      /out of order/,
    );
    // A segment shorter than what is already indexed.
    expect(() => backupStore(backup).indexShippedLogSegment({ seq: 0, bytes: full0.subarray(0, 5) })).toThrow(
      AssertionFailedError,
    );
    // Not persisted (or persisted shorter) first.
    expect(() => backupStore(backup).indexShippedLogSegment({ seq: 2, bytes: bytes1 })).toThrow(
      InvalidArgumentError,
    );
    expect(() =>
      backupStore(backup).indexShippedLogSegment({ seq: 0, bytes: Buffer.concat([full0, Buffer.alloc(8)]) }),
    ).toThrow(InvalidArgumentError);
    // None of that changed anything: the store goes on.
    expect(backupStore(backup).indexShippedLogSegment({ seq: 0, bytes: full0 })).toBe(4);
    expect(backupStore(backup).indexShippedLogSegment({ seq: 1, bytes: bytes1 })).toBe(3);
    // Going back to an earlier segment is out of order too.
    expect(() => backupStore(backup).indexShippedLogSegment({ seq: 0, bytes: full0 })).toThrow(
      /out of order/,
    );
    expect(str(await backup.get('b'))).toBe('B2');
  });

  it('refuses bytes that do not parse inside the announced prefix with CorruptSegmentError', async () => {
    const backup = await openBackup();
    const full0 = segment(seg0);
    const corrupt = Buffer.from(full0);
    corrupt[prefixBytes(seg0, 2) + 20]! ^= 0xff; // inside record 3 (lsn 3)
    await backupStore(backup).writeShippedLogSegment({
      seq: 0,
      primarySegmentOffset: 100 * SEGMENT,
      bytes: corrupt,
    });
    const err = (() => {
      try {
        backupStore(backup).indexShippedLogSegment({ seq: 0, bytes: corrupt });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(CorruptSegmentError);
    expect((err as TalosError).code).toBe('CORRUPT_SEGMENT');
    // All or nothing: not even the two valid records before the damage were indexed.
    expect(backup.stats().l0.entryCount).toBe(0);
    // A truncated last record, and an lsn that does not continue the chain, are refused as well.
    const truncated = full0.subarray(0, full0.length - 1);
    expect(() => backupStore(backup).indexShippedLogSegment({ seq: 0, bytes: truncated })).toThrow(
      CorruptSegmentError,
    );
    const skipped = segment([[2, 'a', 'x']]);
    expect(() => backupStore(backup).indexShippedLogSegment({ seq: 0, bytes: skipped })).toThrow(
      CorruptSegmentError,
    );
    // The full seal rewrites the segment with good bytes: indexing goes on from where it stood.
    await backupStore(backup).writeShippedLogSegment({
      seq: 0,
      primarySegmentOffset: 100 * SEGMENT,
      bytes: full0,
    });
    expect(backupStore(backup).indexShippedLogSegment({ seq: 0, bytes: full0 })).toBe(6);
  });

  it('is a backup-only entry point', async () => {
    const { store: primary } = await openTiny();
    expect(() => backupStore(primary).indexShippedLogSegment({ seq: 0, bytes: Buffer.alloc(0) })).toThrow(
      NotWritableError,
    );
  });
});

describe('a Build-Index backup flushes and compacts on its own', () => {
  it('with autoCompact: fed by a primary, it builds levels of its own and scans like the primary', async () => {
    const primary = await Store.open({ ...TINY, device: new SimDevice() });
    const backup = await openBackup();
    feed(primary, { backup });
    for (let i = 0; i < 600; i++) {
      const key = `k${String((i * 37) % 451).padStart(3, '0')}`;
      if (i % 11 === 0) await primary.delete(key);
      else await primary.put(key, `v${i}-${'x'.repeat(i % 60)}`);
    }
    await primary.flush(); // tail sync: the last records reach the backup
    await backupIdle(backup);
    await backup.flush();
    const stats = backup.stats();
    expect(stats.flushCount).toBeGreaterThan(3);
    expect(stats.levels.some((l) => l.segmentCount > 0 && l.level > 1)).toBe(true);
    expect(stats.l0.entryCount).toBe(0);
    expect(await dump(backup)).toEqual(await dump(primary));
    await backup.compactAll();
    expect(backup.levelDescriptors().slice(0, -1).flat()).toHaveLength(0);
    // (Every value read above was verified at its pointer: lsn and key match the record there.)
    expect(await dump(backup)).toEqual(await dump(primary));
  });

  it('without autoCompact: l0Full is announced once, flush() and compactLevelNow() build the levels', async () => {
    const backup = await openBackup(new SimDevice(), { autoCompact: false });
    const announced: number[] = [];
    backup.hooks.on('l0Full', (e) => announced.push(e.entryCount));
    const records: Rec[] = [];
    let lsn = 1;
    let seq = 0;
    const model = new Map<string, string>();
    for (let round = 0; round < 6; round++) {
      // One segment per round, each holding a whole L0 worth of keys.
      records.length = 0;
      for (let i = 0; i < 60; i++) {
        const key = `key-${String((round * 60 + i) % 150).padStart(3, '0')}`;
        const value = `r${round}i${i}`;
        records.push([lsn++, key, value]);
        model.set(key, value);
      }
      const bytes = segment(records);
      // A partial seal of half, then the full seal.
      await shipAndIndex(backup, seq, bytes.subarray(0, prefixBytes(records, 30)));
      await shipAndIndex(backup, seq, bytes);
      seq++;
      if (round === 0) {
        expect(announced).toHaveLength(1);
        expect(backup.stats().l0.frozenEntryCount).toBe(0); // announced, not frozen by itself
      }
      await backup.flush();
      let level = backup.dueCompaction();
      while (level !== undefined) {
        await backup.compactLevelNow(level);
        level = backup.dueCompaction();
      }
    }
    expect(announced).toHaveLength(6);
    expect(backup.stats().flushCount).toBe(6);
    expect(backup.levelDescriptors().flat().length).toBeGreaterThan(0);
    const expected = new Map(
      [...model].map(([k, v]) => [Buffer.from(k).toString('hex'), Buffer.from(v).toString('hex')]),
    );
    expect(await dump(backup)).toEqual(expected);
    await backup.compactLevelNow(1);
    expect(await dump(backup)).toEqual(expected);
  });
});

describe('recovery with rebuildL0', () => {
  it('after a crash, L0 is rebuilt from the persisted log and indexing continues where it stood', async () => {
    const primary = await Store.open({ ...TINY, device: new SimDevice() });
    const device = new SimDevice({ name: 'backup' });
    // Large L0 so that most of what was indexed is in L0 only (not flushed) at the crash.
    const options = { l0Bytes: 1 << 20, rebuildL0: true };
    const target = { backup: await openBackup(device.attach(), options) };
    feed(primary, target);
    for (let i = 0; i < 150; i++) await primary.put(`k${i % 70}`, `first-${i}-${'y'.repeat(i % 90)}`);
    await backupIdle(target.backup);
    await target.backup.flush(); // some of it in L1
    for (let i = 0; i < 150; i++) await primary.put(`k${(i * 7) % 90}`, `second-${i}`);
    await primary.delete('k3');
    await primary.flush(); // tail sync
    await backupIdle(target.backup);
    const expected = await dump(primary);
    const before = target.backup.stats();
    expect(before.l0.entryCount).toBeGreaterThan(0);
    expect(await dump(target.backup)).toEqual(expected);

    device.crash({ keepProbability: 0 });
    // Without rebuildL0 a backup opens with its levels only: the L0 contents are missing.
    const plain = await openBackup(device.attach(), { l0Bytes: 1 << 20 });
    expect(plain.stats().l0.entryCount).toBe(0);
    expect(await dump(plain)).not.toEqual(expected);
    device.crash({ keepProbability: 0 });

    target.backup = await openBackup(device.attach(), options);
    const after = target.backup.stats();
    expect(after.recovery.corruptSegments).toEqual([]);
    expect(after.recovery.replayedRecordCount).toBeGreaterThan(0);
    expect(after.l0.entryCount).toBe(before.l0.entryCount);
    expect(after.nextLsn).toBe(before.nextLsn);
    expect(await dump(target.backup)).toEqual(expected);

    // The primary goes on (its active segment was partially sealed): the restarted backup indexes
    // only what is new, then a clean close and reopen still lose nothing.
    for (let i = 0; i < 200; i++) await primary.put(`k${(i * 13) % 110}`, `third-${i}`);
    await primary.flush();
    await backupIdle(target.backup);
    expect(await dump(target.backup)).toEqual(await dump(primary));
    await target.backup.close();
    target.backup = await openBackup(device.attach(), options);
    expect(await dump(target.backup)).toEqual(await dump(primary));
  });

  it('property: random writes, backup flushes and backup crashes keep the backup equal to the primary', async () => {
    type Op =
      | { t: 'put'; key: number; size: number }
      | { t: 'del'; key: number }
      | { t: 'primaryFlush' }
      | { t: 'backupFlush' }
      | { t: 'crash'; keep: number };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      {
        weight: 12,
        arbitrary: fc.record({ t: fc.constant('put' as const), key: fc.nat(60), size: fc.nat(400) }),
      },
      { weight: 2, arbitrary: fc.record({ t: fc.constant('del' as const), key: fc.nat(60) }) },
      { weight: 1, arbitrary: fc.constant({ t: 'primaryFlush' as const }) },
      { weight: 1, arbitrary: fc.constant({ t: 'backupFlush' as const }) },
      {
        weight: 1,
        arbitrary: fc.record({ t: fc.constant('crash' as const), keep: fc.constantFrom(0, 0.5, 1) }),
      },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(opArb, { minLength: 1, maxLength: 300, size: 'max' }),
        fc.boolean(),
        async (ops, auto) => {
          const primary = await Store.open({ ...TINY, device: new SimDevice() });
          const device = new SimDevice({ name: 'backup' });
          const options = { rebuildL0: true, autoCompact: auto };
          const target = { backup: await openBackup(device.attach(), options) };
          feed(primary, target);
          for (const op of ops) {
            switch (op.t) {
              case 'put':
                await primary.put(`key-${op.key}`, Buffer.alloc(op.size, op.key));
                break;
              case 'del':
                await primary.delete(`key-${op.key}`);
                break;
              case 'primaryFlush':
                await primary.flush();
                break;
              case 'backupFlush':
                await backupIdle(target.backup);
                await target.backup.flush();
                break;
              case 'crash':
                // Everything a backup persisted was synced: a crash (even inside its own background
                // flush) must lose nothing it had indexed.
                await backupIdle(target.backup);
                device.crash({ keepProbability: op.keep });
                await new Promise((resolve) => setImmediate(resolve));
                target.backup = await openBackup(device.attach(), options);
                expect(target.backup.stats().recovery.corruptSegments).toEqual([]);
                break;
            }
          }
          await primary.flush();
          await backupIdle(target.backup);
          const expected = await dump(primary);
          expect(await dump(target.backup)).toEqual(expected);
          await target.backup.flush();
          expect(await dump(target.backup)).toEqual(expected);
        },
      ),
      propertyParams('build-index backup crash', 40),
    );
  });
});
