/**
 * Corruption and fuzz: random buffers and flipped bytes into every decoder give typed errors (or a
 * clean "not a record"), never a crash and never a wrong answer; a corrupted segment inside a store
 * fails only the reads that need it, naming the segment, while everything else keeps serving.
 */
import * as fc from 'fast-check';
import {
  decodeBlock,
  decodeIndexMeta,
  IndexSegmentBuilder,
  translateIndexSegment,
  verifyIndexSegment,
} from '../../src/engine/index-segment.js';
import { decodeManifest, encodeManifest, type ManifestData } from '../../src/engine/manifest.js';
import { decodeRecord, encodeRecord, parseRecords, recordBytes } from '../../src/engine/record.js';
import { SimDevice } from '../../src/engine/sim-device.js';
import { Store } from '../../src/engine/store.js';
import { CorruptManifestError, CorruptSegmentError } from '../../src/errors.js';
import { propertyParams } from '../support/property.js';
import { TINY } from '../support/store.js';

const bufferArb = fc.uint8Array({ minLength: 0, maxLength: 3000, size: 'max' }).map((a) => Buffer.from(a));

function expectTyped(fn: () => unknown, type: new (...args: never[]) => Error): void {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof type)) throw new Error(`expected ${type.name}, got ${String(err)}`);
  }
}

function validIndexSegment(entryCount: number): Buffer {
  const builder = new IndexSegmentBuilder(4096);
  for (let i = 0; i < entryCount; i++) {
    builder.add(`key-${String(i).padStart(3, '0')}`, { pointer: i * 37, lsn: i + 1, tombstone: i % 4 === 0 });
  }
  return builder.finish();
}

describe('decoders on random bytes', () => {
  it('record decoding never throws and never accepts garbage', () => {
    fc.assert(
      fc.property(bufferArb, fc.nat(), (buf, at) => {
        const offset = buf.length === 0 ? 0 : at % buf.length;
        const check = decodeRecord(buf, offset);
        if (check.ok) {
          // Only a structurally valid record with a matching CRC may pass: re-encoding reproduces it.
          const { record } = check;
          const again = Buffer.alloc(record.length);
          encodeRecord(again, 0, record.lsn, record.key, record.value);
          expect(again.equals(buf.subarray(offset, offset + record.length))).toBe(true);
        }
        const parsed = parseRecords(buf, 0, buf.length, 0);
        expect(parsed.endOffset).toBeLessThanOrEqual(buf.length);
      }),
      propertyParams('fuzz records', 2000),
    );
  });

  it('index segment, block and manifest decoders throw only their typed errors', () => {
    fc.assert(
      fc.property(bufferArb, (buf) => {
        expectTyped(() => decodeIndexMeta(buf, 0, buf.length, 'fuzz'), CorruptSegmentError);
        expectTyped(() => verifyIndexSegment(buf, 'fuzz'), CorruptSegmentError);
        expectTyped(() => translateIndexSegment(buf, 4096, (b) => b, 'fuzz'), CorruptSegmentError);
        expectTyped(() => decodeBlock(buf, 0, buf.length, 'fuzz'), CorruptSegmentError);
        expectTyped(() => decodeManifest(buf, 'fuzz'), CorruptManifestError);
        const asManifest = Buffer.concat([Buffer.from('TALOSMF1 00000000\n'), buf]);
        expectTyped(() => decodeManifest(asManifest, 'fuzz'), CorruptManifestError);
      }),
      propertyParams('fuzz decoders', 2000),
    );
  });
});

describe('single flipped bytes are always detected', () => {
  it('in a log record', () => {
    const key = Buffer.from('some-key');
    const value = Buffer.from('some value bytes');
    const buf = Buffer.alloc(recordBytes(key.length, value.length));
    encodeRecord(buf, 0, 42, key, value);
    expect(decodeRecord(buf, 0).ok).toBe(true);
    for (let i = 0; i < buf.length; i++) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const bad = Buffer.from(buf);
        bad[i]! ^= mask;
        expect(decodeRecord(bad, 0).ok).toBe(false);
      }
    }
  });

  it('in an index segment, anywhere in it', () => {
    const good = validIndexSegment(150);
    expect(verifyIndexSegment(good, 'good').entryCount).toBe(150);
    for (let i = 0; i < good.length; i++) {
      const bad = Buffer.from(good);
      bad[i]! ^= 1 << (i % 8);
      expect(() => verifyIndexSegment(bad, 'flipped')).toThrow(CorruptSegmentError);
      expect(() => translateIndexSegment(bad, 4096, (b) => b, 'flipped')).toThrow(CorruptSegmentError);
    }
  });

  it('in a manifest, anywhere in it', () => {
    const data: ManifestData = {
      formatVersion: 1,
      role: 'primary',
      segmentBytes: 4096,
      allocatedSegmentCount: 3,
      log: [{ seq: 0, offset: 0, usedBytes: null }],
      replayFrom: { seq: 0, offset: 0, lsn: 1 },
      levels: [
        [{ offset: 4096, usedBytes: 100, entryCount: 3, tombstoneCount: 0, minKey: 'a', maxKey: 'c' }],
      ],
      nextCompactionId: 2,
      segmentMap: [],
      indexMap: [],
    };
    const good = encodeManifest(data);
    expect(decodeManifest(good, 'good')).toEqual(data);
    for (let i = 0; i < good.length; i++) {
      const bad = Buffer.from(good);
      bad[i]! ^= 0x04;
      expect(() => decodeManifest(bad, 'flipped')).toThrow(CorruptManifestError);
    }
  });
});

