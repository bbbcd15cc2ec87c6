/**
 * Promotion on engine stores alone (src/replication/promotion.ts) (PROTOCOL §6): a backup fed by a primary's hooks loses its primary;
 * its log buffer (the primary's unsealed active segment, as one-sided writes left it) is the tail.
 * Promoted and reopened, it must serve exactly what the primary acknowledged, keep working as a
 * primary, and survive a reopen. Rebase then lets another backup follow the new primary.
 */
import * as fc from 'fast-check';
import { parseRecords } from '../../src/engine/record.js';
import { SimDevice } from '../../src/engine/sim-device.js';
import { NotWritableError, Store } from '../../src/engine/store.js';
import { backupStore, RebaseMismatchError } from '../../src/replication/backup-store.js';
import { promoteToPrimary, type TailBuffer } from '../../src/replication/promotion.js';
import { propertyParams } from '../support/property.js';
import { expectEquivalent } from '../support/replicas.js';
import { backupIdle, dump, ship, TINY } from '../support/store.js';

/** The primary's active segment as a backup's registered buffer holds it (segment-sized). */
function activeTail(
  primary: Store,
  garbage = 0,
): { seq: number; primarySegmentOffset: number; bytes: Buffer } {
  const active = primary.logSegments().at(-1)!;
  const bytes = Buffer.alloc(primary.segmentBytes);
  const used = primary.replica.readLogSegment(active.seq);
  used.copy(bytes);
  // Bytes past the valid prefix: stale data from an older segment that used the same buffer.
  for (let i = 0; i < garbage && used.length + i < bytes.length; i++)
    bytes[used.length + i] = (i * 37 + 11) & 0xff;
  return { seq: active.seq, primarySegmentOffset: active.offset, bytes };
}

async function promote(backup: Store, device: SimDevice, tail: TailBuffer[]) {
  await backupIdle(backup);
  const report = await promoteToPrimary(backup, { tail });
  expect(backup.isClosed).toBe(true);
  const store = await Store.open({ ...TINY, device });
  expect(store.role).toBe('primary');
  return { store, report };
}

describe('promotion', () => {
  it('a promoted backup serves every write its primary made, then works and recovers as a primary', async () => {
    const primary = await Store.open({ ...TINY, device: new SimDevice() });
    const device = new SimDevice({ name: 'backup' });
    const backup = await Store.open({ ...TINY, device, role: 'backup' });
    await backupStore(backup).setMapOwner('n1');
    ship(primary, backup);
    for (let i = 0; i < 900; i++) {
      if (i % 13 === 0) await primary.delete(`k${(i * 7) % 200}`);
      else await primary.put(`k${(i * 7) % 200}`, `v${i}`.padEnd(30, '.'));
    }
    const expected = await dump(primary);
    await backupIdle(backup);
    const active = primary.logSegments().at(-1)!;
    const persisted = backup.logSegments().find((e) => e.seq === active.seq)?.usedBytes ?? 0;
    const { store, report } = await promote(backup, device, [activeTail(primary, 300)]);
    // Kept from the buffer: the active segment's bytes the backup had not persisted (by tail sync).
    expect(report.keptBytes).toBe(primary.replica.readLogSegment(active.seq).length - persisted);
    expect(await dump(store)).toEqual(expected);
    // A primary now: writes, flushes and compacts, and recovers after a reopen.
    for (let i = 0; i < 300; i++) await store.put(`new${i}`, 'x'.repeat(40));
    await store.compactAll();
    const after = await dump(store);
    expect(after.size).toBe(expected.size + 300);
    await store.close();
    const reopened = await Store.open({ ...TINY, device });
    expect(await dump(reopened)).toEqual(after);
    await reopened.close();
    await primary.close();
  });

  it('keeps only whole records that continue the lsn chain: a torn tail loses the unacknowledged suffix', async () => {
    const primary = await Store.open({ ...TINY, device: new SimDevice() });
    const device = new SimDevice();
    const backup = await Store.open({ ...TINY, device, role: 'backup' });
    ship(primary, backup);
    for (let i = 0; i < 400; i++) await primary.put(`k${i}`, `v${i}`);
    const tail = activeTail(primary);
    const records = parseRecords(tail.bytes, 0, tail.bytes.length, 0).records;
    expect(records.length).toBeGreaterThan(3);
    const cut = records[2]!; // the buffer got the third record only partly
    tail.bytes.fill(0, cut.offset + Math.floor(cut.length / 2));
    const { store } = await promote(backup, device, [tail]);
    const keys = new Set([...(await dump(store)).keys()].map((k) => Buffer.from(k, 'hex').toString()));
    for (const r of records.slice(0, 2)) expect(keys.has(r.key.toString())).toBe(true);
    for (const r of records.slice(2)) expect(keys.has(r.key.toString())).toBe(false);
    await store.close();
    await primary.close();
  });

  it('a crash before the promotion completes leaves a backup that can be promoted again', async () => {
    const primary = await Store.open({ ...TINY, device: new SimDevice() });
    const device = new SimDevice({ seed: 5 });
    const backup = await Store.open({ ...TINY, device, role: 'backup' });
    ship(primary, backup);
    for (let i = 0; i < 500; i++) await primary.put(`k${i % 150}`, `v${i}`);
    const expected = await dump(primary);
    const tail = activeTail(primary);
    const writeMeta = device.writeMetaAtomic.bind(device);
    const appendMeta = device.appendMeta.bind(device);
    device.writeMetaAtomic = device.appendMeta = () => {
      throw new Error('power lost before the manifest write');
    };
    await expect(promoteToPrimary(backup, { tail: [tail] })).rejects.toThrow();
    device.writeMetaAtomic = writeMeta;
    device.appendMeta = appendMeta;
    device.crash();
    const again = await Store.open({ ...TINY, device });
    expect(again.role).toBe('backup');
    const { store } = await promote(again, device, [tail]);
    expect(await dump(store)).toEqual(expected);
    await store.close();
    await primary.close();
  });

  it('only a backup can be promoted', async () => {
    const primary = await Store.open({ ...TINY, device: new SimDevice() });
    await expect(promoteToPrimary(primary, { tail: [] })).rejects.toBeInstanceOf(NotWritableError);
    await primary.close();
  });

  it('property: random workloads, promoted with their tail and stale bytes past it, read like the primary', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat({ max: 120 }), fc.option(fc.nat({ max: 200 }), { freq: 6 })), {
          minLength: 1,
          maxLength: 500,
          size: 'max',
        }),
        fc.nat({ max: 600 }),
        async (ops, garbage) => {
          const primary = await Store.open({ ...TINY, device: new SimDevice() });
          const device = new SimDevice();
          const backup = await Store.open({ ...TINY, device, role: 'backup' });
          ship(primary, backup);
          for (const [k, size] of ops) {
            if (size === null) await primary.delete(`key${k}`);
            else await primary.put(`key${k}`, 'v'.repeat(size));
          }
          const { store } = await promote(backup, device, [activeTail(primary, garbage)]);
          expect(await dump(store)).toEqual(await dump(primary));
          await store.close();
          await primary.close();
        },
      ),
      propertyParams('promotion', 30),
    );
  });
});

