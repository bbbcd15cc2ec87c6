/**
 * The sending half of a TCP fabric connection: operations issued during one tick are appended to
 * one BATCH frame (tcp-wire.ts) and the frames go to the socket together once per tick (a
 * setImmediate after the first operation), as one `writev` (socket cork/uncork) or, with
 * `coalesce: 'concat'`, as one Buffer — bench:fabric measures both.
 *
 * Bytes. Operation headers, messages and plain-Uint8Array payloads are copied into a scratch
 * buffer as they are issued (the caller may reuse its buffer at once; consecutive small operations
 * share one contiguous piece of the writev). A `TransferredBytes` payload (transfer.ts) of at least
 * `REFERENCE_MIN_BYTES` is not copied: the frame references it and the kernel copies it from there.
 * Scratch memory handed to the socket is never written again (later operations go after it, or
 * into a new scratch buffer).
 *
 * Groups. A write into the region of the group the previous operation opened continues it
 * (WRITE_NEXT); anything else — another region, a message, an ack, a new frame, a flush — ends
 * the group. `write` says which, so the connection keeps one promise per group.
 *
 * Back-pressure: while the socket buffers more than `highWaterBytes`, frames wait (and keep
 * growing, up to `FRAME_BYTES_MAX` each) until 'drain'.
 */
import type { Socket } from 'node:net';
import { assert } from '../assert.js';
import {
  ACK_FAILURE_BYTES,
  ACK_HEADER_BYTES,
  FRAME_BATCH,
  FRAME_HEADER_BYTES,
  type GroupFailure,
  MESSAGE_HEADER_BYTES,
  OP_ACK,
  OP_MESSAGE,
  OP_WRITE_FIRST,
  OP_WRITE_NEXT,
  WRITE_HEADER_BYTES,
} from './tcp-wire.js';
import { TransferredBytes } from './transfer.js';

/** A frame is closed once it holds this many bytes (a single larger write gets a frame of its own). */
export const FRAME_BYTES_MAX = 16 * 1024 * 1024;
/** Transferred payloads at least this large are referenced by the frame, smaller ones copied. */
export const REFERENCE_MIN_BYTES = 4 * 1024;
const SCRATCH_BYTES = 256 * 1024;

export type Coalesce = 'writev' | 'concat';

interface PendingFrame {
  pieces: Uint8Array[];
  bodyBytes: number;
}

export class OutboundBatch {
  private frames: PendingFrame[] = [];
  private scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
  private scratchUsed = 0;
  /** Start of the scratch bytes not yet attached to a frame as a piece. */
  private runStart = 0;
  /** Region of the group the last operation opened or continued; undefined once it ended. */
  private openGroupRegion: number | undefined;
  private scheduled = false;
  private blocked = false;
  private discarded = false;

  constructor(
    private readonly socket: Socket,
    private readonly highWaterBytes: number,
    private readonly coalesce: Coalesce = 'writev',
  ) {
    socket.on('drain', () => {
      this.blocked = false;
      this.flush();
    });
  }

  /** Appends a write; true when it continues the open group, false when it opened a new one. */
  write(regionKey: number, offset: number, bytes: Uint8Array): boolean {
    const frame = this.frameFor(WRITE_HEADER_BYTES + bytes.length);
    const continues = this.openGroupRegion === regionKey;
    const h = this.reserve(WRITE_HEADER_BYTES);
    const at = h.offset;
    h.buffer[at] = continues ? OP_WRITE_NEXT : OP_WRITE_FIRST;
    h.buffer.writeUInt32LE(regionKey, at + 1);
    h.buffer.writeUInt32LE(offset % 2 ** 32, at + 5);
    h.buffer.writeUInt32LE(Math.floor(offset / 2 ** 32), at + 9);
    h.buffer.writeUInt32LE(bytes.length, at + 13);
    if (bytes instanceof TransferredBytes && bytes.length >= REFERENCE_MIN_BYTES) {
      this.closeRun();
      frame.pieces.push(bytes);
    } else {
      const p = this.reserve(bytes.length);
      p.buffer.set(bytes, p.offset);
    }
    frame.bodyBytes += WRITE_HEADER_BYTES + bytes.length;
    this.openGroupRegion = regionKey;
    this.schedule();
    return continues;
  }

