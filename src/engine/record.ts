/**
 * Value-log records (DESIGN §3):
 *
 *   crc32c u32 | lsn u64 | keyLen u16 | valueLen u32 (0xFFFFFFFF = tombstone) | key | value
 *
 * Little-endian; the CRC covers every byte after it. Records are packed back to back in a segment
 * and never span segments; the unused tail of a segment is zero padding.
 *
 * Atomic batches (write-batch.ts): lsns stay below 2^53, so the top bit of the lsn field is free;
 * it marks a record that "continues a batch" — every record of a batch but its last carries it.
 * A batch is one run of consecutive lsns inside one segment, and it counts only once its last
 * (unmarked) record is valid: `parseRecords` ends the valid prefix before a batch whose last record
 * is missing, torn or corrupt, so recovery, Build-Index indexing and promotion (every consumer of
 * the log's valid prefix) see a batch wholly or not at all.
 *
 * Recovery finds the valid prefix of a buffer with `parseRecords`: it walks records while each one
 * has a matching CRC, fits in the buffer and carries exactly the next expected lsn. The lsn check is
 * what makes stale bytes harmless: a reused segment, or an old unsynced tail that happens to have a
 * valid CRC, holds lsns that do not continue the chain, so parsing stops there.
 */
import { assert } from '../assert.js';
import { crc32c } from './crc.js';

export const RECORD_HEADER_BYTES = 18;
export const TOMBSTONE_VALUE_LEN = 0xffffffff;
const TWO_32 = 2 ** 32;
/** The lsn field's top bit (in its high word): this record continues a batch (see the header). */
const CONTINUES_BATCH_BIT = 0x80000000;

export function recordBytes(keyBytes: number, valueBytes: number): number {
  return RECORD_HEADER_BYTES + keyBytes + valueBytes;
}

/** Encodes a record into `buf` at `offset`; returns its length. `value === null` is a tombstone. */
export function encodeRecord(
  buf: Buffer,
  offset: number,
  lsn: number,
  key: Uint8Array,
  value: Uint8Array | null,
  continuesBatch = false,
): number {
  const valueBytes = value === null ? 0 : value.length;
  const length = recordBytes(key.length, valueBytes);
  assert(offset + length <= buf.length, 'record must fit in its buffer');
  assert(Number.isSafeInteger(lsn) && lsn > 0, 'lsn must be a positive safe integer');
  buf.writeUInt32LE(lsn % TWO_32, offset + 4);
  const high = Math.floor(lsn / TWO_32);
  assert(high < CONTINUES_BATCH_BIT, 'lsn must leave the batch bit free');
  buf.writeUInt32LE((high | (continuesBatch ? CONTINUES_BATCH_BIT : 0)) >>> 0, offset + 8);
  buf.writeUInt16LE(key.length, offset + 12);
  buf.writeUInt32LE(value === null ? TOMBSTONE_VALUE_LEN : value.length, offset + 14);
  buf.set(key, offset + RECORD_HEADER_BYTES);
  if (value !== null) buf.set(value, offset + RECORD_HEADER_BYTES + key.length);
  buf.writeUInt32LE(crc32c(buf.subarray(offset + 4, offset + length)), offset);
  return length;
}

export interface DecodedRecord {
  lsn: number;
  /** Offset of the record in the buffer it was decoded from. */
  offset: number;
  length: number;
  key: Buffer;
  /** null for a tombstone. */
  value: Buffer | null;
  /** More records of this record's batch follow it (see the header). */
  continuesBatch: boolean;
}

export type RecordCheck =
  | { ok: true; record: DecodedRecord }
  | { ok: false; reason: 'truncated' | 'crc' | 'header' };

