/**
 * Recovery: read the manifest (the store does), open the levels lazily, replay the log from
 * `replayFrom` into L0 — one replay for both roles (`replayLog`); `recoverStore` picks what an
 * opened store needs by role.
 *
 * Replay: every log segment from `replayFrom` on is parsed; CRC and lsn continuity decide where
 *   its valid prefix ends, and each valid record goes into L0 with its local pointer. A sealed
 *   segment was synced whole, so a short parse means corruption: it is reported in
 *   `corruptSegments`, what is readable is kept, and lsn continuity restarts after it.
 *
 * Primary: the manifest ends with the active segment; its valid prefix is what survived a crash.
 *   The bytes past it are zeroed on the device so no stale record can ever be parsed as a
 *   continuation, and appending resumes there. A new primary store starts segment 0.
 *
 * Backup: every persisted segment is sealed (written and synced up to its usedBytes before the
 *   manifest named that length). Only with `rebuildL0` (Build-Index) is the log replayed; then
 *   indexing resumes where the replay stopped. A new backup store writes its first manifest.
 */
import { assert } from '../assert.js';
import { defective, type Probe } from '../probe.js';
import type { Compactor } from './compaction.js';
import type { Device } from './device.js';
import type { LogPosition, LogSegmentEntry, StoreRole } from './manifest.js';
import { parseRecords } from './record.js';
import type { ValueLog } from './value-log.js';

export interface RecoveryReport {
  replayedRecordCount: number;
  replayedBytes: number;
  /** Segments found corrupt while replaying; their unreadable records were skipped. */
  corruptSegments: string[];
}

export interface RecoveryDeps {
  device: Device;
  segmentBytes: number;
  valueLog: ValueLog;
  compactor: Compactor;
  replayFrom: LogPosition;
  report: RecoveryReport;
  /** The simulator's defects (`no-l0-replay`); NO_PROBE in production. */
  probe: Probe;
}

/** What `recoverStore` needs beyond the replay's dependencies. */
export interface StoreRecovery {
  role: StoreRole;
  /** A manifest was found (else the store is new). */
  existing: boolean;
  rebuildL0: boolean;
  /** Writes the store's first manifest (a new backup store). */
  persist: () => Promise<void>;
  /** Records where a Build-Index backup's indexing resumes (before L0's fullness is checked). */
  resumeIndexingAt: (position: LogPosition) => void;
}

/**
 * Recovers an opened store (see the header): a primary replays its log and resumes appending; a
 * new backup store writes its first manifest; an existing one replays its log only with rebuildL0.
 */
export async function recoverStore(d: RecoveryDeps, r: StoreRecovery): Promise<void> {
  if (r.role === 'primary') await recoverPrimary(d, r.existing);
  else if (!r.existing) await r.persist();
  else if (r.rebuildL0) {
    r.resumeIndexingAt(recoverBackupL0(d));
    d.compactor.afterApply();
  }
}

/** What a replay found: the lsn after the last valid record and the position right after it. */
interface ReplayEnd {
  expectedLsn: number;
  position: LogPosition;
}

/**
 * Replays `log` from `replayFrom` into L0 (see the header). `onActive` gets the active segment
 * (usedBytes null: it is parsed up to the segment's end) with its bytes and valid end.
 */
function replayLog(
  d: RecoveryDeps,
  onActive?: (entry: LogSegmentEntry, bytes: Buffer, endOffset: number) => void,
): ReplayEnd {
  const { replayFrom, report } = d;
  let expectedLsn = replayFrom.lsn;
  const position = { ...replayFrom };
  for (const entry of d.valueLog.log) {
    if (entry.seq < replayFrom.seq) continue;
    const start = entry.seq === replayFrom.seq ? replayFrom.offset : 0;
    const end = entry.usedBytes ?? d.segmentBytes;
    const bytes = d.device.read(entry.offset, end, 'log');
    const parsed = parseRecords(bytes, start, end, expectedLsn);
    // Simulator-only defect: the active segment's records stay out of L0.
    const skip = entry.usedBytes === null && defective(d.probe, 'no-l0-replay');
    for (const record of parsed.records) {
      if (!skip) {
        d.compactor.l0.insert(record.key.toString('latin1'), {
          pointer: entry.offset + record.offset,
          lsn: record.lsn,
          tombstone: record.value === null,
        });
      }
      report.replayedRecordCount++;
      report.replayedBytes += record.length;
    }
    expectedLsn = parsed.nextLsn;
    if (parsed.records.length > 0) position.lsn = parsed.nextLsn;
    position.seq = entry.seq;
    position.offset = parsed.endOffset;
    if (entry.usedBytes === null) onActive?.(entry, bytes, parsed.endOffset);
    else if (parsed.endOffset < entry.usedBytes) {
      // A sealed segment was synced whole: a short parse means corruption. Keep what is readable.
      report.corruptSegments.push(`log@${entry.offset} (seq ${entry.seq}) at ${parsed.endOffset}`);
      expectedLsn = 0;
    }
  }
  return { expectedLsn, position };
}

/** Primary recovery (see the header); `existing`: a manifest was found. */
export async function recoverPrimary(d: RecoveryDeps, existing: boolean): Promise<void> {
  const { valueLog } = d;
  if (!existing) {
    await valueLog.startActiveSegment(0);
    return;
  }
  const activeEntry = valueLog.log[valueLog.log.length - 1];
  assert(
    activeEntry !== undefined && activeEntry.usedBytes === null,
    'a primary manifest ends with its active segment',
  );
  let zeroed = false;
  const end = replayLog(d, (entry, bytes, endOffset) => {
    // The active segment: its valid prefix is what survived. Zero the rest on the device so no
    // stale record past it can ever be parsed as a continuation (synced below).
    const buf = Buffer.alloc(d.segmentBytes);
    bytes.copy(buf, 0, 0, endOffset);
    d.device.write(entry.offset + endOffset, buf.subarray(endOffset), 'log');
    zeroed = true;
    valueLog.active = {
      seq: entry.seq,
      offset: entry.offset,
      buf,
      usedBytes: endOffset,
      writtenBytes: endOffset,
    };
  });
  if (zeroed) await d.device.sync();
  valueLog.nextLsn = Math.max(d.replayFrom.lsn, end.expectedLsn, d.compactor.l0.maxLsn + 1);
  d.compactor.afterApply();
}

/**
 * Backup recovery with `rebuildL0` (see the header). Returns the position right after the last
 * record replayed into L0, where indexing resumes; the caller records it, then runs
 * `compactor.afterApply()` (a freeze needs that position).
 */
export function recoverBackupL0(d: RecoveryDeps): LogPosition {
  for (const entry of d.valueLog.log) {
    if (entry.seq >= d.replayFrom.seq)
      assert(entry.usedBytes !== null, 'a backup persists only sealed log segments');
  }
  const { position } = replayLog(d);
  d.valueLog.nextLsn = Math.max(position.lsn, d.compactor.l0.maxLsn + 1);
  return position;
}
