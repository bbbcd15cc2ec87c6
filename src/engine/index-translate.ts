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
 *    cannot be translated), then every entry walked once — lengths and restart points within the
 *    block, each key rebuilt from its shared prefix (format 2, index-block.ts) in one scratch
 *    buffer and checked to sort after the previous one across the whole segment (as bytes, never
 *    as strings), the block's first key equal to the block index's, tombstones counted, the
 *    fixed-width pointer rewritten in place (no block changes length) — and the block's new CRC
 *    written into its block-index entry;
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
  BLOCK_HEADER_BYTES,
  FLAG_TOMBSTONE,
  MAX_POINTER,
  POINTER_BYTES,
  RESTART_INTERVAL,
  readVarint,
  TWO_32,
  varintEnd,
} from './index-block.js';
import {
  BLOCK_INDEX_ENTRY_FIXED_BYTES,
  decodeIndexMeta,
  INDEX_FOOTER_BYTES,
  type IndexSegmentMeta,
} from './index-segment.js';

/** Format 1: bytes after an entry's key (pointer u64, lsn u64, flags u8). */
const V1_ENTRY_TAIL_BYTES = 17;

export interface TranslatedIndexSegment {
  bytes: Buffer;
  meta: IndexSegmentMeta;
}

/** What the walk carries from entry to entry (across blocks): the previous key and the counts. */
interface Walk {
  out: Buffer;
  name: string;
  segmentBytes: number;
  mapSegment: (primarySegmentOffset: number) => number | undefined;
  /** The previous key, whole (format 2 rebuilds each key here from its shared prefix). */
  key: Buffer;
  keyLength: number;
  hasKey: boolean;
  tombstones: number;
}

/** Verifies and translates in one pass (see the header); returns the translated copy and its metadata. */
export function translateIndexSegmentChecked(
  bytes: Buffer,
  segmentBytes: number,
  mapSegment: (primarySegmentOffset: number) => number | undefined,
  name = 'shipped index segment',
): TranslatedIndexSegment {
  // Copy first, then check the copy: bytes changing under us (a registered buffer) cannot pass.
  const out = Buffer.from(bytes);
  const meta = decodeIndexMeta(out, 0, out.length, name);
  const w: Walk = {
    out,
    name,
    segmentBytes,
    mapSegment,
    key: Buffer.allocUnsafe(0x10000),
    keyLength: 0,
    hasKey: false,
    tombstones: 0,
  };
  let entries = 0;
  let blockIndexEntry = meta.blockIndexOffset;
  for (let i = 0; i < meta.blockCount; i++) {
    const start = meta.blockOffsets[i]!;
    const end = start + meta.blockLengths[i]!;
    if (crc32c(out.subarray(start, end)) !== meta.blockCrcs[i]) fail(w, `block ${i} crc mismatch`);
    entries +=
      meta.version === 1
        ? walkBlockV1(w, start, end, meta.blockFirstKeys[i]!)
        : walkBlockV2(w, start, end, meta.blockFirstKeys[i]!);
    // The block's CRC sits at offset +8 of its block-index entry (and the metadata returned says the new one).
    const crc = crc32c(out.subarray(start, end));
    out.writeUInt32LE(crc, blockIndexEntry + 8);
    meta.blockCrcs[i] = crc;
    blockIndexEntry += BLOCK_INDEX_ENTRY_FIXED_BYTES + meta.blockFirstKeys[i]!.length;
  }
  if (
    entries !== meta.entryCount ||
    w.tombstones !== meta.tombstoneCount ||
    w.key.toString('latin1', 0, w.keyLength) !== meta.maxKey
  ) {
    fail(w, 'entry count, tombstone count or max key mismatch');
  }
  const f = meta.usedBytes - INDEX_FOOTER_BYTES;
  out.writeUInt32LE(crc32c(out.subarray(meta.blockIndexOffset, f + 28)), f + 28);
  return { bytes: out, meta };
}

function fail(w: Walk, detail: string): never {
  throw new CorruptSegmentError(w.name, detail);
}

/**
 * Takes the next key — its first `shared` bytes are the previous key's, the rest is out[at, at + unshared)
 * — after checking it sorts after the previous one (compared as bytes, never as strings).
 */
