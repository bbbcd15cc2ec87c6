/**
 * Index block format 2 (src/engine/index-block.ts): shared-prefix keys with restart points, a u48
 * pointer and a varint lsn make YCSB-like index segments much smaller than format 1, and
 * segments written in format 1 are still read, verified and translated.
 */
import { crc32c } from '../../src/engine/crc.js';
import {
  decodeIndexMeta,
  INDEX_MAGIC,
  IndexSegmentBuilder,
  translateIndexSegment,
  verifyIndexSegment,
} from '../../src/engine/index-segment.js';
import { createBlockCache, IndexSegmentReader } from '../../src/engine/index-segment-reader.js';
import type { IndexEntry } from '../../src/engine/memtable.js';
import { SimDevice } from '../../src/engine/sim-device.js';

const ycsbKey = (i: number): string => `user${String((i * 2654435761) % 1e12).padStart(20, '0')}`;

function entriesOf(n: number): [string, IndexEntry][] {
  const keys = Array.from({ length: n }, (_, i) => ycsbKey(i)).sort();
  return keys.map((key, i) => [
    key,
    { pointer: 7 * 65536 + i * 150, lsn: 100_000 + i, tombstone: i % 9 === 0 },
  ]);
}

/** A format-1 segment, byte for byte as the code before format 2 wrote it (one block per 80 entries). */
function formatOneSegment(entries: [string, IndexEntry][]): Buffer {
  const parts: Buffer[] = [];
  const blocks: { offset: number; length: number; crc: number; firstKey: string }[] = [];
  let at = 0;
  for (let b = 0; b * 80 < entries.length; b++) {
    const slice = entries.slice(b * 80, b * 80 + 80);
    const block = Buffer.alloc(2 + slice.reduce((sum, [k]) => sum + 2 + k.length + 17, 0));
    let o = block.writeUInt16LE(slice.length, 0);
    for (const [key, e] of slice) {
      o = block.writeUInt16LE(key.length, o);
      o += block.write(key, o, 'latin1');
      o = block.writeUInt32LE(e.pointer % 2 ** 32, o);
      o = block.writeUInt32LE(Math.floor(e.pointer / 2 ** 32), o);
      o = block.writeUInt32LE(e.lsn % 2 ** 32, o);
      o = block.writeUInt32LE(Math.floor(e.lsn / 2 ** 32), o);
      o = block.writeUInt8(e.tombstone ? 1 : 0, o);
    }
    blocks.push({ offset: at, length: block.length, crc: crc32c(block), firstKey: slice[0]![0] });
    parts.push(block);
    at += block.length;
  }
  const blockIndexOffset = at;
  const trailer: Buffer[] = [];
  for (const b of blocks) {
    const e = Buffer.alloc(14 + b.firstKey.length);
    e.writeUInt32LE(b.offset, 0);
    e.writeUInt32LE(b.length, 4);
    e.writeUInt32LE(b.crc, 8);
    e.writeUInt16LE(b.firstKey.length, 12);
    e.write(b.firstKey, 14, 'latin1');
    trailer.push(e);
  }
  for (const key of [entries[0]![0], entries.at(-1)![0]]) {
    const k = Buffer.alloc(2 + key.length);
    k.writeUInt16LE(key.length, 0);
    k.write(key, 2, 'latin1');
    trailer.push(k);
  }
  const body = Buffer.concat([...parts, ...trailer]);
  const footer = Buffer.alloc(32);
  footer.writeUInt32LE(INDEX_MAGIC, 0);
  footer.writeUInt16LE(1, 4);
  footer.writeUInt32LE(blocks.length, 8);
  footer.writeUInt32LE(entries.length, 12);
  footer.writeUInt32LE(blockIndexOffset, 16);
  footer.writeUInt32LE(body.length + 32, 20);
  footer.writeUInt32LE(entries.filter(([, e]) => e.tombstone).length, 24);
  const segment = Buffer.concat([body, footer]);
  segment.writeUInt32LE(crc32c(segment.subarray(blockIndexOffset, segment.length - 4)), segment.length - 4);
  return segment;
}

it('format 2 is at most 0.6× format 1 for YCSB keys, and every entry reads back', () => {
  const entries = entriesOf(1500);
  const builder = new IndexSegmentBuilder(1 << 20);
  for (const [key, e] of entries) expect(builder.add(key, e)).toBe(true);
  const v2 = builder.finish();
  const v1 = formatOneSegment(entries);
  expect(v2.length / v1.length).toBeLessThanOrEqual(0.6);
  expect(decodeIndexMeta(v2, 0, v2.length, 'v2').version).toBe(2);
  const device = new SimDevice();
  device.write(0, v2, 'index');
  const meta = verifyIndexSegment(v2, 'v2');
  const reader = new IndexSegmentReader(
    device,
    {
      offset: 0,
      usedBytes: v2.length,
      entryCount: meta.entryCount,
      tombstoneCount: meta.tombstoneCount,
      minKey: meta.minKey,
      maxKey: meta.maxKey,
    },
    createBlockCache(1 << 20),
  );
  for (const [key, e] of entries) expect(reader.get(key)).toEqual(e);
  expect(reader.get(`${entries[5]![0]}x`)).toBeUndefined();
  expect([...reader.range(undefined, undefined, false)].map(([k]) => k)).toEqual(entries.map(([k]) => k));
});

it('format 1 segments are still read, verified and translated', () => {
  const entries = entriesOf(300);
  const v1 = formatOneSegment(entries);
  const meta = verifyIndexSegment(v1, 'v1');
  expect(meta).toMatchObject({ version: 1, entryCount: 300, blockCount: 4 });
  const device = new SimDevice();
  device.write(65536, v1, 'index');
  const reader = new IndexSegmentReader(
    device,
    {
      offset: 65536,
      usedBytes: v1.length,
      entryCount: 300,
      tombstoneCount: meta.tombstoneCount,
      minKey: meta.minKey,
      maxKey: meta.maxKey,
    },
    createBlockCache(1 << 20),
  );
  for (const [key, e] of entries) expect(reader.get(key)).toEqual(e);
  const translated = translateIndexSegment(v1, 65536, (base) => base + 3 * 65536);
  expect(
    translated.equals(
      formatOneSegment(entries.map(([k, e]) => [k, { ...e, pointer: e.pointer + 3 * 65536 }])),
    ),
  ).toBe(true);
});
