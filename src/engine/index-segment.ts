/**
 * Index segments: the on-device form of levels L1..Ln. One index segment occupies one device
 * segment and is self-contained — it holds no pointer to any other index segment — so a backup can
 * translate it in one linear pass over its entries (value pointers only).
 *
 * Layout of the used prefix (little-endian):
 *
 *   block 0 | block 1 | … | block index | minKey, maxKey | footer (32 bytes)
 *
 *   block         entryCount u16, then per entry:
 *                 keyLen u16 | key | pointer u64 | lsn u64 | flags u8 (bit 0 = tombstone)
 *   block index   per block: offset u32 | length u32 | crc32c u32 | firstKeyLen u16 | firstKey
 *   keys          minKeyLen u16 | minKey | maxKeyLen u16 | maxKey
 *   footer        magic u32 'TLIX' | version u16 | reserved u16 | blockCount u32 | entryCount u32 |
 *                 blockIndexOffset u32 | segmentUsedBytes u32 | tombstoneCount u32 | metaCrc u32
 *
 * Each block carries its own CRC (in the block index) so a point read verifies just the block it
 * reads; `metaCrc` covers the block index, the keys and the footer before it. Shipping uses a CRC of
 * the whole used prefix (`crc32c(bytes)`), computed by the caller.
 */
import { assert } from '../assert.js';
import { CorruptSegmentError } from '../errors.js';
import { crc32c } from './crc.js';
import { ENTRY_OVERHEAD_BYTES, type IndexEntry } from './memtable.js';

export const INDEX_FOOTER_BYTES = 32;
export const INDEX_MAGIC = 0x58494c54; // "TLIX"
export const INDEX_FORMAT_VERSION = 1;
export const TARGET_BLOCK_BYTES = 4096;
export const BLOCK_INDEX_ENTRY_FIXED_BYTES = 14;
export const FLAG_TOMBSTONE = 1;
export const TWO_32 = 2 ** 32;

/** Entries of one block, decoded; keys are latin1 strings (byte order = string order). */
export interface DecodedBlock {
  keys: string[];
  pointers: number[];
  lsns: number[];
  tombstones: boolean[];
}

export interface IndexSegmentMeta {
  blockCount: number;
  entryCount: number;
  blockIndexOffset: number;
  usedBytes: number;
  tombstoneCount: number;
  blockOffsets: number[];
  blockLengths: number[];
  blockCrcs: number[];
  blockFirstKeys: string[];
  minKey: string;
  maxKey: string;
}

/**
 * Builds one index segment of at most `capacityBytes` from entries added in strictly ascending key
 * order. `add` returns false when the entry would not fit; the caller then finishes this segment
 * and starts the next.
 */
export class IndexSegmentBuilder {
  private readonly buf: Buffer;
  private blockStart = 0;
  private blockEntryCount = 0;
  private cursor = 2; // past the current block's entryCount field
  private indexBytes = 0;
  private readonly blockOffsets: number[] = [];
  private readonly blockLengths: number[] = [];
  private readonly blockCrcs: number[] = [];
  private readonly blockFirstKeys: string[] = [];
  private entryCount = 0;
  private tombstoneCount = 0;
  private minKey: string | undefined;
  private maxKey: string | undefined;

  constructor(private readonly capacityBytes: number) {
    this.buf = Buffer.alloc(capacityBytes);
  }

  get isEmpty(): boolean {
    return this.entryCount === 0;
  }

  get count(): number {
    return this.entryCount;
  }

