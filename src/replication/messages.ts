/**
 * Control messages of the replication protocol (PROTOCOL §2–5) and their binary codec.
 *
 * Every message is one case of the MESSAGE variant (schema.ts): a type byte, then `regionId` and
 * `epoch` (the fencing token every message carries, §1), then its own fields as its table lists
 * them. The tables are the whole codec: encode, decode and validation (integer ranges, u64s exact
 * below 2^53, enum values, list and string bounds, well-formed UTF-8) all follow from them, and
 * the compiler checks each table against the message's interface below. A CRC32C over everything
 * before it ends the message, so a torn or corrupted frame is refused, never acted on.
 *
 * `decodeMessage` accepts arbitrary bytes: anything malformed raises MalformedMessageError.
 * `encodeMessage` refuses a message its table cannot express with InvalidArgumentError.
 */

import { crc32c } from '../engine/crc.js';
import { TalosError } from '../errors.js';
import type { RegionHandle } from '../fabric/types.js';
import {
  bool,
  decode,
  enumOf,
  type FieldType,
  list,
  pair,
  pos,
  str,
  struct,
  u8,
  u32,
  u53,
  variant,
  Writer,
} from './schema.js';

export class MalformedMessageError extends TalosError {
  constructor(detail: string) {
    super('MALFORMED_MESSAGE', `malformed replication message: ${detail}`);
  }
}

export type ReplicationMode = 'send-index' | 'build-index';

export interface LogPositionWire {
  seq: number;
  offset: number;
  lsn: number;
}

interface Base {
  regionId: string;
  epoch: number;
}

export interface OpenBackup extends Base {
  type: 'OpenBackup';
  primaryNodeId: string;
  segmentBytes: number;
  logBufferCount: number;
  mode: ReplicationMode;
  /** Sequence of the primary's active log segment: the first the live stream will write. */
  fromSegmentSeq: number;
  /**
   * The node whose offsets this primary can rebase from (its store's map owner, '' when none): a
   * backup whose maps are keyed by neither it nor the primary comes from an older lineage and is
   * reset to an empty store, then re-synced from scratch (§7).
   */
  rebaseFrom: string;
}

export interface BackupReady extends Base {
  type: 'BackupReady';
  logBuffers: RegionHandle[];
  indexBuffers: RegionHandle[];
  /** Highest log segment sequence fully persisted, -1 when none. */
  persistedThrough: number;
  /** Last compaction the backup's levels reflect (ReplicaOps.lastCompactionId); 0 when none. */
  lastCompactionId: number;
  /** The node whose offsets key the backup's maps ('' when none yet): a different one needs a rebase. */
  mapOwner: string;
}

export interface SegmentSealed extends Base {
  type: 'SegmentSealed';
  seq: number;
  primarySegment: number;
  usedBytes: number;
  crc32c: number;
  /** A tail sync (§4.4): the segment stays open. */
  partial: boolean;
}

export interface SegmentPersisted extends Base {
  type: 'SegmentPersisted';
  seq: number;
  usedBytes: number;
  partial: boolean;
}

export interface IndexSegmentShipped extends Base {
  type: 'IndexSegment';
  compactionId: number;
  dstLevel: number;
  ordinal: number;
  primarySegment: number;
  usedBytes: number;
  crc32c: number;
  /** Which index buffer (double-buffered) holds the bytes. */
  slot: number;
}

export interface IndexSegmentPersisted extends Base {
  type: 'IndexSegmentPersisted';
  compactionId: number;
  ordinal: number;
  slot: number;
}

export interface CompactionCommit extends Base {
  type: 'CompactionCommit';
  compactionId: number;
  srcLevel: number;
  dstLevel: number;
  newSegments: number[];
  removedSegments: number[];
  trivialMove: boolean;
  replayFrom: LogPositionWire;
}

export interface CompactionCommitted extends Base {
  type: 'CompactionCommitted';
  compactionId: number;
}

/**
 * Re-sync (§7, Send-Index): replace every level of the backup at once with the named segments
 * (primary offsets; `levels[i]` is level i + 1), each shipped before or already installed.
 */
export interface InstallLevels extends Base {
  type: 'InstallLevels';
  compactionId: number;
  levels: number[][];
  replayFrom: LogPositionWire;
}

export interface LevelsInstalled extends Base {
  type: 'LevelsInstalled';
  compactionId: number;
}

/**
 * Rebase (§7), from a promoted primary: re-key the backup's maps from `owner` (the old primary) to
 * the sender, whose log is `segments` ([seq, offset] pairs) and whose `indexMap` maps the old
 * primary's index segment offsets to its own ([old, new] pairs).
 */
