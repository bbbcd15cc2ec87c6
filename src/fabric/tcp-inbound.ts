/**
 * The receiving half of a TCP fabric connection: a streaming parser of the frames tcp-wire.ts
 * describes, fed the socket's chunks as they arrive.
 *
 * Placement without an intermediate copy: a write's header is parsed (gathered across chunks when
 * it straddles them, a few bytes), its region and bounds checked, and then every chunk's slice of
 * its payload is copied straight into the registered region at the right offset — the frame is
 * never assembled. No protocol code runs on receipt of a write.
 *
 * Checks, per write: the region exists and is not revoked (else REVOKED), the write fits in it
 * (else OUT_OF_BOUNDS, nothing placed); a region revoked while a write's bytes are still arriving
 * gets no more of them (REVOKED; a prefix may have landed, as an RDMA write cut by a deregistered
 * MR). Once a write of a group is refused, the group's later writes are skipped. When a group ends
 * (the next op is not its WRITE_NEXT, or the frame ends) its outcome is recorded; when a frame ends
 * the sink gets one acknowledgement for every group it completed.
 *
 * A stream that violates the format (an unknown type or op, an op crossing its frame's end, a
 * WRITE_NEXT opening a frame) is malformed: nothing past it can be parsed, the sink is told once
 * and the parser stops.
 */
import { assert } from '../assert.js';
import {
  ACK_FAILURE_BYTES,
  ACK_HEADER_BYTES,
  FRAME_BATCH,
  FRAME_CLOSE,
  FRAME_HEADER_BYTES,
  type GroupFailure,
  MESSAGE_BYTES_MAX,
  MESSAGE_HEADER_BYTES,
  OP_ACK,
  OP_MESSAGE,
  OP_WRITE_FIRST,
  OP_WRITE_NEXT,
  STATUS_OUT_OF_BOUNDS,
  STATUS_REVOKED,
  WRITE_HEADER_BYTES,
} from './tcp-wire.js';

/** What a region looks like to the parser (the endpoint's FabricRegion). */
export interface PlacementRegion {
  readonly bytes: Uint8Array;
  readonly revoked: boolean;
}

export interface InboundSink {
  region(regionKey: number): PlacementRegion | undefined;
  message(bytes: Uint8Array): void;
  /** The peer acknowledged its receipt of our groups through `throughGroup`. */
  acknowledged(throughGroup: number, failures: GroupFailure[]): void;
  /** Our receipt of the peer's groups through `throughGroup`, to acknowledge. */
  completed(throughGroup: number, failures: GroupFailure[]): void;
  closedByPeer(): void;
  malformed(reason: string): void;
  /** False once the connection closed: parsing stops. */
  readonly open: boolean;
}

type State = 'frame' | 'op' | 'ackFailures' | 'writeBytes' | 'messageBytes' | 'dead';

export class InboundStream {
  private state: State = 'frame';
  /** Header bytes gathered across chunks. */
  private gathered = Buffer.allocUnsafe(64);
  private gatheredBytes = 0;
  private frameRemaining = 0;
  // The group being received.
  private groupOpen = false;
  private groupSeq = 0;
  private groupFailure: GroupFailure | undefined;
  private groupWriteIndex = 0;
  private groupsDoneInFrame = false;
  private failures: GroupFailure[] = [];
  // The write whose bytes are arriving.
  private writeRegion: PlacementRegion | undefined;
  private writeAt = 0;
  private writeRemaining = 0;
  // The message whose bytes are arriving, or the ACK whose failures are.
  private message: Uint8Array = new Uint8Array(0);
  private messageFilled = 0;
  private ackThrough = 0;
  private ackFailureCount = 0;