function nextKey(w: Walk, shared: number, at: number, unshared: number): void {
  if (w.hasKey && w.out.compare(w.key, shared, w.keyLength, at, at + unshared) <= 0)
    fail(w, 'keys out of order');
  w.out.copy(w.key, shared, at, at + unshared);
  w.keyLength = shared + unshared;
  w.hasKey = true;
}

/** The translated pointer: the primary segment's local segment plus the offset within it. */
function translate(w: Walk, pointer: number): number {
  const inSegment = pointer % w.segmentBytes;
  const primaryBase = pointer - inSegment;
  const localBase = w.mapSegment(primaryBase);
  if (localBase === undefined) throw new MissingSegmentMappingError(primaryBase);
  assert(localBase % w.segmentBytes === 0, 'a mapped segment must start on a segment boundary');
  return localBase + inSegment;
}

/** Format 2 (index-block.ts): shared-prefix keys, restart points, a u48 pointer, lsnFlags varint. */
function walkBlockV2(w: Walk, start: number, end: number, firstKey: string): number {
  const { out } = w;
  if (end - start < BLOCK_HEADER_BYTES) fail(w, 'block out of range');
  const count = out.readUInt16LE(start);
  const restartCount = out.readUInt16LE(start + 2);
  if (count === 0) fail(w, 'empty block');
  if (restartCount !== Math.ceil(count / RESTART_INTERVAL)) fail(w, 'restart count mismatch');
  const restartsAt = end - 4 * restartCount;
  if (restartsAt < start + BLOCK_HEADER_BYTES) fail(w, 'restarts run past the block');
  let o = start + BLOCK_HEADER_BYTES;
  for (let e = 0; e < count; e++) {
    const restart = e % RESTART_INTERVAL === 0;
    if (restart && out.readUInt32LE(restartsAt + 4 * (e / RESTART_INTERVAL)) !== o - start)
      fail(w, 'restart point mismatch');
    const shared = readVarint(out, o, restartsAt);
    const unshared = shared < 0 ? -1 : readVarint(out, varintEnd, restartsAt);
    if (unshared < 0) fail(w, 'block entry runs past its block');
    o = varintEnd;
    if ((restart && shared !== 0) || shared > w.keyLength || shared + unshared > 0xffff)
      fail(w, 'bad shared prefix');
    if (o + unshared + POINTER_BYTES > restartsAt) fail(w, 'block entry runs past its block');
    nextKey(w, shared, o, unshared);
    if (e === 0 && w.key.toString('latin1', 0, w.keyLength) !== firstKey) fail(w, 'first key mismatch');
    o += unshared;
    const translated = translate(w, out.readUIntLE(o, POINTER_BYTES));
    assert(translated <= MAX_POINTER, 'a translated pointer fits 48 bits');
    out.writeUIntLE(translated, o, POINTER_BYTES);
    o += POINTER_BYTES;
    const lsnFlags = readVarint(out, o, restartsAt);
    if (lsnFlags < 0) fail(w, 'block entry runs past its block');
    if (lsnFlags % 2 === 1) w.tombstones++;
    o = varintEnd;
  }
  if (o !== restartsAt) fail(w, 'block has trailing bytes');
  return count;
}

/** Format 1: keyLen u16 | key | pointer u64 | lsn u64 | flags u8. */
function walkBlockV1(w: Walk, start: number, end: number, firstKey: string): number {
  const { out } = w;
  const count = out.readUInt16LE(start);
  if (count === 0) fail(w, 'empty block');
  let o = start + 2;
  for (let e = 0; e < count; e++) {
    if (o + 2 > end) fail(w, 'block entry runs past its block');
    const keyLength = out.readUInt16LE(o);
    o += 2;
    if (o + keyLength + V1_ENTRY_TAIL_BYTES > end) fail(w, 'block entry runs past its block');
    nextKey(w, 0, o, keyLength);
    if (e === 0 && w.key.toString('latin1', 0, w.keyLength) !== firstKey) fail(w, 'first key mismatch');
    o += keyLength;
    const translated = translate(w, out.readUInt32LE(o) + out.readUInt32LE(o + 4) * TWO_32);
    out.writeUInt32LE(translated % TWO_32, o);
    out.writeUInt32LE(Math.floor(translated / TWO_32), o + 4);
    if ((out[o + 16]! & FLAG_TOMBSTONE) !== 0) w.tombstones++;
    o += V1_ENTRY_TAIL_BYTES;
  }
  if (o !== end) fail(w, 'block has trailing bytes');
  return count;
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
