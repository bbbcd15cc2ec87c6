/**
 * Control messages of the replication protocol (PROTOCOL §2–5) and their binary codec.
 *
 * Every message starts with a type byte, then `regionId` and `epoch` (the fencing token every
 * message carries, §1), then its own fields. Integers are little-endian; counts and offsets are
 * u64 held as exact numbers below 2^53; strings are u16-length-prefixed UTF-8. A CRC32C over
 * everything before it ends the message, so a torn or corrupted frame is refused, never acted on.
 *
 * `decodeMessage` accepts arbitrary bytes: anything malformed raises MalformedMessageError.
 */

import { crc32c } from '../engine/crc.js';
import { InvalidArgumentError, TalosError } from '../errors.js';
import type { RegionHandle } from '../fabric/types.js';

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
  /** Last compaction the backup's levels reflect (Store.lastCompactionId); 0 when none. */
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

const TYPE_CODES: Record<ReplicationMessage['type'], number> = {
  OpenBackup: 1,
  BackupReady: 2,
  SegmentSealed: 3,
  SegmentPersisted: 4,
  IndexSegment: 5,
  IndexSegmentPersisted: 6,
  CompactionCommit: 7,
  CompactionCommitted: 8,
  Refused: 9,
  CloseRegion: 10,
  InstallLevels: 11,
  LevelsInstalled: 12,
  Rebase: 13,
  Rebased: 14,
};
const TYPE_NAMES = new Map(Object.entries(TYPE_CODES).map(([name, code]) => [code, name]));
const MODES: ReplicationMode[] = ['send-index', 'build-index'];
const MAX_LIST = 1 << 16;
const TWO_32 = 2 ** 32;

class Writer {
  private buf = Buffer.alloc(256);
  private at = 0;

  private room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.at + n));
    this.buf.copy(next, 0, 0, this.at);
    this.buf = next;
  }

  u8(v: number): void {
    this.room(1);
    this.buf.writeUInt8(v, this.at);
    this.at += 1;
  }

  u32(v: number): void {
    this.room(4);
    this.buf.writeUInt32LE(v >>> 0, this.at);
    this.at += 4;
  }

  u64(v: number): void {
    if (!(Number.isSafeInteger(v) && v >= 0)) throw new InvalidArgumentError(`not a u64: ${v}`);
    this.room(8);
    this.buf.writeUInt32LE(v % TWO_32, this.at);
    this.buf.writeUInt32LE(Math.floor(v / TWO_32), this.at + 4);
    this.at += 8;
  }

  /** Signed position (-1 for "none"), stored as u64 of v + 1. */
  pos(v: number): void {
    this.u64(v + 1);
  }

  str(v: string): void {
    const bytes = Buffer.from(v, 'utf8');
    if (bytes.length > 0xffff) throw new InvalidArgumentError('string field longer than 65535 bytes');
    this.room(2 + bytes.length);
    this.buf.writeUInt16LE(bytes.length, this.at);
    bytes.copy(this.buf, this.at + 2);
    this.at += 2 + bytes.length;
  }

  list(values: number[]): void {
    if (values.length > MAX_LIST) throw new InvalidArgumentError('list field too long');
    this.u32(values.length);
    for (const v of values) this.u64(v);
  }

  finish(): Buffer {
    const crc = crc32c(this.buf.subarray(0, this.at));
    this.u32(crc);
    return Buffer.from(this.buf.subarray(0, this.at));
  }
}

class Reader {
  private at = 0;
  constructor(private readonly buf: Buffer) {}

  private need(n: number): void {
    if (this.at + n > this.buf.length) throw new MalformedMessageError('truncated');
  }

