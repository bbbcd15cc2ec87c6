/**
 * The manifest: the store's durable description of itself. It names every segment in use (log
 * chain, index segments per level), where replay starts, and on backups the segment maps. It is
 * kept as a log of version edits (manifest-log.ts): each change is one synced edit, so a crash
 * leaves the previous or the next version, never a mix. Segments that no manifest names are free:
 * an interrupted compaction's outputs are reclaimed at recovery simply by not being named.
 *
 * Encoding of a whole manifest (a snapshot record's body, and the legacy `MANIFEST` file written
 * whole before the manifest log existed): `TALOSMF1 <crc32c as 8 hex digits>\n<JSON>`; keys are
 * hex strings in the JSON.
 */
import { CorruptManifestError } from '../errors.js';
import { crc32c } from './crc.js';
import type { IndexSegmentDescriptor } from './index-segment-reader.js';

/** The legacy whole-file manifest's name (see manifest-log.ts for today's files). */
export const MANIFEST_NAME = 'MANIFEST';
const MAGIC = 'TALOSMF1';

/** A position in the log: segment sequence, offset in it, and the lsn of the record there. */
export interface LogPosition {
  seq: number;
  offset: number;
  lsn: number;
}

export interface LogSegmentEntry {
  seq: number;
  /** Device offset of the local segment. */
  offset: number;
  /** Bytes used when sealed; null for the active (unsealed) segment of a primary. */
  usedBytes: number | null;
}

export type StoreRole = 'primary' | 'backup';

export interface ManifestData {
  formatVersion: 1;
  role: StoreRole;
  segmentBytes: number;
  /** Segments ever allocated: the allocator's high-water mark. */
  allocatedSegmentCount: number;
  log: LogSegmentEntry[];
  replayFrom: LogPosition;
  /** levels[i] is L(i+1): index segments sorted by key, non-overlapping. */
  levels: IndexSegmentDescriptor[][];
  nextCompactionId: number;
  /** Backup: primary log segment offset → local segment offset. */
  segmentMap: [number, number][];
  /** Backup: primary index segment offset → local segment offset. */
  indexMap: [number, number][];
  /**
   * The node whose offsets key `segmentMap` and `indexMap` (the primary that shipped them, or the
   * one a rebase named). Absent in manifests written before it existed, and while the maps are empty.
   */
  mapOwner?: string;
}

export function encodeManifest(data: ManifestData): Buffer {
  const json = JSON.stringify({
    ...data,
    levels: data.levels.map((level) =>
      level.map((s) => ({ ...s, minKey: hex(s.minKey), maxKey: hex(s.maxKey) })),
    ),
  });
  const body = Buffer.from(json, 'utf8');
  const header = Buffer.from(`${MAGIC} ${crc32c(body).toString(16).padStart(8, '0')}\n`, 'latin1');
  return Buffer.concat([header, body]);
}

export function decodeManifest(bytes: Buffer, where: string): ManifestData {
  const headerBytes = MAGIC.length + 10;
  const header = bytes.toString('latin1', 0, Math.min(bytes.length, headerBytes));
  const match = /^TALOSMF1 ([0-9a-f]{8})\n$/.exec(header);
  if (match === null) throw new CorruptManifestError(where, 'bad header');
  const storedCrc = Number.parseInt(match[1]!, 16);
  const body = bytes.subarray(headerBytes);
  if (crc32c(body) !== storedCrc) throw new CorruptManifestError(where, 'crc mismatch');
  let parsed: ManifestData;
  try {
    parsed = JSON.parse(body.toString('utf8')) as ManifestData;
  } catch (err) {
    throw new CorruptManifestError(where, `unparseable JSON: ${(err as Error).message}`);
  }
  if (parsed.formatVersion !== 1)
    throw new CorruptManifestError(where, `unknown format ${parsed.formatVersion}`);
  parsed.levels = parsed.levels.map((level) =>
    level.map((s) => ({ ...s, minKey: unhex(s.minKey), maxKey: unhex(s.maxKey) })),
  );
  return parsed;
}

function hex(latin1: string): string {
  return Buffer.from(latin1, 'latin1').toString('hex');
}

function unhex(h: string): string {
  return Buffer.from(h, 'hex').toString('latin1');
}