describe('rebase', () => {
  it("a second backup re-keyed to the promoted backup's offsets follows the new primary", async () => {
    const primary = await Store.open({ ...TINY, device: new SimDevice() });
    const deviceA = new SimDevice({ name: 'A' });
    const a = await Store.open({ ...TINY, device: deviceA, role: 'backup' });
    const b = await Store.open({ ...TINY, device: new SimDevice({ name: 'B' }), role: 'backup' });
    // B's local numbers differ from A's: it holds an unrelated segment first.
    await backupStore(b).writeShippedLogSegment({
      seq: 999_999,
      primarySegmentOffset: 999_999 * 4096,
      bytes: Buffer.alloc(8),
    });
    await backupStore(a).setMapOwner('n1');
    await backupStore(b).setMapOwner('n1');
    ship(primary, a);
    ship(primary, b);
    for (let i = 0; i < 700; i++) await primary.put(`k${(i * 11) % 250}`, `v${i}`.padEnd(24, '-'));
    await primary.flush();
    await backupIdle(a);
    await backupIdle(b);
    const tail = activeTail(primary);
    const formerSegments = a.replica.segmentMapEntries();
    const formerIndexes = a.replica.indexMapEntries();
    const { store: newPrimary } = await promote(a, deviceA, [tail]);
    const segments = newPrimary.logSegments().map((e) => [e.seq, e.offset] as [number, number]);
    expect(segments.length).toBeGreaterThanOrEqual(formerSegments.length);
    await expect(
      backupStore(b).rebaseMaps({ owner: 'n9', newOwner: 'n2', segments, indexMap: formerIndexes }),
    ).rejects.toThrow(RebaseMismatchError);
    // A gap (the new primary lacks a segment below its end) cannot be reconciled.
    await expect(
      backupStore(b).rebaseMaps({ owner: 'n1', newOwner: 'n2', segments: segments.slice(1), indexMap: [] }),
    ).rejects.toThrow(RebaseMismatchError);
    const result = await backupStore(b).rebaseMaps({
      owner: 'n1',
      newOwner: 'n2',
      segments,
      indexMap: newPrimary.replica.indexMapEntries(),
    });
    // The unrelated segment past the new primary's log end is truncated.
    expect(result).toEqual({ truncatedSegments: 1, droppedIndexSegments: 0 });
    expect(b.replica.mapOwner()).toBe('n2');
    // B now follows the new primary: its seals, index segments and commits.
    ship(newPrimary, b);
    // What B lacks (the tail the new primary took from its buffer) arrives as re-sync would send it.
    const active = newPrimary.logSegments().at(-1)!;
    await backupStore(b).writeShippedLogSegment({
      seq: active.seq,
      primarySegmentOffset: active.offset,
      bytes: newPrimary.replica.readLogSegment(active.seq),
    });
    for (let i = 0; i < 600; i++) await newPrimary.put(`k${(i * 13) % 250}`, `w${i}`.padEnd(24, '+'));
    await newPrimary.compactAll();
    await backupIdle(b);
    expectEquivalent(newPrimary, b);
    expect(await dump(b)).toEqual(await dump(newPrimary));
    await newPrimary.close();
    await primary.close();
  });
});