  u8(): number {
    this.need(1);
    return this.buf.readUInt8(this.at++);
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.at);
    this.at += 4;
    return v;
  }

  u64(): number {
    this.need(8);
    const lo = this.buf.readUInt32LE(this.at);
    const hi = this.buf.readUInt32LE(this.at + 4);
    this.at += 8;
    if (hi >= 2 ** 21) throw new MalformedMessageError('integer beyond 2^53');
    return hi * TWO_32 + lo;
  }

  pos(): number {
    return this.u64() - 1;
  }

  bool(): boolean {
    const v = this.u8();
    if (v > 1) throw new MalformedMessageError(`bad boolean ${v}`);
    return v === 1;
  }

  str(): string {
    this.need(2);
    const length = this.buf.readUInt16LE(this.at);
    this.at += 2;
    this.need(length);
    const v = this.buf.toString('utf8', this.at, this.at + length);
    this.at += length;
    return v;
  }

  list(): number[] {
    const count = this.u32();
    if (count > MAX_LIST) throw new MalformedMessageError('list too long');
    this.need(count * 8);
    return Array.from({ length: count }, () => this.u64());
  }

  end(): void {
    if (this.at !== this.buf.length) throw new MalformedMessageError('trailing bytes');
  }
}

function writeHandles(w: Writer, handles: RegionHandle[]): void {
  w.list(handles.flatMap((h) => [h.regionKey, h.bytes]));
}

function readHandles(r: Reader): RegionHandle[] {
  const flat = r.list();
  if (flat.length % 2 !== 0) throw new MalformedMessageError('odd region handle list');
  const out: RegionHandle[] = [];
  for (let i = 0; i < flat.length; i += 2) out.push({ regionKey: flat[i]!, bytes: flat[i + 1]! });
  return out;
}

function readPairs(r: Reader): [number, number][] {
  const flat = r.list();
  if (flat.length % 2 !== 0) throw new MalformedMessageError('odd pair list');
  const out: [number, number][] = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
}

export function encodeMessage(message: ReplicationMessage): Buffer {
  const w = new Writer();
  w.u8(TYPE_CODES[message.type]);
  w.str(message.regionId);
  w.u64(message.epoch);
  switch (message.type) {
    case 'OpenBackup':
      w.str(message.primaryNodeId);
      w.u64(message.segmentBytes);
      w.u32(message.logBufferCount);
      w.u8(MODES.indexOf(message.mode));
      w.u64(message.fromSegmentSeq);
      w.str(message.rebaseFrom);
      break;
    case 'BackupReady':
      writeHandles(w, message.logBuffers);
      writeHandles(w, message.indexBuffers);
      w.pos(message.persistedThrough);
      w.u64(message.lastCompactionId);
      w.str(message.mapOwner);
      break;
    case 'SegmentSealed':
      w.u64(message.seq);
      w.u64(message.primarySegment);
      w.u64(message.usedBytes);
      w.u32(message.crc32c);
      w.u8(message.partial ? 1 : 0);
      break;
    case 'SegmentPersisted':
      w.u64(message.seq);
      w.u64(message.usedBytes);
      w.u8(message.partial ? 1 : 0);
      break;
    case 'IndexSegment':
      w.u64(message.compactionId);
      w.u8(message.dstLevel);
      w.u32(message.ordinal);
      w.u64(message.primarySegment);
      w.u64(message.usedBytes);
      w.u32(message.crc32c);
      w.u8(message.slot);
      break;
    case 'IndexSegmentPersisted':
      w.u64(message.compactionId);
      w.u32(message.ordinal);
      w.u8(message.slot);
      break;
    case 'CompactionCommit':
      w.u64(message.compactionId);
      w.u8(message.srcLevel);
      w.u8(message.dstLevel);
      w.list(message.newSegments);
      w.list(message.removedSegments);
      w.u8(message.trivialMove ? 1 : 0);
      w.u64(message.replayFrom.seq);
      w.u64(message.replayFrom.offset);
      w.u64(message.replayFrom.lsn);
      break;
    case 'CompactionCommitted':
      w.u64(message.compactionId);
      break;
    case 'InstallLevels':
      w.u64(message.compactionId);
      w.u8(message.levels.length);
      for (const level of message.levels) w.list(level);
      w.u64(message.replayFrom.seq);
      w.u64(message.replayFrom.offset);
      w.u64(message.replayFrom.lsn);
      break;
    case 'LevelsInstalled':
      w.u64(message.compactionId);
      break;
    case 'Rebase':
      w.str(message.owner);
      w.str(message.newOwner);
      w.list(message.segments.flat());
      w.list(message.indexMap.flat());
      break;
    case 'Rebased':
      w.u64(message.truncatedSegments);
      break;
    case 'Refused':
      w.u64(message.currentEpoch);
      w.str(message.code);
      w.str(message.reason);
      break;
    case 'CloseRegion':
      break;
  }
  return w.finish();
}

