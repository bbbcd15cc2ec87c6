/**
 * The value log: a chain of fixed-size segments holding every record (key, value, lsn) in lsn
 * order. The active segment — the chain's last on a primary — lives in memory; its used prefix is
 * written to the device by a tail sync (group commit, flush) or by its seal.
 *
 * Append: a record is encoded at the end of the active segment (`fits` first: one that does not
 *   fit waits for a seal, `seal()`). Value pointers are device offsets (segment offset + offset in
 *   segment).
 *
 * Seal (PROTOCOL §4): the active segment is padded with zeros, written whole and synced; the next
 *   segment is allocated and the manifest records both before any byte lands in the new one. Hook
 *   `segmentSealed` (`partial: true` for a tail sync that ships the prefix so far). A seal is
 *   asynchronous (its syncs are); while it runs (`sealing`) nothing is appended and a tail sync
 *   waits for it (the seal's own sync covers the old segment, and the new one holds nothing yet).
 *   Its in-memory switch to the new segment and its hook happen together, after the data sync and
 *   before the manifest edit (captured at that instant) is durable.
 *
 * Read: a pointer into the active segment reads its buffer; any other reads the record from the
 *   device and checks CRC, lsn and key against the index entry that named it.
 */
import { assert, assertOffset } from '../assert.js';
import { CorruptSegmentError, InvalidArgumentError } from '../errors.js';
import { crc32c } from './crc.js';
import type { Device } from './device.js';
import type { StoreHooks } from './hooks.js';
import type { LogSegmentEntry } from './manifest.js';
import type { IndexEntry } from './memtable.js';
import {
  announcedRecordLength,
  decodeRecord,
  encodeRecord,
  parseRecords,
  RECORD_HEADER_BYTES,
  recordBytes,
} from './record.js';
import type { SegmentAllocator } from './segment-allocator.js';

export interface ActiveSegment {
  seq: number;
  offset: number;
  buf: Buffer;
  usedBytes: number;
  /** Prefix already written to the device. */
  writtenBytes: number;
}

export class ValueLog {
  /** The chain: sealed segments (usedBytes set) and, on a primary, the active one last (null). */
  log: LogSegmentEntry[];
  active: ActiveSegment | undefined;
  nextLsn = 1;
  /** The seal in progress: appends and tail syncs wait for it. */
  sealing: Promise<void> | undefined;

  constructor(
    private readonly device: Device,
    private readonly allocator: SegmentAllocator,
    private readonly hooks: StoreHooks,
    private readonly segmentBytes: number,
    log: LogSegmentEntry[],
    /** Writes the manifest (Store.persistManifest): captured at the call, resolves once durable. */
    private readonly persistManifest: () => Promise<void>,
  ) {
    this.log = log;
  }

  /** Whether a record of `length` bytes fits the active segment (else it waits for `seal()`). */
  fits(length: number): boolean {
    return this.active!.usedBytes + length <= this.segmentBytes;
  }

  /**
   * Encodes a record at the end of the active segment; the caller checked `fits` and `sealing`.
   * `continuesBatch`: more records of the same atomic batch follow (record.ts, write-batch.ts).
   */
  append(key: Buffer, value: Buffer | null, continuesBatch = false): IndexEntry {
    const length = recordBytes(key.length, value?.length ?? 0);
    const active = this.active!;
    assert(this.sealing === undefined && active.usedBytes + length <= this.segmentBytes, 'append into room');
    const lsn = this.nextLsn++;
    const offset = active.usedBytes;
    encodeRecord(active.buf, offset, lsn, key, value, continuesBatch);
    active.usedBytes += length;
    const pointer = active.offset + offset;
    assertOffset(pointer, 'value pointer');
    return { pointer, lsn, tombstone: value === null };
  }

  /**
   * Writes the unwritten part of the active segment's used prefix and syncs the device. The partial
   * seal hook then announces the prefix this call covered — unless a seal replaced the segment
   * meanwhile (its full seal announced it all).
   */
  async syncTail(partialSealHook: boolean): Promise<void> {
    if (this.sealing !== undefined) {
      // The seal syncs every byte of the old segment; the new one holds none until it finished.
      await this.sealing;
      return;
    }
    const active = this.active;
    if (active === undefined) return;
    if (active.usedBytes > active.writtenBytes) {
      this.device.write(
        active.offset + active.writtenBytes,
        active.buf.subarray(active.writtenBytes, active.usedBytes),
        'log',
      );
      active.writtenBytes = active.usedBytes;
    }
    const usedBytes = active.usedBytes;
    await this.device.sync();
    if (partialSealHook && this.active === active) {
      this.hooks.emit('segmentSealed', {
        seq: active.seq,
        segmentOffset: active.offset,
        usedBytes,
        crc32c: crc32c(active.buf.subarray(0, usedBytes)),
        partial: true,
        bytes: active.buf.subarray(0, usedBytes),
      });
    }
  }

  /** Seals the active segment (see the header); one seal at a time, later calls join it. */
  seal(): Promise<void> {
    if (this.sealing === undefined) {
      const sealing = this.sealActive().finally(() => {
        this.sealing = undefined;
      });
      this.sealing = sealing;
      sealing.catch(() => {}); // observed by the callers
    }
    return this.sealing;
  }

