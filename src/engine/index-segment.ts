/**
 * Index segments: the on-device form of levels L1..Ln. One index segment occupies one device
 * segment and is self-contained — it holds no pointer to any other index segment — so a backup can
 * translate it in one linear pass over its entries (value pointers only).
 *
 * Layout of the used prefix (little-endian):
 *
 *   block 0 | block 1 | … | block index | minKey, maxKey | footer (32 bytes)
 *
 *   block         format 2 (index-block.ts, LevelDB's block format as the model): entryCount u16 |
 *                 restartCount u16 | entries with shared-prefix keys (shared varint | unshared
 *                 varint | suffix | pointer u48 | lsn·2+tombstone varint) | restart offsets u32;
 *                 format 1 (still read): entryCount u16, then keyLen u16 | key | pointer u64 |
 *                 lsn u64 | flags u8 per entry
 *   block index   per block: offset u32 | length u32 | crc32c u32 | firstKeyLen u16 | firstKey
 *   keys          minKeyLen u16 | minKey | maxKeyLen u16 | maxKey
 *   footer        magic u32 'TLIX' | version u16 | reserved u16 | blockCount u32 | entryCount u32 |
 *                 blockIndexOffset u32 | segmentUsedBytes u32 | tombstoneCount u32 | metaCrc u32
 *
 * Each block carries its own CRC (in the block index) so a point read verifies just the block it
 * reads; `metaCrc` covers the block index, the keys and the footer before it: together they cover
 * every byte, which is what a backup's one-pass translation checks (index-translate.ts).
 */
import { assert } from '../assert.js';
import { CorruptSegmentError } from '../errors.js';
import { crc32c } from './crc.js';
import {
  BLOCK_HEADER_BYTES,
  decodeBlock,
  MAX_LSN,
  MAX_POINTER,
  POINTER_BYTES,
  RESTART_INTERVAL,
  sharedPrefix,
  TARGET_BLOCK_BYTES,
  varintBytes,
  writeEntry,
} from './index-block.js';
import type { IndexEntry } from './memtable.js';

export {
  type BlockView,
  type DecodedBlock,
  decodeBlock,
  decodeView,
  FLAG_TOMBSTONE,
  findInBlock,
  TARGET_BLOCK_BYTES,
  TWO_32,
  viewBlock,
  viewBytes,
} from './index-block.js';

export const INDEX_FOOTER_BYTES = 32;
export const INDEX_MAGIC = 0x58494c54; // "TLIX"
export const INDEX_FORMAT_VERSION = 2;
export const BLOCK_INDEX_ENTRY_FIXED_BYTES = 14;

export interface IndexSegmentMeta {
  /** Block format (index-block.ts): 2, or 1 for segments written before it. */
  version: number;
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
  private cursor = BLOCK_HEADER_BYTES; // past the current block's header
  /** Block-relative offsets of the current block's restart points. */
  private restarts: number[] = [];
  private previousKey = '';
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
    assert(entry.pointer >= 0 && entry.pointer <= MAX_POINTER, 'a value pointer fits 48 bits');
    assert(entry.lsn >= 0 && entry.lsn <= MAX_LSN, 'an lsn fits 52 bits');
    // Sizes computed once per entry (this is the flush and compaction inner loop): as a restart
    // (a new block, or every RESTART_INTERVAL-th entry) it stores its whole key, else the suffix
    // after what it shares with the previous key.
    const lsnBytes = varintBytes(entry.lsn * 2 + (entry.tombstone ? 1 : 0));
    const asRestart = 1 + varintBytes(key.length) + key.length + POINTER_BYTES + lsnBytes + 4;
    const restartInBlock = this.blockEntryCount % RESTART_INTERVAL === 0;
    const shared = restartInBlock ? 0 : sharedPrefix(this.previousKey, key);
    const inBlock = restartInBlock
      ? asRestart
      : varintBytes(shared) +
        varintBytes(key.length - shared) +
        key.length -
        shared +
        POINTER_BYTES +
        lsnBytes;
    const startsBlock =
      this.blockEntryCount === 0 ||
      this.cursor - this.blockStart + 4 * this.restarts.length + inBlock > TARGET_BLOCK_BYTES;
    const added = startsBlock ? asRestart : inBlock;
    const projectedIndexBytes =
      this.indexBytes + (startsBlock ? BLOCK_INDEX_ENTRY_FIXED_BYTES + key.length : 0);
    // The current block's restarts are written when it closes; a new block needs a header.
    const projectedDataEnd =
      startsBlock && this.blockEntryCount > 0
        ? this.cursor + 4 * this.restarts.length + BLOCK_HEADER_BYTES + added
        : this.cursor + 4 * this.restarts.length + added;
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
    const restart = startsBlock || restartInBlock;
    if (restart) this.restarts.push(this.cursor - this.blockStart);
    this.cursor = writeEntry(this.buf, this.cursor, key, restart ? 0 : shared, entry);
    this.previousKey = key;
    this.blockEntryCount++;
    this.entryCount++;
    if (entry.tombstone) this.tombstoneCount++;
    if (this.minKey === undefined) this.minKey = key;
    this.maxKey = key;
    return true;
  }

  private closeBlock(): void {
    const b = this.buf;
    for (const r of this.restarts) this.cursor = b.writeUInt32LE(r, this.cursor);
    b.writeUInt16LE(this.blockEntryCount, this.blockStart);
    b.writeUInt16LE(this.restarts.length, this.blockStart + 2);
    const length = this.cursor - this.blockStart;
    this.blockOffsets.push(this.blockStart);
    this.blockLengths.push(length);
    this.blockCrcs.push(crc32c(b.subarray(this.blockStart, this.cursor)));
    this.blockStart = this.cursor;
    this.cursor = this.blockStart + BLOCK_HEADER_BYTES;
    this.blockEntryCount = 0;
    this.restarts = [];
    this.previousKey = '';
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
  const version = trailer.readUInt16LE(f + 4);
  if (version !== 1 && version !== INDEX_FORMAT_VERSION) fail(`unknown format version ${version}`);
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
    version,
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
  decodeBlockIndex(trailer, metaStart, f, meta, fail);
  if (meta.minKey > meta.maxKey || meta.blockFirstKeys[0] !== meta.minKey) fail('inconsistent key range');
  return meta;
}

/** Reads the block index and the key range, `trailer[metaStart, footer)`, into `meta`. */
function decodeBlockIndex(
  trailer: Buffer,
  metaStart: number,
  footer: number,
  meta: IndexSegmentMeta,
  fail: (detail: string) => never,
): void {
  let o = metaStart;
  const need = (n: number): void => {
    if (o + n > footer) fail('block index runs past the footer');
  };
  let expectedBlockOffset = 0;
  for (let i = 0; i < meta.blockCount; i++) {
    need(BLOCK_INDEX_ENTRY_FIXED_BYTES);
    const offset = trailer.readUInt32LE(o);
    const length = trailer.readUInt32LE(o + 4);
    if (offset !== expectedBlockOffset || length < 2 || offset + length > meta.blockIndexOffset)
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
  if (expectedBlockOffset !== meta.blockIndexOffset) fail('blocks do not end at the block index');
  for (const which of ['minKey', 'maxKey'] as const) {
    need(2);
    const keyLen = trailer.readUInt16LE(o);
    o += 2;
    need(keyLen);
    meta[which] = trailer.toString('latin1', o, o + keyLen);
    o += keyLen;
  }
  if (o !== footer) fail('trailing bytes before the footer');
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
    const block = decodeBlock(bytes, start, length, name, meta.version);
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
