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
 * Blocks are cached as stored (a cached block costs its own bytes) and parsed when read, every
 * bound checked (CorruptSegmentError, never a crash): a point read binary-searches the restart
 * points and scans at most RESTART_INTERVAL entries after one (`findInBlock`, LevelDB's
 * Block::Iter::Seek); scans and whole-segment passes decode a block in one validating pass
 * (`decodeView`).
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

/**
 * A block as the read path keeps it (and the block cache holds): its bytes as stored and where
 * its parts are. Format 2 is parsed when read (findInBlock, decodeView); format 1, the legacy
 * layout, is indexed once (each entry's key offset and length).
 */
export interface BlockView {
  version: number;
  /** The segment's name, for errors. */
  name: string;
  bytes: Buffer;
  /** Offset of the block in `bytes`. */
  start: number;
  count: number;
  restartCount: number;
  /** Offset in `bytes` of the restart array (format 1: the block's end). */
  restartsAt: number;
  v1: { keyStarts: Uint32Array; keyLengths: Uint16Array } | undefined;
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
  return version === 1
    ? viewBlockV1(buf, start, length, name, fail)
    : viewBlockV2(buf, start, length, name, fail);
}

/** Format 2: the header and the restart array's place only; entries are parsed when read. */
function viewBlockV2(
  buf: Buffer,
  start: number,
  length: number,
  name: string,
  fail: (detail: string) => never,
): BlockView {
  if (length < BLOCK_HEADER_BYTES) fail('block out of range');
  const count = buf.readUInt16LE(start);
  const restartCount = buf.readUInt16LE(start + 2);
  if (restartCount !== Math.ceil(count / RESTART_INTERVAL)) fail('restart count mismatch');
  const restartsAt = start + length - 4 * restartCount;
  if (restartsAt < start + BLOCK_HEADER_BYTES) fail('restarts run past the block');
  if (count > 0 && buf.readUInt32LE(restartsAt) !== BLOCK_HEADER_BYTES) fail('restart point mismatch');
  return { version: 2, name, bytes: buf, start, count, restartCount, restartsAt, v1: undefined };
}

function viewBlockV1(
  buf: Buffer,
  start: number,
  length: number,
  name: string,
  fail: (detail: string) => never,
): BlockView {
  const end = start + length;
  const count = buf.readUInt16LE(start);
  const keyStarts = new Uint32Array(count);
  const keyLengths = new Uint16Array(count);
  let o = start + 2;
  for (let i = 0; i < count; i++) {
    if (o + 2 > end) fail('block entry runs past its block');
    const keyLength = buf.readUInt16LE(o);
    o += 2;
    if (o + keyLength + 17 > end) fail('block entry runs past its block');
    keyStarts[i] = o;
    keyLengths[i] = keyLength;
    o += keyLength + 17;
  }
  if (o !== end) fail('block has trailing bytes');
  return {
    version: 1,
    name,
    bytes: buf,
    start,
    count,
    restartCount: 0,
    restartsAt: end,
    v1: { keyStarts, keyLengths },
  };
}

/** Bytes a cached view holds (the block cache's measure). */
export function viewBytes(view: BlockView): number {
  return 96 + view.bytes.length + (view.v1 === undefined ? 0 : view.count * 6);
}

/** Unsigned byte order of `buf[at, at + length)` against `key`: < 0, 0, > 0 (a plain loop: keys are short). */
function compareBytes(buf: Uint8Array, at: number, length: number, key: Uint8Array): number {
  const n = Math.min(length, key.length);
  for (let j = 0; j < n; j++) {
    const d = buf[at + j]! - key[j]!;
    if (d !== 0) return d;
  }
  return length - key.length;
}

/** The key bytes of the entry being read (format 2), rebuilt entry by entry from shared prefixes. */
const scratch = Buffer.allocUnsafe(0x10000);

/** Where the entry `parseEntry` read last has its pointer, its key's length, and the offset after it. */
let entryData = 0;
let entryKeyLength = 0;
let entryEnd = 0;
let entryLsnFlags = 0;

/**
 * Parses the format-2 entry at `o` (entry `i` of its block) into `scratch` — which holds the
 * previous entry's key, `previousLength` bytes of it — with every bound checked.
 */
function parseEntry(view: BlockView, o: number, i: number, previousLength: number): void {
  const { bytes: buf, restartsAt } = view;
  const shared = readVarint(buf, o, restartsAt);
  const unshared = shared < 0 ? -1 : readVarint(buf, varintEnd, restartsAt);
  if (unshared < 0) corrupt(view, 'block entry runs past its block');
  if ((i % RESTART_INTERVAL === 0 && shared !== 0) || shared > previousLength)
    corrupt(view, 'bad shared prefix');
  const keyLength = shared + unshared;
  if (keyLength > 0xffff) corrupt(view, 'key too long');
  const suffix = varintEnd;
  if (suffix + unshared + POINTER_BYTES > restartsAt) corrupt(view, 'block entry runs past its block');
  if (unshared > 32) buf.copy(scratch, shared, suffix, suffix + unshared);
  else for (let j = 0; j < unshared; j++) scratch[shared + j] = buf[suffix + j]!;
  entryData = suffix + unshared;
  entryLsnFlags = readVarint(buf, entryData + POINTER_BYTES, restartsAt);
  if (entryLsnFlags < 0) corrupt(view, 'block entry runs past its block');
  entryEnd = varintEnd;
  entryKeyLength = keyLength;
}