  /** Adds an entry; false (nothing written) when it does not fit in this segment. */
  add(key: string, entry: IndexEntry): boolean {
    assert(
      this.maxKey === undefined || key > this.maxKey,
      'index entries must be added in ascending key order',
    );
    const entryBytes = key.length + ENTRY_OVERHEAD_BYTES;
    const startsBlock =
      this.blockEntryCount === 0 || this.cursor - this.blockStart + entryBytes > TARGET_BLOCK_BYTES;
    const projectedIndexBytes =
      this.indexBytes + (startsBlock ? BLOCK_INDEX_ENTRY_FIXED_BYTES + key.length : 0);
    const projectedDataEnd =
      (startsBlock && this.blockEntryCount > 0 ? this.cursor + 2 : this.cursor) + entryBytes;
    const minKeyBytes = (this.minKey ?? key).length;
    const projected =
      projectedDataEnd + projectedIndexBytes + 4 + minKeyBytes + key.length + INDEX_FOOTER_BYTES;
    if (projected > this.capacityBytes) {
      assert(!this.isEmpty, 'one index entry must always fit in an empty index segment');
      return false;
    }
    if (startsBlock) {
      if (this.blockEntryCount > 0) this.closeBlock();
      this.blockFirstKeys.push(key);
      this.indexBytes += BLOCK_INDEX_ENTRY_FIXED_BYTES + key.length;
    }
    const b = this.buf;
    let o = this.cursor;
    o = b.writeUInt16LE(key.length, o);
    o += b.write(key, o, 'latin1');
    o = b.writeUInt32LE(entry.pointer % TWO_32, o);
    o = b.writeUInt32LE(Math.floor(entry.pointer / TWO_32), o);
    o = b.writeUInt32LE(entry.lsn % TWO_32, o);
    o = b.writeUInt32LE(Math.floor(entry.lsn / TWO_32), o);
    o = b.writeUInt8(entry.tombstone ? FLAG_TOMBSTONE : 0, o);
    this.cursor = o;
    this.blockEntryCount++;
    this.entryCount++;
    if (entry.tombstone) this.tombstoneCount++;
    if (this.minKey === undefined) this.minKey = key;
    this.maxKey = key;
    return true;
  }

  private closeBlock(): void {
    this.buf.writeUInt16LE(this.blockEntryCount, this.blockStart);
    const length = this.cursor - this.blockStart;
    this.blockOffsets.push(this.blockStart);
    this.blockLengths.push(length);
    this.blockCrcs.push(crc32c(this.buf.subarray(this.blockStart, this.cursor)));
    this.blockStart = this.cursor;
    this.cursor = this.blockStart + 2;
    this.blockEntryCount = 0;
  }

  /** Finishes the segment; returns exactly its used bytes (a copy owned by the caller). */
  finish(): Buffer {
    assert(
      !this.isEmpty && this.minKey !== undefined && this.maxKey !== undefined,
      'cannot finish an empty index segment',
    );
    this.closeBlock();
    const b = this.buf;
    const blockIndexOffset = this.blockStart;
    let o = blockIndexOffset;
    for (let i = 0; i < this.blockOffsets.length; i++) {
      o = b.writeUInt32LE(this.blockOffsets[i]!, o);
      o = b.writeUInt32LE(this.blockLengths[i]!, o);
      o = b.writeUInt32LE(this.blockCrcs[i]!, o);
      const firstKey = this.blockFirstKeys[i]!;
      o = b.writeUInt16LE(firstKey.length, o);
      o += b.write(firstKey, o, 'latin1');
    }
    o = b.writeUInt16LE(this.minKey.length, o);
    o += b.write(this.minKey, o, 'latin1');
    o = b.writeUInt16LE(this.maxKey.length, o);
    o += b.write(this.maxKey, o, 'latin1');
    const usedBytes = o + INDEX_FOOTER_BYTES;
    assert(usedBytes <= this.capacityBytes, 'index segment overflowed its capacity');
    writeFooter(
      b,
      o,
      this.blockOffsets.length,
      this.entryCount,
      this.tombstoneCount,
      blockIndexOffset,
      usedBytes,
    );
    return Buffer.from(b.subarray(0, usedBytes));
  }
}

function writeFooter(
  b: Buffer,
  at: number,
  blockCount: number,
  entryCount: number,
  tombstoneCount: number,
  blockIndexOffset: number,
  usedBytes: number,
): void {
  let o = at;
  o = b.writeUInt32LE(INDEX_MAGIC, o);
  o = b.writeUInt16LE(INDEX_FORMAT_VERSION, o);
  o = b.writeUInt16LE(0, o);
  o = b.writeUInt32LE(blockCount, o);
  o = b.writeUInt32LE(entryCount, o);
  o = b.writeUInt32LE(blockIndexOffset, o);
  o = b.writeUInt32LE(usedBytes, o);
  o = b.writeUInt32LE(tombstoneCount, o);
  b.writeUInt32LE(crc32c(b.subarray(blockIndexOffset, o)), o);
}

/**
 * Parses and verifies the footer, block index and key range of an index segment, given the bytes
 * from `blockIndexOffset` (or earlier) to its end. `trailer` must end exactly at the segment's used
 * end; `trailerStart` is the segment offset of trailer[0].
 */
