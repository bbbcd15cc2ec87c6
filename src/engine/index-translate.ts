/**
 * Pointer translation of a shipped index segment (PROTOCOL §5.3), in ONE pass (issue 16 item 3).
 *
 * A backup receives an index segment built by its primary whose value pointers name the primary's
 * log segments. Every pointer p becomes `map(base(p)) + (p - base(p))`, base(p) being the start of
 * the primary segment holding p; a pointer whose segment has no mapping is
 * MissingSegmentMappingError — never a guess.
 *
 * The pass, over a private copy of the bytes (taken first, so every check is on the bytes used):
 * 1. the trailer: footer (magic, version, used bytes), block index and key range, under the
 *    metadata CRC (decodeIndexMeta);
 * 2. per block: its CRC checked once on the copy (so bytes that change under us after the check
 *    cannot be translated), then every entry walked once — lengths within the block, the block's
 *    first key equal to the block index's, keys strictly ascending across the whole segment
 *    (compared as bytes, never decoded to strings), tombstones counted, the pointer rewritten in
 *    place — and the block's new CRC written into its block-index entry;
 * 3. the totals (entries, tombstones, the last key = maxKey), then the new metadata CRC.
 * Nothing is decoded a second time: the result's metadata comes from step 1, and the output is
 * well-formed by construction (the same structure, valid CRCs). Any deviation — a flipped bit, a
 * truncation, a malformed or out-of-order segment even with valid CRCs — is CorruptSegmentError.
 * CRC passes per block: two (check the input, compute the output), against five before (the
 * shipping CRC, verify, translate, verify again).
 */
import { assert } from '../assert.js';
import { CorruptSegmentError, MissingSegmentMappingError } from '../errors.js';
import { crc32c } from './crc.js';
import {
  BLOCK_INDEX_ENTRY_FIXED_BYTES,
  decodeIndexMeta,
  FLAG_TOMBSTONE,
  INDEX_FOOTER_BYTES,
  type IndexSegmentMeta,
  TWO_32,
} from './index-segment.js';

/** Bytes after an entry's key: pointer u64, lsn u64, flags u8. */
const ENTRY_TAIL_BYTES = 17;

export interface TranslatedIndexSegment {
  bytes: Buffer;
  meta: IndexSegmentMeta;
}

/** Verifies and translates in one pass (see the header); returns the translated copy and its metadata. */
export function translateIndexSegmentChecked(
  bytes: Buffer,
  segmentBytes: number,
  mapSegment: (primarySegmentOffset: number) => number | undefined,
  name = 'shipped index segment',
): TranslatedIndexSegment {
  const fail = (detail: string): never => {
    throw new CorruptSegmentError(name, detail);
  };
  // Copy first, then check the copy: bytes changing under us (a registered buffer) cannot pass.
  const out = Buffer.from(bytes);
  const meta = decodeIndexMeta(out, 0, out.length, name);
  let prevStart = -1;
  let prevLength = 0;
  let entries = 0;
  let tombstones = 0;
  let blockIndexEntry = meta.blockIndexOffset;
  for (let i = 0; i < meta.blockCount; i++) {
    const start = meta.blockOffsets[i]!;
    const end = start + meta.blockLengths[i]!;
    if (crc32c(out.subarray(start, end)) !== meta.blockCrcs[i]) fail(`block ${i} crc mismatch`);
    const count = out.readUInt16LE(start);
    if (count === 0) fail(`block ${i} is empty`);
    let o = start + 2;
    for (let e = 0; e < count; e++) {
      if (o + 2 > end) fail('block entry runs past its block');
      const keyLength = out.readUInt16LE(o);
      o += 2;
      if (o + keyLength + ENTRY_TAIL_BYTES > end) fail('block entry runs past its block');
      if (e === 0 && out.toString('latin1', o, o + keyLength) !== meta.blockFirstKeys[i])
        fail(`block ${i} first key mismatch`);
      if (prevStart >= 0 && out.compare(out, prevStart, prevStart + prevLength, o, o + keyLength) <= 0)
        fail('keys out of order');
      prevStart = o;
      prevLength = keyLength;
      o += keyLength;
      const pointer = out.readUInt32LE(o) + out.readUInt32LE(o + 4) * TWO_32;
      const inSegment = pointer % segmentBytes;
      const primaryBase = pointer - inSegment;
      const localBase = mapSegment(primaryBase);
      if (localBase === undefined) throw new MissingSegmentMappingError(primaryBase);
      assert(localBase % segmentBytes === 0, 'a mapped segment must start on a segment boundary');
      const translated = localBase + inSegment;
      out.writeUInt32LE(translated % TWO_32, o);
      out.writeUInt32LE(Math.floor(translated / TWO_32), o + 4);
      if ((out[o + 16]! & FLAG_TOMBSTONE) !== 0) tombstones++;
      o += ENTRY_TAIL_BYTES;
    }
    if (o !== end) fail('block has trailing bytes');
    entries += count;
    // The block's CRC sits at offset +8 of its block-index entry (and the metadata returned says the new one).
    const crc = crc32c(out.subarray(start, end));
    out.writeUInt32LE(crc, blockIndexEntry + 8);
    meta.blockCrcs[i] = crc;
    blockIndexEntry += BLOCK_INDEX_ENTRY_FIXED_BYTES + meta.blockFirstKeys[i]!.length;
  }
  if (
    entries !== meta.entryCount ||
    tombstones !== meta.tombstoneCount ||
    out.toString('latin1', prevStart, prevStart + prevLength) !== meta.maxKey
  ) {
    fail('entry count, tombstone count or max key mismatch');
  }
  const f = meta.usedBytes - INDEX_FOOTER_BYTES;
  out.writeUInt32LE(crc32c(out.subarray(meta.blockIndexOffset, f + 28)), f + 28);
  return { bytes: out, meta };
}

/** translateIndexSegmentChecked's bytes: a translated, re-checksummed copy of the segment. */
export function translateIndexSegment(
  bytes: Buffer,
  segmentBytes: number,
  mapSegment: (primarySegmentOffset: number) => number | undefined,
  name = 'shipped index segment',
): Buffer {
  return translateIndexSegmentChecked(bytes, segmentBytes, mapSegment, name).bytes;
}