describe('a store with a corrupted segment', () => {
  async function buildStore(): Promise<{ device: SimDevice; values: Map<string, Buffer> }> {
    const device = new SimDevice();
    const store = await Store.open({ ...TINY, device });
    const values = new Map<string, Buffer>();
    for (let i = 0; i < 400; i++) {
      const key = `key-${String(i).padStart(4, '0')}`;
      const value = Buffer.alloc(60, i);
      values.set(key, value);
      await store.put(key, value);
    }
    await store.compactAll();
    await store.close();
    return { device, values };
  }

  it('fails reads that need a corrupt index block, naming it, and serves everything else', async () => {
    const { device, values } = await buildStore();
    let store = await Store.open({ ...TINY, device });
    const level = store.levelDescriptors().find((l) => l.length >= 3)!;
    const victim = level[1]!;
    await store.close();
    device.corrupt(victim.offset + 20, Buffer.from([0xde, 0xad]));
    store = await Store.open({ ...TINY, device });
    await expect(store.get(Buffer.from(victim.minKey, 'latin1'))).rejects.toThrow(
      new CorruptSegmentError(`index@${victim.offset}`, 'block 0 crc mismatch'),
    );
    await expect(store.scan()).rejects.toThrow(CorruptSegmentError);
    let served = 0;
    for (const [key, value] of values) {
      if (key >= victim.minKey && key <= victim.maxKey) continue;
      expect((await store.get(key))?.equals(value)).toBe(true);
      served++;
    }
    expect(served).toBeGreaterThan(200);
    expect((await store.scan({ lt: level[0]!.maxKey })).length).toBeGreaterThan(0);
    // Writes keep working too.
    await store.put('new-key', 'new-value');
    expect((await store.get('new-key'))?.toString()).toBe('new-value');
    await store.close();
  });

  it('fails the read of a corrupt value record, naming its log segment, and serves the others', async () => {
    const { device, values } = await buildStore();
    const probe = await Store.open({ ...TINY, device });
    const log = probe.logSegments();
    await probe.close();
    const victimSegment = log[1]!.offset;
    device.corrupt(victimSegment + 40, Buffer.from([0x55]));
    const store = await Store.open({ ...TINY, device });
    let failures = 0;
    for (const [key, value] of values) {
      try {
        expect((await store.get(key))?.equals(value)).toBe(true);
      } catch (err) {
        expect(err).toBeInstanceOf(CorruptSegmentError);
        expect((err as Error).message).toContain(`log@${victimSegment}`);
        failures++;
      }
    }
    expect(failures).toBeGreaterThanOrEqual(1);
    expect(failures).toBeLessThan(5);
    await store.close();
  });

  it('refuses to open with a corrupt manifest, with a typed error', async () => {
    const { device } = await buildStore();
    // A flip in the snapshot (the first record of the live manifest file): no torn append explains it.
    const name = device.readMeta('CURRENT')!.toString().trim();
    const manifest = device.readMeta(name)!;
    manifest[40]! ^= 0x10;
    device.corruptMeta(name, manifest);
    await expect(Store.open({ ...TINY, device })).rejects.toThrow(CorruptManifestError);
  });

  it('reports a corrupt sealed log segment met during replay and still opens', async () => {
    const device = new SimDevice();
    const store = await Store.open({ ...TINY, l0Bytes: 1 << 20, device });
    for (let i = 0; i < 100; i++) await store.put(`k${i}`, Buffer.alloc(200, i));
    const sealed = store.logSegments().filter((s) => s.usedBytes !== null);
    expect(sealed.length).toBeGreaterThan(2);
    await store.close();
    device.corrupt(sealed[1]!.offset + 30, Buffer.from([0x99]));
    const reopened = await Store.open({ ...TINY, l0Bytes: 1 << 20, device });
    expect(reopened.stats().recovery.corruptSegments).toEqual([
      expect.stringContaining(`log@${sealed[1]!.offset}`),
    ]);
    // Records in other segments were replayed and are served.
    expect((await reopened.get('k0'))?.equals(Buffer.alloc(200, 0))).toBe(true);
    expect((await reopened.get('k99'))?.equals(Buffer.alloc(200, 99))).toBe(true);
    await reopened.close();
  });
});