export function decodeIndexMeta(
  trailer: Buffer,
  trailerStart: number,
  usedBytes: number,
  name: string,
): IndexSegmentMeta {
  const fail = (detail: string): never => {
    throw new CorruptSegmentError(name, detail);
  };
  if (usedBytes < INDEX_FOOTER_BYTES || trailer.length < INDEX_FOOTER_BYTES) fail('shorter than a footer');
  const f = trailer.length - INDEX_FOOTER_BYTES;
  if (trailer.readUInt32LE(f) !== INDEX_MAGIC) fail('bad footer magic');
  if (trailer.readUInt16LE(f + 4) !== INDEX_FORMAT_VERSION)
    fail(`unknown format version ${trailer.readUInt16LE(f + 4)}`);
  const blockCount = trailer.readUInt32LE(f + 8);
  const entryCount = trailer.readUInt32LE(f + 12);
  const blockIndexOffset = trailer.readUInt32LE(f + 16);
  const footerUsedBytes = trailer.readUInt32LE(f + 20);
  const tombstoneCount = trailer.readUInt32LE(f + 24);
  if (footerUsedBytes !== usedBytes) fail(`footer says ${footerUsedBytes} used bytes, expected ${usedBytes}`);
  const metaStart = blockIndexOffset - trailerStart;
  if (blockIndexOffset < 2 || metaStart < 0 || metaStart > f) fail('block index offset out of range');
  if (crc32c(trailer.subarray(metaStart, f + 28)) !== trailer.readUInt32LE(f + 28))
    fail('metadata crc mismatch');
  if (blockCount === 0 || entryCount < blockCount) fail('empty index segment');
  if (tombstoneCount > entryCount) fail('more tombstones than entries');
  const meta: IndexSegmentMeta = {
    blockCount,
    entryCount,
    blockIndexOffset,
    usedBytes,
    tombstoneCount,
    blockOffsets: [],
    blockLengths: [],
    blockCrcs: [],
    blockFirstKeys: [],
    minKey: '',
    maxKey: '',
  };
  let o = metaStart;
  const need = (n: number): void => {
    if (o + n > f) fail('block index runs past the footer');
  };
  let expectedBlockOffset = 0;
  for (let i = 0; i < blockCount; i++) {
    need(BLOCK_INDEX_ENTRY_FIXED_BYTES);
    const offset = trailer.readUInt32LE(o);
    const length = trailer.readUInt32LE(o + 4);
    if (offset !== expectedBlockOffset || length < 2 || offset + length > blockIndexOffset)
      fail(`block ${i} out of range`);
    expectedBlockOffset = offset + length;
    meta.blockOffsets.push(offset);
    meta.blockLengths.push(length);
    meta.blockCrcs.push(trailer.readUInt32LE(o + 8));
    const keyLen = trailer.readUInt16LE(o + 12);
    o += BLOCK_INDEX_ENTRY_FIXED_BYTES;
    need(keyLen);
    meta.blockFirstKeys.push(trailer.toString('latin1', o, o + keyLen));
    o += keyLen;
  }
  if (expectedBlockOffset !== blockIndexOffset) fail('blocks do not end at the block index');
  for (const which of ['minKey', 'maxKey'] as const) {
    need(2);
    const keyLen = trailer.readUInt16LE(o);
    o += 2;
    need(keyLen);
    meta[which] = trailer.toString('latin1', o, o + keyLen);
    o += keyLen;
  }
  if (o !== f) fail('trailing bytes before the footer');
  if (meta.minKey > meta.maxKey || meta.blockFirstKeys[0] !== meta.minKey) fail('inconsistent key range');
  return meta;
}

/**
 * A block as the point-read path keeps it: its bytes plus where each entry's key starts. Point
 * reads binary-search the raw bytes instead of decoding every key into a string, so a cached
 * block costs about its encoded size and a cache miss costs one pass over the length fields.
 */
export interface BlockView {
  bytes: Buffer;
  /** Offset in `bytes` of entry i's key (its u16 length sits just before). */
  keyStarts: Uint32Array;
  keyLengths: Uint16Array;
}