  /** Seal (PROTOCOL §4): pad, write, sync, allocate the next segment, record both, notify. */
  private async sealActive(): Promise<void> {
    const active = this.active!;
    this.device.write(active.offset + active.writtenBytes, active.buf.subarray(active.writtenBytes), 'log');
    active.writtenBytes = this.segmentBytes;
    await this.device.sync();
    // From here to the manifest call: one synchronous step (nothing sees half a seal).
    const crc = crc32c(active.buf.subarray(0, active.usedBytes));
    const entry = this.log[this.log.length - 1]!;
    assert(
      entry.seq === active.seq && entry.usedBytes === null,
      'the active segment is the last of the log chain',
    );
    entry.usedBytes = active.usedBytes;
    const persisted = this.startActiveSegment(active.seq + 1);
    this.hooks.emit('segmentSealed', {
      seq: active.seq,
      segmentOffset: active.offset,
      usedBytes: active.usedBytes,
      crc32c: crc,
      partial: false,
      bytes: active.buf.subarray(0, active.usedBytes),
    });
    await persisted;
  }

  /** Starts segment `seq` as the active one; resolves once the manifest naming it is durable. */
  startActiveSegment(seq: number): Promise<void> {
    const offset = this.allocator.allocate();
    this.active = { seq, offset, buf: Buffer.alloc(this.segmentBytes), usedBytes: 0, writtenBytes: 0 };
    this.log.push({ seq, offset, usedBytes: null });
    // The manifest must name the segment before any byte of it reaches the device.
    return this.persistManifest();
  }

  /** Reads and verifies the record an index entry points to; returns its value. */
  readValue(entry: IndexEntry, key: Buffer): Buffer {
    const { pointer } = entry;
    const inSegment = pointer % this.segmentBytes;
    const segmentOffset = pointer - inSegment;
    const name = `log@${segmentOffset}`;
    let buf: Buffer;
    let at: number;
    const active = this.active;
    if (active !== undefined && segmentOffset === active.offset) {
      buf = active.buf;
      at = inSegment;
    } else {
      const room = this.segmentBytes - inSegment;
      if (room < RECORD_HEADER_BYTES)
        throw new CorruptSegmentError(name, `pointer ${pointer} at the segment's end`);
      buf = this.device.read(pointer, Math.min(room, RECORD_HEADER_BYTES + key.length + 512), 'log');
      at = 0;
      const length = announcedRecordLength(buf);
      if (length > buf.length) {
        if (length > room)
          throw new CorruptSegmentError(name, `record at ${inSegment} runs past the segment`);
        buf = this.device.read(pointer, length, 'log');
      }
    }
    const check = decodeRecord(buf, at);
    if (!check.ok) throw new CorruptSegmentError(name, `record at ${inSegment}: ${check.reason}`);
    const record = check.record;
    if (record.lsn !== entry.lsn || !record.key.equals(key)) {
      throw new CorruptSegmentError(name, `record at ${inSegment} is not the one the index names`);
    }
    assert(record.value !== null, 'a live index entry points to a tombstone record');
    return Buffer.from(record.value);
  }

  /**
   * The used bytes of log segment `seq`: the active one's buffer, or a sealed one from the device,
   * either verified first (`verifySegment`): bytes read for shipping are checked at the source, so a
   * primary whose own copy rotted raises CorruptSegmentError (its store fail-stops, another
   * replica takes over) instead of shipping bytes every backup refuses.
   */
  readSegment(seq: number): Buffer {
    const entry = this.log.find((e) => e.seq === seq);
    let bytes: Buffer;
    if (this.active?.seq === seq) {
      // The active buffer too: recovery parses it from `replayFrom` only, so a record before that
      // (flushed already) may have rotted on the device that filled the buffer unnoticed.
      bytes = Buffer.from(this.active.buf.subarray(0, this.active.usedBytes));
    } else {
      if (entry === undefined || entry.usedBytes === null)
        throw new InvalidArgumentError(`no sealed log segment ${seq}`);
      bytes = this.device.read(entry.offset, entry.usedBytes, 'log');
    }
    const corrupt = verifySegment(entry ?? { seq, offset: this.active!.offset, usedBytes: null }, bytes);
    if (corrupt !== undefined) throw corrupt;
    return bytes;
  }

  /** The first sealed segment whose records stop before its recorded length, or undefined. */
  verify(): CorruptSegmentError | undefined {
    for (const entry of this.log) {
      if (entry.usedBytes === null || entry.usedBytes === 0) continue;
      const corrupt = verifySegment(entry, this.device.read(entry.offset, entry.usedBytes, 'log'));
      if (corrupt !== undefined) return corrupt;
    }
    return undefined;
  }
}

/** A sealed segment's bytes must be CRC-valid, lsn-continuous records up to its recorded length. */
function verifySegment(entry: LogSegmentEntry, bytes: Buffer): CorruptSegmentError | undefined {
  const parsed = parseRecords(bytes, 0, bytes.length, 0);
  if (parsed.endOffset === bytes.length) return undefined;
  return new CorruptSegmentError(
    `log@${entry.offset} (seq ${entry.seq})`,
    `records stop at offset ${parsed.endOffset} of ${bytes.length} (${parsed.stop})`,
  );
}
