/**
 * Atomic write batches: a list of puts and deletes that the store applies all or nothing.
 *
 * Validation first (`prepareBatch`): every key and value is converted and checked against the
 *   store's limits before anything is appended, so a batch with one bad entry rejects as a whole
 *   with that entry's typed error (KEY_TOO_LARGE, VALUE_TOO_LARGE, INVALID_ARGUMENT) and writes
 *   nothing. The batch's records must fit one log segment (BATCH_TOO_LARGE otherwise): a record
 *   never spans segments, and neither does a batch.
 *
 * Append (`appendBatch`): the records go to the active segment in one synchronous step — one run
 *   of consecutive lsns, every record but the last marked "continues batch" (record.ts). Being one
 *   synchronous step, the batch lands in one commit group (group-commit.ts collects what was
 *   appended in a turn), reaches L0 in one step (no reader sees half of it) and every tail that is
 *   synced or shipped holds all of it or none. A crash that tears it is cut off whole by
 *   `parseRecords`, which recovery, Build-Index indexing and promotion all parse the log with.
 *
 * A single put or delete is a batch of one (an unmarked record): the format is unchanged for it.
 */
import { assert } from '../assert.js';
import { BatchTooLargeError, InvalidArgumentError, KeyTooLargeError, ValueTooLargeError } from '../errors.js';
import type { IndexEntry } from './memtable.js';
import { type Bytes, toKey, toValue } from './options.js';
import { recordBytes } from './record.js';
import type { ValueLog } from './value-log.js';

export type BatchOperation = { type: 'put'; key: Bytes; value: Bytes } | { type: 'del'; key: Bytes };

/** One validated write: key bytes and value bytes (null: a delete). */
export interface PreparedWrite {
  key: Buffer;
  value: Buffer | null;
}

export interface PreparedBatch {
  writes: PreparedWrite[];
  /** Log bytes the batch's records take (all in one segment). */
  recordBytes: number;
  /** Key + value bytes the user handed in. */
  userBytes: number;
}

export interface BatchLimits {
  maxKeyBytes: number;
  maxValueBytes: number;
  segmentBytes: number;
}

/** Converts and validates every operation (see the header); throws before anything is written. */
export function prepareBatch(operations: readonly BatchOperation[], limits: BatchLimits): PreparedBatch {
  if (!Array.isArray(operations)) throw new InvalidArgumentError('a batch is an array of operations');
  const writes: PreparedWrite[] = [];
  let total = 0;
  let userBytes = 0;
  for (const op of operations) {
    const write = prepareWrite(op, limits);
    writes.push(write);
    const valueBytes = write.value?.length ?? 0;
    total += recordBytes(write.key.length, valueBytes);
    userBytes += write.key.length + valueBytes;
  }
  if (total > limits.segmentBytes) throw new BatchTooLargeError(total, limits.segmentBytes);
  return { writes, recordBytes: total, userBytes };
}

function prepareWrite(op: BatchOperation, limits: BatchLimits): PreparedWrite {
  if (op === null || typeof op !== 'object') throw new InvalidArgumentError('a batch operation is an object');
  const type: unknown = op.type;
  if (type !== 'put' && type !== 'del') {
    throw new InvalidArgumentError(`batch operation type must be 'put' or 'del', got ${String(type)}`);
  }
  const key = toKey(op.key);
  if (key.length > limits.maxKeyBytes) throw new KeyTooLargeError(key.length, limits.maxKeyBytes);
  if (op.type === 'del') return { key, value: null };
  const value = toValue(op.value);
  const fitsSegment = limits.segmentBytes - recordBytes(key.length, 0);
  if (value.length > limits.maxValueBytes || value.length > fitsSegment) {
    throw new ValueTooLargeError(value.length, Math.min(limits.maxValueBytes, fitsSegment));
  }
  return { key, value };
}

/**
 * Appends a prepared batch to the active segment in one step (see the header); the caller made
 * room for `batch.recordBytes`. Returns each write's index entry, in batch order.
 */
export function appendBatch(valueLog: ValueLog, batch: PreparedBatch): IndexEntry[] {
  const { writes } = batch;
  assert(writes.length > 0, 'an empty batch appends nothing');
  assert(valueLog.fits(batch.recordBytes), 'a batch is appended into room for all of it');
  const segment = valueLog.active!.seq;
  const entries = writes.map((w, i) => valueLog.append(w.key, w.value, i < writes.length - 1));
  for (let i = 1; i < entries.length; i++) {
    assert(entries[i]!.lsn === entries[i - 1]!.lsn + 1, 'a batch is one run of consecutive lsns');
  }
  assert(valueLog.active!.seq === segment, 'a batch lies in one log segment');
  return entries;
}

/** A key for an error message: its UTF-8 text when it is valid UTF-8, else its bytes in hex. */
export function describeKey(key: Buffer): string {
  const text = key.toString('utf8');
  return Buffer.from(text, 'utf8').equals(key) ? JSON.stringify(text) : `0x${key.toString('hex')}`;
}