/** Indexes one block (after its CRC was checked). Structural errors become CorruptSegmentError. */
export function viewBlock(buf: Buffer, start: number, length: number, name: string): BlockView {
  const end = start + length;
  const fail = (detail: string): never => {
    throw new CorruptSegmentError(name, detail);
  };
  if (length < 2 || end > buf.length) fail('block out of range');
  const count = buf.readUInt16LE(start);
  const keyStarts = new Uint32Array(count);
  const keyLengths = new Uint16Array(count);
  let o = start + 2;
  for (let i = 0; i < count; i++) {
    if (o + 2 > end) fail('block entry runs past its block');
    const keyLen = buf.readUInt16LE(o);
    o += 2;
    if (o + keyLen + 17 > end) fail('block entry runs past its block');
    keyStarts[i] = o;
    keyLengths[i] = keyLen;
    o += keyLen + 17;
  }
  if (o !== end) fail('block has trailing bytes');
  return { bytes: buf, keyStarts, keyLengths };
}

export function blockKeyAt(view: BlockView, i: number): string {
  const start = view.keyStarts[i]!;
  return view.bytes.toString('latin1', start, start + view.keyLengths[i]!);
}

export function blockEntryAt(view: BlockView, i: number): IndexEntry {
  const buf = view.bytes;
  const o = view.keyStarts[i]! + view.keyLengths[i]!;
  return {
    pointer: buf.readUInt32LE(o) + buf.readUInt32LE(o + 4) * TWO_32,
    lsn: buf.readUInt32LE(o + 8) + buf.readUInt32LE(o + 12) * TWO_32,
    tombstone: (buf[o + 16]! & FLAG_TOMBSTONE) !== 0,
  };
}

/**
 * Unsigned byte order of `view`'s key i against `key`: < 0, 0, > 0. A plain loop: for index keys
 * (tens of bytes) it beats Buffer#compare, whose argument checks and native call dominate.
 */
export function compareBlockKey(view: BlockView, i: number, key: Uint8Array): number {
  const bytes = view.bytes;
  const start = view.keyStarts[i]!;
  const length = view.keyLengths[i]!;
  const n = Math.min(length, key.length);
  for (let j = 0; j < n; j++) {
    const d = bytes[start + j]! - key[j]!;
    if (d !== 0) return d;
  }
  return length - key.length;
}

/** First entry index whose key is >= `key` (the entry count if none), by unsigned byte order. */
export function blockLowerBound(view: BlockView, key: Uint8Array): number {
  let lo = 0;
  let hi = view.keyStarts.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareBlockKey(view, mid, key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Decodes one block into arrays (after its CRC was checked), for whole-segment passes. */
export function decodeBlock(buf: Buffer, start: number, length: number, name: string): DecodedBlock {
  const view = viewBlock(buf, start, length, name);
  const block: DecodedBlock = { keys: [], pointers: [], lsns: [], tombstones: [] };
  for (let i = 0; i < view.keyStarts.length; i++) {
    block.keys.push(blockKeyAt(view, i));
    const entry = blockEntryAt(view, i);
    block.pointers.push(entry.pointer);
    block.lsns.push(entry.lsn);
    block.tombstones.push(entry.tombstone);
  }
  return block;
}

/** Verifies every checksum and structure of a complete index segment held in memory. */
export function verifyIndexSegment(bytes: Buffer, name: string): IndexSegmentMeta {
  const meta = decodeIndexMeta(bytes, 0, bytes.length, name);
  let previousKey: string | undefined;
  let entries = 0;
  let tombstones = 0;
  for (let i = 0; i < meta.blockCount; i++) {
    const start = meta.blockOffsets[i]!;
    const length = meta.blockLengths[i]!;
    if (crc32c(bytes.subarray(start, start + length)) !== meta.blockCrcs[i]) {
      throw new CorruptSegmentError(name, `block ${i} crc mismatch`);
    }
    const block = decodeBlock(bytes, start, length, name);
    if (block.keys[0] !== meta.blockFirstKeys[i])
      throw new CorruptSegmentError(name, `block ${i} first key mismatch`);
    for (const key of block.keys) {
      if (previousKey !== undefined && key <= previousKey)
        throw new CorruptSegmentError(name, 'keys out of order');
      previousKey = key;
    }
    entries += block.keys.length;
    for (const t of block.tombstones) if (t) tombstones++;
  }
  if (entries !== meta.entryCount || tombstones !== meta.tombstoneCount || previousKey !== meta.maxKey) {
    throw new CorruptSegmentError(name, 'entry count, tombstone count or max key mismatch');
  }
  return meta;
}

export { translateIndexSegment, translateIndexSegmentChecked } from './index-translate.js';