/** Decodes and verifies the record at `offset`, not looking past `end`. Buffers are views. */
export function decodeRecord(buf: Buffer, offset: number, end = buf.length): RecordCheck {
  if (offset + RECORD_HEADER_BYTES > end) return { ok: false, reason: 'truncated' };
  const keyLen = buf.readUInt16LE(offset + 12);
  const rawValueLen = buf.readUInt32LE(offset + 14);
  const tombstone = rawValueLen === TOMBSTONE_VALUE_LEN;
  const valueLen = tombstone ? 0 : rawValueLen;
  const length = RECORD_HEADER_BYTES + keyLen + valueLen;
  if (offset + length > end) return { ok: false, reason: 'truncated' };
  const storedCrc = buf.readUInt32LE(offset);
  if (crc32c(buf.subarray(offset + 4, offset + length)) !== storedCrc) return { ok: false, reason: 'crc' };
  const highWord = buf.readUInt32LE(offset + 8);
  const continuesBatch = (highWord & CONTINUES_BATCH_BIT) !== 0;
  const lsn = buf.readUInt32LE(offset + 4) + (highWord & ~CONTINUES_BATCH_BIT) * TWO_32;
  if (lsn === 0 || !Number.isSafeInteger(lsn)) return { ok: false, reason: 'header' };
  const keyStart = offset + RECORD_HEADER_BYTES;
  return {
    ok: true,
    record: {
      lsn,
      offset,
      length,
      key: buf.subarray(keyStart, keyStart + keyLen),
      value: tombstone ? null : buf.subarray(keyStart + keyLen, keyStart + keyLen + valueLen),
      continuesBatch,
    },
  };
}

/** Reads just the total length a record header announces (for sizing a second read). */
export function announcedRecordLength(header: Buffer): number {
  const rawValueLen = header.readUInt32LE(14);
  const valueLen = rawValueLen === TOMBSTONE_VALUE_LEN ? 0 : rawValueLen;
  return RECORD_HEADER_BYTES + header.readUInt16LE(12) + valueLen;
}

export interface ParseResult {
  records: DecodedRecord[];
  /** Offset just past the last valid record: the end of the valid prefix. */
  endOffset: number;
  /** Lsn the next record would need. */
  nextLsn: number;
  /** Why parsing stopped before `end`, if it did ('batch': a batch's last record is missing). */
  stop: 'end' | 'truncated' | 'crc' | 'header' | 'lsn' | 'padding' | 'batch';
}

/**
 * Parses the longest valid prefix of records in `buf[start, end)` whose lsns continue from
 * `expectedLsn` (pass 0 to accept whatever lsn the first record has) and which ends with a whole
 * batch: records of a batch whose last record is not valid are not part of it (see the header).
 */
export function parseRecords(buf: Buffer, start: number, end: number, expectedLsn: number): ParseResult {
  const parsed = parseRecordRun(buf, start, end, expectedLsn);
  const { records } = parsed;
  let open = records.length;
  while (open > 0 && records[open - 1]!.continuesBatch) open--;
  if (open === records.length) return parsed;
  // The run ends inside a batch: its records so far (records[open..]) are cut off whole.
  const first = records[open]!;
  return { records: records.slice(0, open), endOffset: first.offset, nextLsn: first.lsn, stop: 'batch' };
}

function parseRecordRun(buf: Buffer, start: number, end: number, expectedLsn: number): ParseResult {
  const records: DecodedRecord[] = [];
  let offset = start;
  let nextLsn = expectedLsn;
  let stop: ParseResult['stop'] = 'end';
  while (offset < end) {
    if (offset + RECORD_HEADER_BYTES <= end && isZero(buf, offset, RECORD_HEADER_BYTES)) {
      stop = 'padding';
      break;
    }
    const check = decodeRecord(buf, offset, end);
    if (!check.ok) {
      stop = check.reason;
      break;
    }
    if (nextLsn !== 0 && check.record.lsn !== nextLsn) {
      stop = 'lsn';
      break;
    }
    records.push(check.record);
    nextLsn = check.record.lsn + 1;
    offset += check.record.length;
  }
  return { records, endOffset: offset, nextLsn, stop };
}

function isZero(buf: Buffer, offset: number, length: number): boolean {
  for (let i = offset; i < offset + length; i++) if (buf[i] !== 0) return false;
  return true;
}
