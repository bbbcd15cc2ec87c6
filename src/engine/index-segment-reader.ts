/**
 * Read access to one index segment on a device. The trailer (block index, key range) is loaded on
 * first use and kept; blocks are read one at a time, CRC-checked and kept as stored in a shared LRU
 * block cache sized by their bytes. A point read searches a block's restart points and scans a few
 * entries (findInBlock); a scan decodes each block it reaches. A corrupt trailer or block raises
 * CorruptSegmentError for the lookups that need it, while every other segment keeps serving.
 */
import { LRUCache } from 'lru-cache';
import { CorruptSegmentError } from '../errors.js';
import { crc32c } from './crc.js';
import type { Device } from './device.js';
import {
  type BlockView,
  type DecodedBlock,
  decodeBlock,
  decodeIndexMeta,
  decodeView,
  findInBlock,
  INDEX_FOOTER_BYTES,
  type IndexSegmentMeta,
  viewBlock,
  viewBytes,
} from './index-segment.js';
import type { IndexEntry } from './memtable.js';

export type BlockCache = LRUCache<number, BlockView>;

export function createBlockCache(maxBytes: number): BlockCache {
  return new LRUCache<number, BlockView>({
    maxSize: Math.max(maxBytes, 1),
    // Blocks are cached as stored: their bytes and a small header.
    sizeCalculation: viewBytes,
  });
}

let nextReaderSerial = 1;
const BLOCKS_PER_SERIAL = 1 << 20;

/** Describes one index segment of a level; held in the manifest. */
export interface IndexSegmentDescriptor {
  offset: number;
  usedBytes: number;
  entryCount: number;
  tombstoneCount: number;
  minKey: string;
  maxKey: string;
}

export class IndexSegmentReader {
  readonly name: string;
  private meta: IndexSegmentMeta | undefined;
  private readonly serial = nextReaderSerial++;

  constructor(
    private readonly device: Device,
    readonly descriptor: IndexSegmentDescriptor,
    private readonly cache: BlockCache,
  ) {
    this.name = `index@${descriptor.offset}`;
  }

  private loadMeta(): IndexSegmentMeta {
    if (this.meta !== undefined) return this.meta;
    const { offset, usedBytes } = this.descriptor;
    if (usedBytes < INDEX_FOOTER_BYTES) throw new CorruptSegmentError(this.name, 'too short');
    const footer = this.device.read(offset + usedBytes - INDEX_FOOTER_BYTES, INDEX_FOOTER_BYTES, 'index');
    const blockIndexOffset = footer.readUInt32LE(16);
    if (blockIndexOffset >= usedBytes)
      throw new CorruptSegmentError(this.name, 'block index offset out of range');
    const trailer = this.device.read(offset + blockIndexOffset, usedBytes - blockIndexOffset, 'index');
    const meta = decodeIndexMeta(trailer, blockIndexOffset, usedBytes, this.name);
    if (meta.minKey !== this.descriptor.minKey || meta.maxKey !== this.descriptor.maxKey) {
      throw new CorruptSegmentError(this.name, 'key range differs from the manifest');
    }
    this.meta = meta;
    return meta;
  }

  private block(i: number): BlockView {
    const cacheKey = this.serial * BLOCKS_PER_SERIAL + i;
    const cached = this.cache.get(cacheKey);
    if (cached !== undefined) return cached;
    const meta = this.loadMeta();
    const start = meta.blockOffsets[i]!;
    const length = meta.blockLengths[i]!;
    const bytes = this.device.read(this.descriptor.offset + start, length, 'index');
    if (crc32c(bytes) !== meta.blockCrcs[i])
      throw new CorruptSegmentError(this.name, `block ${i} crc mismatch`);
    const view = viewBlock(bytes, 0, length, this.name, meta.version);
    this.cache.set(cacheKey, view);
    return view;
  }

  /** Index of the block that may hold `key`: the last one whose first key is <= key. */
  private blockFor(key: string): number {
    const firstKeys = this.loadMeta().blockFirstKeys;
    let lo = 0;
    let hi = firstKeys.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (firstKeys[mid]! <= key) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** The entry for `key` (latin1 string form; `keyBytes` is the same key as bytes when at hand). */
  get(key: string, keyBytes: Buffer = Buffer.from(key, 'latin1')): IndexEntry | undefined {
    if (key < this.descriptor.minKey || key > this.descriptor.maxKey) return undefined;
    return findInBlock(this.block(this.blockFor(key)), keyBytes);
  }

  /** Entries within [gte, lt), ascending or descending; each block is decoded as the scan reaches it. */
  *range(gte: string | undefined, lt: string | undefined, reverse: boolean): Generator<[string, IndexEntry]> {
    const { minKey, maxKey } = this.descriptor;
    if ((gte !== undefined && maxKey < gte) || (lt !== undefined && minKey >= lt)) return;
    const blockCount = this.loadMeta().blockCount;
    if (!reverse) {
      for (let b = gte === undefined ? 0 : this.blockFor(gte); b < blockCount; b++) {
        const block = decodeView(this.block(b));
        const count = block.keys.length;
        for (let i = gte === undefined ? 0 : lowerBound(block, gte); i < count; i++) {
          const key = block.keys[i]!;
          if (lt !== undefined && key >= lt) return;
          yield [key, entryAt(block, i)];
        }
      }
    } else {
      for (let b = lt === undefined ? blockCount - 1 : this.blockFor(lt); b >= 0; b--) {
        const block = decodeView(this.block(b));
        const first = lt === undefined ? block.keys.length - 1 : lowerBound(block, lt) - 1;
        for (let i = first; i >= 0; i--) {
          const key = block.keys[i]!;
          if (gte !== undefined && key < gte) return;
          yield [key, entryAt(block, i)];
        }
      }
    }
  }

  /** Every entry in key order from one sequential read of the whole segment (for compaction). */
  *scanAll(): Generator<[string, IndexEntry]> {
    const meta = this.loadMeta();
    const bytes = this.device.read(this.descriptor.offset, meta.blockIndexOffset, 'index');
    for (let b = 0; b < meta.blockCount; b++) {
      const start = meta.blockOffsets[b]!;
      const length = meta.blockLengths[b]!;
      if (crc32c(bytes.subarray(start, start + length)) !== meta.blockCrcs[b]) {
        throw new CorruptSegmentError(this.name, `block ${b} crc mismatch`);
      }
      const block = decodeBlock(bytes, start, length, this.name, meta.version);
      for (let i = 0; i < block.keys.length; i++) yield [block.keys[i]!, entryAt(block, i)];
    }
  }
}

/** First index in `block` whose key is >= `key` (latin1 strings compare as unsigned bytes). */
function lowerBound(block: DecodedBlock, key: string): number {
  let lo = 0;
  let hi = block.keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (block.keys[mid]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function entryAt(block: DecodedBlock, i: number): IndexEntry {
  return { pointer: block.pointers[i]!, lsn: block.lsns[i]!, tombstone: block.tombstones[i]! };
}
