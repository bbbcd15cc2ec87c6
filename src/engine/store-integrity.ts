/**
 * Integrity checks over a store's persisted segments (bit rot, PROTOCOL §8):
 * - `verifyPersisted`: every sealed log segment must hold CRC-valid, lsn-continuous records up to
 *   the length the manifest records, every level index segment must pass verifyIndexSegment
 *   (block CRCs, metadata CRC, key order); the first corruption is returned, nothing is changed.
 * - `readVerified`: a read for shipping whose bytes do not check out fail-stops the store (its
 *   node restarts and another replica serves) instead of shipping bytes every backup refuses.
 * - `persistedSegments`: where the manifest's segments lie, for fault injection and tools.
 */
import { CorruptSegmentError, InvalidArgumentError } from '../errors.js';
import type { Device } from './device.js';
import type { FailStop } from './fail-stop.js';
import { verifyIndexSegment } from './index-segment.js';
import type { ValueLog } from './value-log.js';
import type { VersionSet } from './version-set.js';

export interface IntegrityDeps {
  device: Device;
  failStop: FailStop;
  valueLog: ValueLog;
  versions: VersionSet;
}

export function verifyPersisted(d: IntegrityDeps): CorruptSegmentError | undefined {
  const corruptLog = d.valueLog.verify();
  if (corruptLog !== undefined) return corruptLog;
  for (const level of d.versions.levels) {
    for (const segment of level) {
      const { offset, usedBytes } = segment.descriptor;
      try {
        verifyIndexSegment(d.device.read(offset, usedBytes, 'index'), `index@${offset}`);
      } catch (err) {
        if (err instanceof CorruptSegmentError) return err;
        throw err;
      }
    }
  }
  return undefined;
}

export function persistedSegments(
  d: IntegrityDeps,
): { kind: 'log' | 'index'; offset: number; usedBytes: number }[] {
  const out: { kind: 'log' | 'index'; offset: number; usedBytes: number }[] = [];
  for (const e of d.valueLog.log) {
    if (e.usedBytes !== null && e.usedBytes > 0)
      out.push({ kind: 'log', offset: e.offset, usedBytes: e.usedBytes });
  }
  for (const s of d.versions.levels.flat()) {
    out.push({ kind: 'index', offset: s.descriptor.offset, usedBytes: s.descriptor.usedBytes });
  }
  return out;
}

/** The used bytes of log segment `seq`, verified at the source (ValueLog.readSegment). */
export function readLogSegmentVerified(d: IntegrityDeps, seq: number): Buffer {
  return readVerified(d, () => d.valueLog.readSegment(seq));
}

/** The bytes of the level index segment at `offset`, verified at the source. */
export function readIndexSegmentVerified(d: IntegrityDeps, offset: number): Buffer {
  const seg = d.versions.findLevelSegment(offset);
  if (seg === undefined) throw new InvalidArgumentError(`no index segment at ${offset}`);
  return readVerified(d, () => {
    const bytes = d.device.read(offset, seg.descriptor.usedBytes, 'index');
    verifyIndexSegment(bytes, `index@${offset}`);
    return bytes;
  });
}

/** A read whose corruption makes the store fail-stop (other errors propagate as they are). */
function readVerified(d: IntegrityDeps, read: () => Buffer): Buffer {
  try {
    return read();
  } catch (err) {
    if (err instanceof CorruptSegmentError)
      d.failStop.run(() => {
        throw err;
      });
    throw err;
  }
}
