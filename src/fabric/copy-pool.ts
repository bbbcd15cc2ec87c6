/**
 * Recycled memory for a fabric's copies at issue (the memory fabric copies a plain Uint8Array
 * payload when the write is posted, so the caller may reuse its buffer; transfer.ts spares callers
 * that copy altogether).
 *
 * A fresh 2 MiB array per write costs more than the copy into it: new pages, their faults and
 * zeroing, and the collector's work on external memory (bench:fabric's `memory (copy)` row). The
 * pool keeps a few arrays per power-of-two size class from `POOL_MIN_BYTES` up and hands out views
 * of them; a write gives its copy back once the bytes are placed (or the write failed), when no
 * one else holds it. Smaller copies are plain allocations (V8 makes them cheaply).
 */
import { assert } from '../assert.js';

export const POOL_MIN_BYTES = 64 * 1024;
/** Arrays kept per size class (a window of writes in flight); beyond that a returned copy is left to the collector. */
const KEPT_PER_CLASS = 16;

export class CopyPool {
  private readonly free = new Map<number, Uint8Array[]>();

  /** A copy of `bytes`, in recycled memory when it is large enough. */
  copy(bytes: Uint8Array): Uint8Array {
    if (bytes.length < POOL_MIN_BYTES) return new Uint8Array(bytes);
    const capacity = sizeClass(bytes.length);
    const memory = this.free.get(capacity)?.pop() ?? new Uint8Array(capacity);
    const view = memory.subarray(0, bytes.length);
    view.set(bytes);
    return view;
  }

  /** Gives back a copy `copy` made, once nothing reads it any more (other arrays are ignored). */
  recycle(view: Uint8Array): void {
    if (view.length < POOL_MIN_BYTES || view.byteOffset !== 0) return;
    const capacity = view.buffer.byteLength;
    if (capacity !== sizeClass(view.length)) return;
    let list = this.free.get(capacity);
    if (list === undefined) {
      list = [];
      this.free.set(capacity, list);
    }
    if (list.length >= KEPT_PER_CLASS) return;
    const memory = new Uint8Array(view.buffer);
    assert(!list.includes(memory) && list.every((m) => m.buffer !== view.buffer), 'a copy is recycled once');
    list.push(memory);
  }
}

function sizeClass(bytes: number): number {
  return 2 ** Math.ceil(Math.log2(bytes));
}