export interface Rebase extends Base {
  type: 'Rebase';
  owner: string;
  newOwner: string;
  segments: [number, number][];
  indexMap: [number, number][];
}

export interface Rebased extends Base {
  type: 'Rebased';
  truncatedSegments: number;
}

/** The receiver refused a message: a stale epoch, an unknown region, or a failure applying it. */
export interface Refused extends Base {
  type: 'Refused';
  /** The refuser's epoch for the region (higher than the message's for a stale epoch). */
  currentEpoch: number;
  code: string;
  reason: string;
}

export interface CloseRegion extends Base {
  type: 'CloseRegion';
}

export type ReplicationMessage =
  | OpenBackup
  | BackupReady
  | SegmentSealed
  | SegmentPersisted
  | IndexSegmentShipped
  | IndexSegmentPersisted
  | CompactionCommit
  | CompactionCommitted
  | InstallLevels
  | LevelsInstalled
  | Rebase
  | Rebased
  | Refused
  | CloseRegion;

/** Most items in one list field (segments of a commit, a rebase's map entries). */
const MAX_LIST = 1 << 16;

const base = { regionId: str(), epoch: u53 } as const;
const segments = list(u53, MAX_LIST);
const handles = list(struct({ regionKey: u53, bytes: u53 }), MAX_LIST);
const pairs = list(pair(u53, u53), MAX_LIST);
const logPosition = struct({ seq: u53, offset: u53, lsn: u53 });

/** The field table of every message type, with its type code. */
const MESSAGE = variant('type', {
  OpenBackup: [
    1,
    struct({
      ...base,
      primaryNodeId: str(),
      segmentBytes: u53,
      logBufferCount: u32,
      mode: enumOf(['send-index', 'build-index']),
      fromSegmentSeq: u53,
      rebaseFrom: str(),
    }),
  ],
  BackupReady: [
    2,
    struct({
      ...base,
      logBuffers: handles,
      indexBuffers: handles,
      persistedThrough: pos,
      lastCompactionId: u53,
      mapOwner: str(),
    }),
  ],
  SegmentSealed: [
    3,
    struct({ ...base, seq: u53, primarySegment: u53, usedBytes: u53, crc32c: u32, partial: bool }),
  ],
  SegmentPersisted: [4, struct({ ...base, seq: u53, usedBytes: u53, partial: bool })],
  IndexSegment: [
    5,
    struct({
      ...base,
      compactionId: u53,
      dstLevel: u8,
      ordinal: u32,
      primarySegment: u53,
      usedBytes: u53,
      crc32c: u32,
      slot: u8,
    }),
  ],
  IndexSegmentPersisted: [6, struct({ ...base, compactionId: u53, ordinal: u32, slot: u8 })],
  CompactionCommit: [
    7,
    struct({
      ...base,
      compactionId: u53,
      srcLevel: u8,
      dstLevel: u8,
      newSegments: segments,
      removedSegments: segments,
      trivialMove: bool,
      replayFrom: logPosition,
    }),
  ],
  CompactionCommitted: [8, struct({ ...base, compactionId: u53 })],
  Refused: [9, struct({ ...base, currentEpoch: u53, code: str(), reason: str() })],
  CloseRegion: [10, struct({ ...base })],
  InstallLevels: [
    11,
    struct({ ...base, compactionId: u53, levels: list(segments, 0xff), replayFrom: logPosition }),
  ],
  LevelsInstalled: [12, struct({ ...base, compactionId: u53 })],
  Rebase: [13, struct({ ...base, owner: str(), newOwner: str(), segments: pairs, indexMap: pairs })],
  Rebased: [14, struct({ ...base, truncatedSegments: u53 })],
});

// The tables and the interfaces describe the same messages: each is assignable to the other.
type Tabled = FieldType<typeof MESSAGE>;
const tablesMatchInterfaces: [
  Tabled extends ReplicationMessage ? true : false,
  ReplicationMessage extends Tabled ? true : false,
] = [true, true];
void tablesMatchInterfaces;

const CRC_BYTES = 4;

export function encodeMessage(message: ReplicationMessage): Buffer {
  const w = new Writer(128);
  MESSAGE.write(w, message as Tabled);
  const crc = crc32c(w.buf.subarray(0, w.at));
  w.u32(crc);
  return w.finish();
}

export function decodeMessage(bytes: Uint8Array): ReplicationMessage {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < CRC_BYTES + 1) throw new MalformedMessageError('too short');
  const bodyEnd = buf.length - CRC_BYTES;
  if (crc32c(buf.subarray(0, bodyEnd)) !== buf.readUInt32LE(bodyEnd)) {
    throw new MalformedMessageError('crc mismatch');
  }
  return decode(MESSAGE, buf, (detail) => new MalformedMessageError(detail), 0, bodyEnd);
}