export function decodeMessage(bytes: Uint8Array): ReplicationMessage {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 4 + 1) throw new MalformedMessageError('too short');
  const body = buf.subarray(0, buf.length - 4);
  if (crc32c(body) !== buf.readUInt32LE(buf.length - 4)) throw new MalformedMessageError('crc mismatch');
  const r = new Reader(body);
  const code = r.u8();
  const type = TYPE_NAMES.get(code) as ReplicationMessage['type'] | undefined;
  if (type === undefined) throw new MalformedMessageError(`unknown type ${code}`);
  const regionId = r.str();
  const epoch = r.u64();
  let message: ReplicationMessage;
  switch (type) {
    case 'OpenBackup': {
      const primaryNodeId = r.str();
      const segmentBytes = r.u64();
      const logBufferCount = r.u32();
      const mode = MODES[r.u8()];
      if (mode === undefined) throw new MalformedMessageError('unknown mode');
      const fromSegmentSeq = r.u64();
      const rebaseFrom = r.str();
      message = {
        type,
        regionId,
        epoch,
        primaryNodeId,
        segmentBytes,
        logBufferCount,
        mode,
        fromSegmentSeq,
        rebaseFrom,
      };
      break;
    }
    case 'BackupReady':
      message = {
        type,
        regionId,
        epoch,
        logBuffers: readHandles(r),
        indexBuffers: readHandles(r),
        persistedThrough: r.pos(),
        lastCompactionId: r.u64(),
        mapOwner: r.str(),
      };
      break;
    case 'SegmentSealed':
      message = {
        type,
        regionId,
        epoch,
        seq: r.u64(),
        primarySegment: r.u64(),
        usedBytes: r.u64(),
        crc32c: r.u32(),
        partial: r.bool(),
      };
      break;
    case 'SegmentPersisted':
      message = { type, regionId, epoch, seq: r.u64(), usedBytes: r.u64(), partial: r.bool() };
      break;
    case 'IndexSegment':
      message = {
        type,
        regionId,
        epoch,
        compactionId: r.u64(),
        dstLevel: r.u8(),
        ordinal: r.u32(),
        primarySegment: r.u64(),
        usedBytes: r.u64(),
        crc32c: r.u32(),
        slot: r.u8(),
      };
      break;
    case 'IndexSegmentPersisted':
      message = { type, regionId, epoch, compactionId: r.u64(), ordinal: r.u32(), slot: r.u8() };
      break;
    case 'CompactionCommit':
      message = {
        type,
        regionId,
        epoch,
        compactionId: r.u64(),
        srcLevel: r.u8(),
        dstLevel: r.u8(),
        newSegments: r.list(),
        removedSegments: r.list(),
        trivialMove: r.bool(),
        replayFrom: { seq: r.u64(), offset: r.u64(), lsn: r.u64() },
      };
      break;
    case 'CompactionCommitted':
      message = { type, regionId, epoch, compactionId: r.u64() };
      break;
    case 'InstallLevels': {
      const compactionId = r.u64();
      const count = r.u8();
      const levels: number[][] = [];
      for (let i = 0; i < count; i++) levels.push(r.list());
      const replayFrom = { seq: r.u64(), offset: r.u64(), lsn: r.u64() };
      message = { type, regionId, epoch, compactionId, levels, replayFrom };
      break;
    }
    case 'LevelsInstalled':
      message = { type, regionId, epoch, compactionId: r.u64() };
      break;
    case 'Rebase': {
      const owner = r.str();
      const newOwner = r.str();
      message = { type, regionId, epoch, owner, newOwner, segments: readPairs(r), indexMap: readPairs(r) };
      break;
    }
    case 'Rebased':
      message = { type, regionId, epoch, truncatedSegments: r.u64() };
      break;
    case 'Refused':
      message = { type, regionId, epoch, currentEpoch: r.u64(), code: r.str(), reason: r.str() };
      break;
    case 'CloseRegion':
      message = { type, regionId, epoch };
      break;
  }
  r.end();
  return message;
}
