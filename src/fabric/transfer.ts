/**
 * Transferred bytes: how a caller hands a one-sided write's payload to a fabric without the
 * fabric copying it (issue 16 item 2).
 *
 * The Fabric contract (types.ts) lets the caller reuse its buffer as soon as `write` returns, so a
 * fabric that cannot place the bytes at once has to copy them at issue (memory: until its pump
 * delivers the write; tcp: until the socket took them). A `TransferredBytes` removes that copy by
 * moving the guarantee from the fabric to the type: it is memory nobody but the fabrics can change.
 *
 * Contract.
 * - `transferBytes(view)` takes `view`'s memory. When `view` spans the whole of a transferable
 *   ArrayBuffer of at least `TRANSFER_MIN_BYTES`, the ArrayBuffer is transferred (detached: O(1))
 *   and `view`, and every other view of that ArrayBuffer, becomes empty: length 0, an index
 *   write is ignored, a method that writes (`fill`, `set`, `copy`) throws TypeError. Otherwise —
 *   a slice of a larger buffer (Buffer's 8 KiB pool, a subarray), a SharedArrayBuffer, a small
 *   view where a copy costs less than a transfer — the bytes are copied once, and `view` is left
 *   as it was, the caller's to reuse. Either way nothing the caller does with `view` afterwards
 *   reaches the returned bytes: that is the conformance suite's "the caller may reuse its buffer
 *   at once", kept by construction instead of by a copy per write. (What the caller may not do
 *   is count on `view` still holding the payload; a detached view posted again is an empty
 *   write.)
 * - `TransferredBytes.copyOf(view)` copies once into new memory (for a caller that builds the
 *   payload anyway, such as a group's tail cut from the log buffer).
 * - The returned `TransferredBytes` is a Uint8Array, immutable by contract: the holder may read it
 *   and post it any number of times, to any connections (each write carries the same bytes; a
 *   group replicated to two backups is posted twice and copied by neither fabric), but must never
 *   write into it — a fabric may still be reading it for a write not yet placed. Views derived from
 *   it (`subarray`, `slice`) are plain Uint8Arrays, which fabrics copy at issue as always.
 * - A fabric that sees a TransferredBytes may keep a reference until the write completes instead
 *   of copying; a fabric that does not know the type (rdma copies into staging) treats it as any
 *   Uint8Array. Both satisfy the contract.
 */
import { assert } from '../assert.js';
import { InvalidArgumentError } from '../errors.js';

/**
 * Below this many bytes `transferBytes` copies: a structured-clone transfer costs a few µs on this
 * VM (measured in bench/fabric), about what copying 64 KiB costs.
 */
export const TRANSFER_MIN_BYTES = 64 * 1024;

const CONSTRUCTING = Symbol('TransferredBytes');

export class TransferredBytes extends Uint8Array {
  /** Derived views (subarray, slice, map) are plain Uint8Arrays: they promise nothing. */
  static get [Symbol.species](): Uint8ArrayConstructor {
    return Uint8Array;
  }

  /** @internal Use `transferBytes` or `TransferredBytes.copyOf`. */
  constructor(token: typeof CONSTRUCTING, memory: ArrayBuffer) {
    if (token !== CONSTRUCTING) {
      throw new InvalidArgumentError('TransferredBytes are made by transferBytes or TransferredBytes.copyOf');
    }
    super(memory);
  }

  /** New memory holding a copy of `view` (one copy, then none per write). */
  static copyOf(view: Uint8Array): TransferredBytes {
    const memory = new ArrayBuffer(view.byteLength);
    new Uint8Array(memory).set(view);
    return make(memory);
  }
}

function make(memory: ArrayBuffer): TransferredBytes {
  return new TransferredBytes(CONSTRUCTING, memory);
}

/**
 * Takes `view`'s memory for the fabric (see the header): transferred when `view` is the whole of
 * a transferable ArrayBuffer (then `view` is empty), else copied once (then `view` is unchanged).
 */
export function transferBytes(view: Uint8Array): TransferredBytes {
  if (view instanceof TransferredBytes) return view;
  const memory = view.buffer;
  const whole =
    memory instanceof ArrayBuffer &&
    view.byteOffset === 0 &&
    view.byteLength === memory.byteLength &&
    view.byteLength >= TRANSFER_MIN_BYTES;
  if (!whole) return TransferredBytes.copyOf(view);
  const length = view.byteLength;
  const moved = structuredClone(memory, { transfer: [memory] });
  // Node marks some ArrayBuffers untransferable (its Buffer pool): the clone is then a copy and
  // the source stays attached, which is still sound (the copy is ours alone).
  assert(moved.byteLength === length, 'a transferred buffer keeps its length');
  return make(moved);
}
