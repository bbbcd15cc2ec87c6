/**
 * Read access to one index segment on a device. The trailer (block index, key range) is loaded on
 * first use and kept; blocks are read one at a time, CRC-checked, indexed (entry offsets only, keys
 * stay bytes) and kept in a shared LRU block cache sized by encoded bytes. Point reads
 * binary-search a block's raw bytes. A corrupt trailer or block raises CorruptSegmentError for the lookups that need it,
 * while every other segment keeps serving.
 */
import { LRUCache } from 'lru-cache';
import { CorruptSegmentError } from '../errors.js';
import { crc32c } from './crc.js';
import type { Device } from './device.js';
import {
  type BlockView,
  blockEntryAt,
  blockKeyAt,
  blockLowerBound,
  decodeBlock,
  decodeIndexMeta,
  INDEX_FOOTER_BYTES,
  type IndexSegmentMeta,
  viewBlock,
} from './index-segment.js';
import type { IndexEntry } from './memtable.js';

export type BlockCache = LRUCache<number, BlockView>;

export function createBlockCache(maxBytes: number): BlockCache {
  return new LRUCache<number, BlockView>({
    maxSize: Math.max(maxBytes, 1),
    // Encoded bytes, the expanded keys, the three offset arrays and object headers.
    sizeCalculation: (view) =>
      160 +
      view.bytes.length +
      (view.keys === view.bytes ? 0 : view.keys.length) +
      view.keyStarts.length * 10,
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
    const view = this.block(this.blockFor(key));
    const i = blockLowerBound(view, keyBytes);
    if (i >= view.keyStarts.length) return undefined;
    const start = view.keyStarts[i]!;
    if (view.keys.compare(keyBytes, 0, keyBytes.length, start, start + view.keyLengths[i]!) !== 0)
      return undefined;
    return blockEntryAt(view, i);
  }

  /** Entries within [gte, lt), ascending or descending. */
  *range(gte: string | undefined, lt: string | undefined, reverse: boolean): Generator<[string, IndexEntry]> {
    const { minKey, maxKey } = this.descriptor;
    if ((gte !== undefined && maxKey < gte) || (lt !== undefined && minKey >= lt)) return;
    const blockCount = this.loadMeta().blockCount;
    const gteBytes = gte === undefined ? undefined : Buffer.from(gte, 'latin1');
    const ltBytes = lt === undefined ? undefined : Buffer.from(lt, 'latin1');
    if (!reverse) {
      for (let b = gte === undefined ? 0 : this.blockFor(gte); b < blockCount; b++) {
        const view = this.block(b);
        const count = view.keyStarts.length;
        for (let i = gteBytes === undefined ? 0 : blockLowerBound(view, gteBytes); i < count; i++) {
          const key = blockKeyAt(view, i);
          if (lt !== undefined && key >= lt) return;
          yield [key, blockEntryAt(view, i)];
        }
      }
    } else {
      for (let b = lt === undefined ? blockCount - 1 : this.blockFor(lt); b >= 0; b--) {
        const view = this.block(b);
        const start = ltBytes === undefined ? view.keyStarts.length - 1 : blockLowerBound(view, ltBytes) - 1;
        for (let i = start; i >= 0; i--) {
          const key = blockKeyAt(view, i);
          if (gte !== undefined && key < gte) return;
          yield [key, blockEntryAt(view, i)];
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
      for (let i = 0; i < block.keys.length; i++) {
        yield [
          block.keys[i]!,
          { pointer: block.pointers[i]!, lsn: block.lsns[i]!, tombstone: block.tombstones[i]! },
        ];
      }
    }
  }
}
