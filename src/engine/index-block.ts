/**
 * Index blocks: the entries of an index segment, in blocks of about TARGET_BLOCK_BYTES, each under
 * its own CRC (in the segment's block index). LevelDB's block format (table/block_builder.cc) is
 * the model of format 2:
 *
 *   block   entryCount u16 | restartCount u16 | entry… | restart u32 × restartCount
 *   entry   shared varint | unshared varint | key suffix (unshared bytes) | pointer u48 | lsnFlags varint
 *
 * A key is stored as the number of bytes it shares with the previous key of its block plus the rest
 * (shared-prefix compression); every RESTART_INTERVAL-th entry is a restart point that stores its
 * whole key (shared = 0), and the block ends with the block-relative offsets of its restart
 * points. `lsnFlags` = lsn · 2 + tombstone (LEB128 varint). The pointer stays fixed-width (6 bytes:
 * devices up to 256 TiB) so that a backup's translation rewrites it in place in one linear pass and
 * no block changes length. Format 1 (keyLen u16 | key | pointer u64 | lsn u64 | flags u8, no
 * restarts) is still read.
 *
 * Reading a block (`viewBlock`, after its CRC was checked) validates its structure in one pass and
 * expands its keys into one buffer (`keys`, with each key's start and length), so point reads
 * binary-search whole keys as bytes and a cached block costs about its expanded size.
 */
import { CorruptSegmentError } from '../errors.js';
import type { IndexEntry } from './memtable.js';

export const TARGET_BLOCK_BYTES = 4096;
export const RESTART_INTERVAL = 16;
export const POINTER_BYTES = 6;
export const BLOCK_HEADER_BYTES = 4;
export const FLAG_TOMBSTONE = 1;
export const TWO_32 = 2 ** 32;
export const MAX_POINTER = 2 ** 48 - 1;
/** lsn · 2 + 1 must stay an exact number. */
export const MAX_LSN = 2 ** 52 - 1;

/** Entries of one block, decoded; keys are latin1 strings (byte order = string order). */
export interface DecodedBlock {
  keys: string[];
  pointers: number[];
  lsns: number[];
  tombstones: boolean[];
}

/** A block as the read path keeps it: its bytes, its keys expanded, where each entry's data is. */
export interface BlockView {
  version: number;
  bytes: Buffer;
  /** The block's keys, whole (format 1: the block's own bytes). */
  keys: Buffer;
  /** Offset in `keys` of entry i's key, and its length. */
  keyStarts: Uint32Array;
  keyLengths: Uint16Array;
  /** Offset in `bytes` of entry i's pointer. */
  dataStarts: Uint32Array;
}

// ───────────────────────────── varints ─────────────────────────────

export function varintBytes(n: number): number {
  let bytes = 1;
  for (let v = n; v >= 128; v = Math.floor(v / 128)) bytes++;
  return bytes;
}

/** Writes `n` (a safe non-negative integer) as LEB128 at `o`; returns the offset after it. */
export function writeVarint(buf: Buffer, o: number, n: number): number {
  let v = n;
  let at = o;
  while (v >= 128) {
    buf[at++] = (v % 128) | 128;
    v = Math.floor(v / 128);
  }
  buf[at++] = v;
  return at;
}

/** The offset after the varint `readVarint` read last (one module-level slot: no allocation per read). */
export let varintEnd = 0;

/** Reads a LEB128 varint at `o` that must end before `end`; -1 when it does not (or is over 8 bytes). */
export function readVarint(buf: Buffer, o: number, end: number): number {
  let value = 0;
  let scale = 1;
  for (let at = o; at < end && at < o + 8; at++) {
    const b = buf[at]!;
    value += (b & 127) * scale;
    if (b < 128) {
      varintEnd = at + 1;
      return value;
    }
    scale *= 128;
  }
  return -1;
}

// ───────────────────────────── encoding ─────────────────────────────

/** Writes one format-2 entry at `o` (the key's suffix from its `shared`-th byte); returns the offset after it. */
export function writeEntry(buf: Buffer, o: number, key: string, shared: number, entry: IndexEntry): number {
  let at = writeVarint(buf, o, shared);
  at = writeVarint(buf, at, key.length - shared);
  at += buf.write(key.slice(shared), at, 'latin1');
  buf.writeUIntLE(entry.pointer, at, POINTER_BYTES);
  at += POINTER_BYTES;
  return writeVarint(buf, at, entry.lsn * 2 + (entry.tombstone ? 1 : 0));
}

