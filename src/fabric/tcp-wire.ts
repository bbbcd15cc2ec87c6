/**
 * The TCP fabric's wire format after the handshake (the handshake's frames are socket-frames.ts'):
 *
 *   frame   u32 length | u8 type | body            (length counts type and body)
 *   BATCH   body = op*, the operations one side issued in one tick, in issue order
 *   CLOSE   no body: the peer closed on purpose
 *
 *   op WRITE_FIRST  u8 | regionKey u32 | offset u64 (lo u32, hi u32) | length u32 | bytes
 *   op WRITE_NEXT   the same; continues the group the previous op opened (same region)
 *   op MESSAGE      u8 | length u32 | bytes
 *   op ACK          u8 | throughGroup u32 | failureCount u32 | failureCount × (group u32 | status u8 | write u32)
 *
 * Groups. Consecutive writes into one region issued in one tick form a group (WRITE_FIRST then
 * WRITE_NEXTs, never across a frame or another op). The writer resolves or rejects a group's writes
 * together — one promise per group — and groups are numbered 1, 2, … per direction (mod 2^32) by
 * both ends, so no id travels: an ACK says "every group through `throughGroup` is done" and lists
 * the refused ones (status REVOKED or OUT_OF_BOUNDS and the index of the first refused write).
 */
import { FIRST_FABRIC_FRAME } from './socket-frames.js';

// Frames 1–4 are the handshake's (socket-frames.ts).
export const FRAME_BATCH = FIRST_FABRIC_FRAME;
export const FRAME_CLOSE = FIRST_FABRIC_FRAME + 1;

export const OP_WRITE_FIRST = 1;
export const OP_WRITE_NEXT = 2;
export const OP_MESSAGE = 3;
export const OP_ACK = 4;

export const WRITE_HEADER_BYTES = 17;
export const MESSAGE_HEADER_BYTES = 5;
export const ACK_HEADER_BYTES = 9;
export const ACK_FAILURE_BYTES = 9;
export const FRAME_HEADER_BYTES = 5;

export const STATUS_REVOKED = 1;
export const STATUS_OUT_OF_BOUNDS = 2;

/** A refused group, as an ACK reports it. */
export interface GroupFailure {
  group: number;
  status: typeof STATUS_REVOKED | typeof STATUS_OUT_OF_BOUNDS;
  /** Index in the group of the first write refused. */
  write: number;
}

/** Largest control message accepted (a garbage length must not allocate gigabytes). */
export const MESSAGE_BYTES_MAX = 256 * 1024 * 1024;
