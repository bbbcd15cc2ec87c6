/**
 * Index shipping on engine stores alone (the backup side, src/replication/backup-store.ts): a primary store's hooks feed a backup store on another
 * device whose segment numbers differ (it starts with unrelated segments in use). The backup
 * persists shipped log segments through its segment map, translates each shipped index segment's
 * value pointers, installs every compaction commit — and must then answer a full scan exactly as
 * the primary does, also after a reopen from its own manifest.
 */
import * as fc from 'fast-check';
import { IndexSegmentBuilder, translateIndexSegment } from '../../src/engine/index-segment.js';
import { SimDevice } from '../../src/engine/sim-device.js';
import { Store } from '../../src/engine/store.js';
import { MissingSegmentMappingError } from '../../src/errors.js';
import { backupStore } from '../../src/replication/backup-store.js';
import { propertyParams } from '../support/property.js';
import { dump, ship, TINY } from '../support/store.js';

/**
 * A backup whose first `shift` segments hold unrelated log segments, so the local numbers it gives
 * the primary's segments differ from the primary's own.
 */
async function openShiftedBackup(device: SimDevice, shift: number): Promise<Store> {
  const backup = await Store.open({ ...TINY, device, role: 'backup' });
  for (let i = 0; i < shift; i++) {
    const seq = 1_000_000 + i;
    await backupStore(backup).writeShippedLogSegment({
      seq,
      primarySegmentOffset: seq * TINY.segmentBytes!,
      bytes: Buffer.alloc(16),
    });
  }
  return backup;
}

describe('index shipping through a segment map', () => {
  it('a backup fed by the hooks scans exactly like the primary, before and after reopen', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.tuple(
            fc.integer({ min: 0, max: 200 }),
            fc.option(fc.uint8Array({ maxLength: 600, size: 'max' }), { nil: null }),
          ),
          { minLength: 1, maxLength: 400, size: 'max' },
        ),
        fc.integer({ min: 1, max: 7 }),
        async (ops, shift) => {
          const primary = await Store.open({ ...TINY, device: new SimDevice() });
          const backupDevice = new SimDevice({ name: 'backup' });
          const backup = await openShiftedBackup(backupDevice, shift);
          const { commits, idle } = ship(primary, backup);
          for (const [k, v] of ops) {
            if (v === null) await primary.delete(`key-${k}`);
            else await primary.put(`key-${k}`, v);
          }
          await primary.flush();
          await idle();
          const expected = await dump(primary);
          expect(await dump(backup)).toEqual(expected);

          // Segment numbers really differ, so translation was exercised.
          const map = backup.replica.segmentMapEntries().filter(([p]) => p < 1_000_000 * TINY.segmentBytes!);
          expect(map.length).toBeGreaterThan(0);
          expect(map.some(([p, l]) => p !== l)).toBe(true);
          expect(commits.length).toBeGreaterThan(0);

          // Same level shape (entry counts per level) as the primary.
          const shape = (s: Store) => s.stats().levels.map((l) => l.entryCount);
          expect(shape(backup)).toEqual(shape(primary));

          // The backup's manifest holds its levels and segment map: a reopen serves the same data.
          await backup.close();
          const reopened = await Store.open({ ...TINY, device: backupDevice });
          expect(reopened.role).toBe('backup');
          expect(await dump(reopened)).toEqual(expected);
          await reopened.close();
          await primary.close();
        },
      ),
      propertyParams('translation', 40),
    );
  });

  it('the whole primary history can also be shipped after the fact, by reading segments back', async () => {
    const primary = await Store.open({ ...TINY, device: new SimDevice() });
    for (let i = 0; i < 300; i++) await primary.put(`k${i % 97}`, Buffer.alloc(100 + (i % 50), i));
    await primary.compactAll();
    const backup = await Store.open({ ...TINY, device: new SimDevice(), role: 'backup' });
    await backupStore(backup).writeShippedLogSegment({
      seq: 999,
      primarySegmentOffset: 999 * 4096,
      bytes: Buffer.alloc(8),
    });
    for (const seg of primary.logSegments()) {
      await backupStore(backup).writeShippedLogSegment({
        seq: seg.seq,
        primarySegmentOffset: seg.offset,
        bytes: primary.replica.readLogSegment(seg.seq),
      });
    }
    const levels = primary.levelDescriptors();
    for (const [i, level] of levels.entries()) {
      for (const d of level)
        backupStore(backup).writeShippedIndexSegment({
          primarySegmentOffset: d.offset,
          bytes: primary.replica.readIndexSegment(d.offset),
        });
      if (level.length > 0) {
        await backupStore(backup).installShippedCompaction({
          compactionId: 1000 + i,
          srcLevel: i,
          dstLevel: i + 1,
          newSegments: level.map((d) => d.offset),
          removedSegments: [],
          replayFrom: { seq: 0, offset: 0, lsn: 1 },
        });
      }
    }
    expect(await dump(backup)).toEqual(await dump(primary));
  });
});

describe('translateIndexSegment (pure)', () => {
  const segmentBytes = 4096;
  function segmentWithPointers(pointers: number[]): Buffer {
    const builder = new IndexSegmentBuilder(segmentBytes);
    pointers.forEach((pointer, i) => {
      expect(
        builder.add(`key-${String(i).padStart(4, '0')}`, { pointer, lsn: i + 1, tombstone: i % 5 === 0 }),
      ).toBe(true);
    });
    return builder.finish();
  }

  it('maps every pointer base and keeps the offset within the segment', () => {
    const pointers = [0, 17, 4096 + 5, 3 * 4096 + 4000, 4096 + 100];
    const map = new Map([
      [0, 10 * 4096],
      [4096, 2 * 4096],
      [3 * 4096, 0],
    ]);
    const out = translateIndexSegment(segmentWithPointers(pointers), segmentBytes, (b) => map.get(b));
    const expected = [10 * 4096, 10 * 4096 + 17, 2 * 4096 + 5, 4000, 2 * 4096 + 100];
    // Decode through the public verifier path: build the expected segment and compare bytes.
    expect(out.equals(segmentWithPointers(expected))).toBe(true);
  });

  it('is pure: the input is unchanged, and translating with the identity is a no-op', () => {
    const input = segmentWithPointers([5, 4096 * 7 + 1]);
    const copy = Buffer.from(input);
    expect(translateIndexSegment(input, segmentBytes, (b) => b).equals(copy)).toBe(true);
    expect(input.equals(copy)).toBe(true);
  });

  it('refuses a pointer without a mapping instead of guessing', () => {
    const input = segmentWithPointers([5, 4096 * 7 + 1]);
    expect(() => translateIndexSegment(input, segmentBytes, (b) => (b === 0 ? 4096 : undefined))).toThrow(
      MissingSegmentMappingError,
    );
  });
});