/** Bytes two latin1 keys share at their start. */
export function sharedPrefix(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

// ───────────────────────────── reading ─────────────────────────────

/** Indexes one block (after its CRC was checked). Structural errors become CorruptSegmentError. */
export function viewBlock(buf: Buffer, start: number, length: number, name: string, version = 2): BlockView {
  const fail = (detail: string): never => {
    throw new CorruptSegmentError(name, detail);
  };
  if (length < 2 || start + length > buf.length) fail('block out of range');
  return version === 1 ? viewBlockV1(buf, start, length, fail) : viewBlockV2(buf, start, length, fail);
}

function viewBlockV2(buf: Buffer, start: number, length: number, fail: (detail: string) => never): BlockView {
  const end = start + length;
  if (length < BLOCK_HEADER_BYTES) fail('block out of range');
  const count = buf.readUInt16LE(start);
  const restartCount = buf.readUInt16LE(start + 2);
  if (restartCount !== Math.ceil(count / RESTART_INTERVAL)) fail('restart count mismatch');
  const restartsAt = end - 4 * restartCount;
  if (restartsAt < start + BLOCK_HEADER_BYTES) fail('restarts run past the block');
  const keyStarts = new Uint32Array(count);
  const keyLengths = new Uint16Array(count);
  const dataStarts = new Uint32Array(count);
  const suffixStarts = new Uint32Array(count);
  const shareds = new Uint16Array(count);
  let o = start + BLOCK_HEADER_BYTES;
  let total = 0;
  let previousLength = 0;
  for (let i = 0; i < count; i++) {
    const restart = i % RESTART_INTERVAL === 0;
    if (restart && buf.readUInt32LE(restartsAt + 4 * (i / RESTART_INTERVAL)) !== o - start)
      fail('restart point mismatch');
    const shared = readVarint(buf, o, restartsAt);
    if (shared < 0) fail('block entry runs past its block');
    const unshared = readVarint(buf, varintEnd, restartsAt);
    if (unshared < 0) fail('block entry runs past its block');
    o = varintEnd;
    if ((restart && shared !== 0) || shared > previousLength) fail('bad shared prefix');
    const keyLength = shared + unshared;
    if (keyLength > 0xffff) fail('key too long');
    suffixStarts[i] = o;
    shareds[i] = shared;
    o += unshared;
    if (o + POINTER_BYTES > restartsAt) fail('block entry runs past its block');
    dataStarts[i] = o;
    if (readVarint(buf, o + POINTER_BYTES, restartsAt) < 0) fail('block entry runs past its block');
    o = varintEnd;
    keyStarts[i] = total;
    keyLengths[i] = keyLength;
    total += keyLength;
    previousLength = keyLength;
  }
  if (o !== restartsAt) fail('block has trailing bytes');
  const keys = Buffer.allocUnsafe(total);
  for (let i = 0; i < count; i++) {
    const at = keyStarts[i]!;
    const shared = shareds[i]!;
    if (shared > 0) keys.copy(keys, at, keyStarts[i - 1]!, keyStarts[i - 1]! + shared);
    buf.copy(keys, at + shared, suffixStarts[i]!, suffixStarts[i]! + keyLengths[i]! - shared);
  }
  return { version: 2, bytes: buf, keys, keyStarts, keyLengths, dataStarts };
}

function viewBlockV1(buf: Buffer, start: number, length: number, fail: (detail: string) => never): BlockView {
  const end = start + length;
  const count = buf.readUInt16LE(start);
  const keyStarts = new Uint32Array(count);
  const keyLengths = new Uint16Array(count);
  const dataStarts = new Uint32Array(count);
  let o = start + 2;
  for (let i = 0; i < count; i++) {
    if (o + 2 > end) fail('block entry runs past its block');
    const keyLength = buf.readUInt16LE(o);
    o += 2;
    if (o + keyLength + 17 > end) fail('block entry runs past its block');
    keyStarts[i] = o;
    keyLengths[i] = keyLength;
    dataStarts[i] = o + keyLength;
    o += keyLength + 17;
  }
  if (o !== end) fail('block has trailing bytes');
  return { version: 1, bytes: buf, keys: buf, keyStarts, keyLengths, dataStarts };
}

export function blockKeyAt(view: BlockView, i: number): string {
  const start = view.keyStarts[i]!;
  return view.keys.toString('latin1', start, start + view.keyLengths[i]!);
}

export function blockEntryAt(view: BlockView, i: number): IndexEntry {
  const buf = view.bytes;
  const o = view.dataStarts[i]!;
  if (view.version === 1) {
    return {
      pointer: buf.readUInt32LE(o) + buf.readUInt32LE(o + 4) * TWO_32,
      lsn: buf.readUInt32LE(o + 8) + buf.readUInt32LE(o + 12) * TWO_32,
      tombstone: (buf[o + 16]! & FLAG_TOMBSTONE) !== 0,
    };
  }
  const lsnFlags = readVarint(buf, o + POINTER_BYTES, buf.length);
  return {
    pointer: buf.readUIntLE(o, POINTER_BYTES),
    lsn: Math.floor(lsnFlags / 2),
    tombstone: lsnFlags % 2 === 1,
  };
}

/**
 * Unsigned byte order of `view`'s key i against `key`: < 0, 0, > 0. A plain loop: for index keys
 * (tens of bytes) it beats Buffer#compare, whose argument checks and native call dominate.
 */
export function compareBlockKey(view: BlockView, i: number, key: Uint8Array): number {
  const keys = view.keys;
  const start = view.keyStarts[i]!;
  const length = view.keyLengths[i]!;
  const n = Math.min(length, key.length);
  for (let j = 0; j < n; j++) {
    const d = keys[start + j]! - key[j]!;
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
export function decodeBlock(
  buf: Buffer,
  start: number,
  length: number,
  name: string,
  version = 2,
): DecodedBlock {
  const view = viewBlock(buf, start, length, name, version);
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