  constructor(private readonly sink: InboundSink) {}

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length || (this.state === 'op' && this.frameRemaining === 0)) {
      if (!this.sink.open || this.state === 'dead') return;
      switch (this.state) {
        case 'frame': {
          const h = this.gather(chunk, at, FRAME_HEADER_BYTES);
          at = h.at;
          if (h.bytes === undefined) return;
          this.startFrame(h.bytes.readUInt32LE(0), h.bytes[4]!);
          break;
        }
        case 'op':
          at = this.op(chunk, at);
          break;
        case 'ackFailures': {
          const h = this.gather(chunk, at, this.ackFailureCount * ACK_FAILURE_BYTES);
          at = h.at;
          if (h.bytes === undefined) return;
          this.deliverAck(h.bytes);
          break;
        }
        case 'writeBytes':
          at = this.writeBytes(chunk, at);
          break;
        case 'messageBytes':
          at = this.messageBytes(chunk, at);
          break;
        default:
          return;
      }
    }
  }

  private startFrame(length: number, type: number): void {
    if (type === FRAME_CLOSE && length === 1) {
      this.state = 'dead';
      this.sink.closedByPeer();
      return;
    }
    if (type !== FRAME_BATCH || length < 1) {
      this.fail(`frame of type ${type}, ${length} bytes`);
      return;
    }
    this.frameRemaining = length - 1;
    this.state = 'op';
  }

  /** Parses the next op header (or ends the frame); returns where the chunk continues. */
  private op(chunk: Buffer, at: number): number {
    if (this.frameRemaining === 0) {
      this.endFrame();
      return at;
    }
    const kind = this.gatheredBytes > 0 ? this.gathered[0]! : chunk[at]!;
    const size =
      kind === OP_WRITE_FIRST || kind === OP_WRITE_NEXT
        ? WRITE_HEADER_BYTES
        : kind === OP_MESSAGE
          ? MESSAGE_HEADER_BYTES
          : kind === OP_ACK
            ? ACK_HEADER_BYTES
            : 0;
    if (size === 0) {
      this.fail(`unknown op ${kind}`);
      return chunk.length;
    }
    if (size > this.frameRemaining) {
      this.fail(`op ${kind} crosses its frame's end`);
      return chunk.length;
    }
    const h = this.gather(chunk, at, size);
    if (h.bytes === undefined) return h.at;
    this.frameRemaining -= size;
    const header = h.bytes;
    if (kind === OP_WRITE_FIRST || kind === OP_WRITE_NEXT) {
      const offset = header.readUInt32LE(5) + header.readUInt32LE(9) * 2 ** 32;
      this.startWrite(kind, header.readUInt32LE(1), offset, header.readUInt32LE(13));
    } else {
      this.endGroup();
      if (kind === OP_MESSAGE) this.startMessage(header.readUInt32LE(1));
      else this.startAck(header.readUInt32LE(1), header.readUInt32LE(5));
    }
    return h.at;
  }

  private startWrite(kind: number, regionKey: number, offset: number, length: number): void {
    if (length > this.frameRemaining) {
      this.fail(`write of ${length} bytes crosses its frame's end`);
      return;
    }
    if (kind === OP_WRITE_FIRST) {
      this.endGroup();
      this.groupOpen = true;
      this.groupSeq = (this.groupSeq + 1) >>> 0;
      this.groupFailure = undefined;
      this.groupWriteIndex = 0;
    } else {
      if (!this.groupOpen) {
        this.fail('WRITE_NEXT without a group');
        return;
      }
      this.groupWriteIndex += 1;
    }
    this.writeRemaining = length;
    this.writeAt = offset;
    this.writeRegion = undefined;
    this.state = 'writeBytes';
    if (this.groupFailure !== undefined) return; // the group already failed: skip its bytes
    const region = this.sink.region(regionKey);
    if (region === undefined || region.revoked) this.refuse(STATUS_REVOKED);
    else if (offset + length > region.bytes.length) this.refuse(STATUS_OUT_OF_BOUNDS);
    else this.writeRegion = region;
    if (length === 0) this.state = 'op';
  }

  /** Places (or skips) the part of the current write's payload this chunk holds. */
  private writeBytes(chunk: Buffer, at: number): number {
    const n = Math.min(this.writeRemaining, chunk.length - at);
    const region = this.writeRegion;
    if (region !== undefined) {
      if (region.revoked) {
        this.writeRegion = undefined;
        this.refuse(STATUS_REVOKED);
      } else {
        // Straight from the socket's chunk into the registered memory.
        region.bytes.set(chunk.subarray(at, at + n), this.writeAt);
        this.writeAt += n;
      }
    }
    this.writeRemaining -= n;
    this.frameRemaining -= n;
    if (this.writeRemaining === 0) this.state = 'op';
    return at + n;
  }

  private refuse(status: GroupFailure['status']): void {
    this.groupFailure ??= { group: this.groupSeq, status, write: this.groupWriteIndex };
  }

  private endGroup(): void {
    if (!this.groupOpen) return;
    this.groupOpen = false;
    this.groupsDoneInFrame = true;
    if (this.groupFailure !== undefined) this.failures.push(this.groupFailure);
  }

  private endFrame(): void {
    this.endGroup();
    this.state = 'frame';
    if (!this.groupsDoneInFrame) return;
    this.groupsDoneInFrame = false;
    const failures = this.failures;
    this.failures = [];
    this.sink.completed(this.groupSeq, failures);
  }

  private startMessage(length: number): void {
    if (length > this.frameRemaining || length > MESSAGE_BYTES_MAX) {
      this.fail(`message of ${length} bytes`);
      return;
    }
    this.message = new Uint8Array(length);
    this.messageFilled = 0;
    this.state = 'messageBytes';
    if (length === 0) this.deliverMessage();
  }

  private messageBytes(chunk: Buffer, at: number): number {
    const n = Math.min(this.message.length - this.messageFilled, chunk.length - at);
    this.message.set(chunk.subarray(at, at + n), this.messageFilled);
    this.messageFilled += n;
    this.frameRemaining -= n;
    if (this.messageFilled === this.message.length) this.deliverMessage();
    return at + n;
  }

  private deliverMessage(): void {
    const message = this.message;
    this.state = 'op';
    this.sink.message(message);
  }

  private startAck(throughGroup: number, failureCount: number): void {
    if (failureCount * ACK_FAILURE_BYTES > this.frameRemaining) {
      this.fail(`ack of ${failureCount} failures crosses its frame's end`);
      return;
    }
    this.ackThrough = throughGroup;
    this.ackFailureCount = failureCount;
    if (failureCount === 0) {
      this.state = 'op';
      this.sink.acknowledged(throughGroup, []);
    } else this.state = 'ackFailures';
  }

  private deliverAck(bytes: Buffer): void {
    const failures: GroupFailure[] = [];
    for (let at = 0; at < bytes.length; at += ACK_FAILURE_BYTES) {
      const status = bytes[at + 4]!;
      if (status !== STATUS_REVOKED && status !== STATUS_OUT_OF_BOUNDS) {
        this.fail(`ack status ${status}`);
        return;
      }
      failures.push({ group: bytes.readUInt32LE(at), status, write: bytes.readUInt32LE(at + 5) });
    }
    this.frameRemaining -= bytes.length;
    this.state = 'op';
    this.sink.acknowledged(this.ackThrough, failures);
  }

  /**
   * `size` header bytes starting at `chunk[at]`: a view of the chunk when they are all there, else
   * gathered across calls (undefined until complete). Returns where the chunk continues.
   */
  private gather(chunk: Buffer, at: number, size: number): { bytes: Buffer | undefined; at: number } {
    if (this.gatheredBytes === 0 && chunk.length - at >= size) {
      return { bytes: chunk.subarray(at, at + size), at: at + size };
    }
    if (this.gathered.length < size) {
      const bigger = Buffer.allocUnsafe(size);
      this.gathered.copy(bigger, 0, 0, this.gatheredBytes);
      this.gathered = bigger;
    }
    const n = Math.min(size - this.gatheredBytes, chunk.length - at);
    chunk.copy(this.gathered, this.gatheredBytes, at, at + n);
    this.gatheredBytes += n;
    if (this.gatheredBytes < size) return { bytes: undefined, at: at + n };
    assert(this.gatheredBytes === size, 'gathered exactly one header');
    this.gatheredBytes = 0;
    return { bytes: this.gathered.subarray(0, size), at: at + n };
  }

  private fail(reason: string): void {
    this.state = 'dead';
    this.sink.malformed(reason);
  }
}