  /** Appends a control message (copied). */
  message(bytes: Uint8Array): void {
    const frame = this.frameFor(MESSAGE_HEADER_BYTES + bytes.length);
    const h = this.reserve(MESSAGE_HEADER_BYTES + bytes.length);
    h.buffer[h.offset] = OP_MESSAGE;
    h.buffer.writeUInt32LE(bytes.length, h.offset + 1);
    h.buffer.set(bytes, h.offset + MESSAGE_HEADER_BYTES);
    frame.bodyBytes += MESSAGE_HEADER_BYTES + bytes.length;
    this.openGroupRegion = undefined;
    this.schedule();
  }

  /** Appends an acknowledgement of every group through `throughGroup`, with the refused ones. */
  ack(throughGroup: number, failures: readonly GroupFailure[]): void {
    const size = ACK_HEADER_BYTES + failures.length * ACK_FAILURE_BYTES;
    const frame = this.frameFor(size);
    const { buffer, offset } = this.reserve(size);
    buffer[offset] = OP_ACK;
    buffer.writeUInt32LE(throughGroup >>> 0, offset + 1);
    buffer.writeUInt32LE(failures.length, offset + 5);
    let at = offset + ACK_HEADER_BYTES;
    for (const f of failures) {
      buffer.writeUInt32LE(f.group >>> 0, at);
      buffer[at + 4] = f.status;
      buffer.writeUInt32LE(f.write, at + 5);
      at += ACK_FAILURE_BYTES;
    }
    frame.bodyBytes += size;
    this.openGroupRegion = undefined;
    this.schedule();
  }

  /** Hands every pending frame to the socket unless it is above its high-water mark (`force`: even then). */
  flush(force = false): void {
    this.openGroupRegion = undefined;
    if (this.discarded || (this.blocked && !force) || this.frames.length === 0) return;
    this.closeRun();
    const chunks: Uint8Array[] = [];
    for (const frame of this.frames) {
      assert(frame.bodyBytes + 1 < 2 ** 32, 'a frame fits its u32 length');
      const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
      header.writeUInt32LE(frame.bodyBytes + 1, 0);
      header[4] = FRAME_BATCH;
      chunks.push(header, ...frame.pieces);
    }
    this.frames = [];
    if (this.socket.destroyed || !this.socket.writable) return;
    if (this.coalesce === 'concat' || chunks.length === 1) {
      this.socket.write(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    } else {
      this.socket.cork();
      for (const chunk of chunks) this.socket.write(chunk);
      this.socket.uncork();
    }
    if (this.socket.writableLength > this.highWaterBytes) this.blocked = true;
  }

  /** Drops everything not yet flushed and refuses more (the connection is gone). */
  discard(): void {
    this.discarded = true;
    this.frames = [];
  }

  private schedule(): void {
    if (this.scheduled || this.discarded) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  /** The frame the next operation of `opBytes` goes into (a new one when the last is full). */
  private frameFor(opBytes: number): PendingFrame {
    assert(!this.discarded, 'an operation after the connection closed');
    const last = this.frames.at(-1);
    if (last !== undefined && (last.bodyBytes === 0 || last.bodyBytes + opBytes <= FRAME_BYTES_MAX)) {
      return last;
    }
    this.closeRun();
    this.openGroupRegion = undefined; // a group never spans frames
    const frame: PendingFrame = { pieces: [], bodyBytes: 0 };
    this.frames.push(frame);
    return frame;
  }

  /** `bytes` of scratch at the end of the current run (a new scratch buffer when it is full). */
  private reserve(bytes: number): { buffer: Buffer; offset: number } {
    if (this.scratch.length - this.scratchUsed < bytes) {
      this.closeRun();
      this.scratch = Buffer.allocUnsafe(Math.max(SCRATCH_BYTES, bytes));
      this.scratchUsed = 0;
      this.runStart = 0;
    }
    const offset = this.scratchUsed;
    this.scratchUsed += bytes;
    return { buffer: this.scratch, offset };
  }

  /** Attaches the scratch bytes written since the last piece to the current frame. */
  private closeRun(): void {
    if (this.scratchUsed === this.runStart) return;
    const frame = this.frames.at(-1);
    assert(frame !== undefined, 'scratch bytes belong to a frame');
    frame.pieces.push(this.scratch.subarray(this.runStart, this.scratchUsed));
    this.runStart = this.scratchUsed;
  }
}