function corrupt(view: BlockView, detail: string): never {
  throw new CorruptSegmentError(view.name, detail);
}

/** Byte order of restart point r's key (a whole key: shared = 0) against `key`. */
function compareRestart(view: BlockView, r: number, key: Uint8Array): number {
  const { bytes: buf, start, restartsAt } = view;
  const o = start + buf.readUInt32LE(restartsAt + 4 * r);
  if (o < start + BLOCK_HEADER_BYTES || o >= restartsAt) corrupt(view, 'restart point out of range');
  const shared = readVarint(buf, o, restartsAt);
  const unshared = shared === 0 ? readVarint(buf, varintEnd, restartsAt) : -1;
  if (unshared < 0 || varintEnd + unshared > restartsAt) corrupt(view, 'bad restart point');
  return compareBytes(buf, varintEnd, unshared, key);
}

function entryOf(buf: Buffer, data: number, lsnFlags: number): IndexEntry {
  return {
    pointer: buf.readUIntLE(data, POINTER_BYTES),
    lsn: Math.floor(lsnFlags / 2),
    tombstone: lsnFlags % 2 === 1,
  };
}

/**
 * The entry for `key` in the block, if it holds one. Format 2 as LevelDB's Block::Iter::Seek: a
 * binary search over the restart points (whole keys), then a scan of at most RESTART_INTERVAL
 * entries from the last restart at or before `key`, rebuilding keys from their shared prefixes.
 */
export function findInBlock(view: BlockView, key: Uint8Array): IndexEntry | undefined {
  if (view.count === 0) return undefined;
  if (view.v1 !== undefined) return findInBlockV1(view, view.v1, key);
  if (compareRestart(view, 0, key) > 0) return undefined;
  let lo = 0;
  let hi = view.restartCount - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (compareRestart(view, mid, key) <= 0) lo = mid;
    else hi = mid - 1;
  }
  const buf = view.bytes;
  let o = view.start + buf.readUInt32LE(view.restartsAt + 4 * lo);
  let previousLength = 0;
  const last = Math.min(view.count, (lo + 1) * RESTART_INTERVAL);
  for (let i = lo * RESTART_INTERVAL; i < last; i++) {
    parseEntry(view, o, i, previousLength);
    const order = compareBytes(scratch, 0, entryKeyLength, key);
    if (order === 0) return entryOf(buf, entryData, entryLsnFlags);
    if (order > 0) return undefined;
    previousLength = entryKeyLength;
    o = entryEnd;
  }
  return undefined;
}

function findInBlockV1(
  view: BlockView,
  v1: NonNullable<BlockView['v1']>,
  key: Uint8Array,
): IndexEntry | undefined {
  let lo = 0;
  let hi = view.count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareBytes(view.bytes, v1.keyStarts[mid]!, v1.keyLengths[mid]!, key) < 0) lo = mid + 1;
    else hi = mid;
  }
  if (lo === view.count) return undefined;
  const at = v1.keyStarts[lo]!;
  const length = v1.keyLengths[lo]!;
  if (compareBytes(view.bytes, at, length, key) !== 0) return undefined;
  const buf = view.bytes;
  const o = at + length;
  return {
    pointer: buf.readUInt32LE(o) + buf.readUInt32LE(o + 4) * TWO_32,
    lsn: buf.readUInt32LE(o + 8) + buf.readUInt32LE(o + 12) * TWO_32,
    tombstone: (buf[o + 16]! & FLAG_TOMBSTONE) !== 0,
  };
}

/** Every entry of a viewed block, decoded and validated in one pass (scans, whole-segment passes). */
export function decodeView(view: BlockView): DecodedBlock {
  const block: DecodedBlock = { keys: [], pointers: [], lsns: [], tombstones: [] };
  const buf = view.bytes;
  if (view.v1 !== undefined) {
    for (let i = 0; i < view.count; i++) {
      const at = view.v1.keyStarts[i]!;
      const o = at + view.v1.keyLengths[i]!;
      block.keys.push(buf.toString('latin1', at, o));
      block.pointers.push(buf.readUInt32LE(o) + buf.readUInt32LE(o + 4) * TWO_32);
      block.lsns.push(buf.readUInt32LE(o + 8) + buf.readUInt32LE(o + 12) * TWO_32);
      block.tombstones.push((buf[o + 16]! & FLAG_TOMBSTONE) !== 0);
    }
    return block;
  }
  let o = view.start + BLOCK_HEADER_BYTES;
  let previousLength = 0;
  for (let i = 0; i < view.count; i++) {
    if (
      i % RESTART_INTERVAL === 0 &&
      buf.readUInt32LE(view.restartsAt + 4 * (i / RESTART_INTERVAL)) !== o - view.start
    )
      corrupt(view, 'restart point mismatch');
    parseEntry(view, o, i, previousLength);
    block.keys.push(scratch.toString('latin1', 0, entryKeyLength));
    block.pointers.push(buf.readUIntLE(entryData, POINTER_BYTES));
    block.lsns.push(Math.floor(entryLsnFlags / 2));
    block.tombstones.push(entryLsnFlags % 2 === 1);
    previousLength = entryKeyLength;
    o = entryEnd;
  }
  if (o !== view.restartsAt) corrupt(view, 'block has trailing bytes');
  return block;
}

/** Decodes one block into arrays (after its CRC was checked), for whole-segment passes. */
export function decodeBlock(
  buf: Buffer,
  start: number,
  length: number,
  name: string,
  version = 2,
): DecodedBlock {
  return decodeView(viewBlock(buf, start, length, name, version));
}
