/**
 * The transfer contract (src/fabric/transfer.ts): what `transferBytes` does to the caller's view
 * (a whole ArrayBuffer is detached; a slice, a small view or a pooled Buffer is copied and left
 * alone), that nothing the caller does to its view afterwards reaches the transferred bytes, and
 * that views derived from TransferredBytes promise nothing (plain Uint8Arrays).
 */
import { InvalidArgumentError } from '../../src/errors.js';
import { TRANSFER_MIN_BYTES, TransferredBytes, transferBytes } from '../../src/fabric/transfer.js';

describe('transferBytes', () => {
  test('a view spanning a whole ArrayBuffer is transferred: the view (and every view of it) becomes empty', () => {
    const view = Buffer.alloc(TRANSFER_MIN_BYTES * 2, 7);
    const other = new Uint8Array(view.buffer, 10, 10);
    const moved = transferBytes(view);
    expect(moved).toBeInstanceOf(TransferredBytes);
    expect(moved.length).toBe(TRANSFER_MIN_BYTES * 2);
    expect(moved.every((b) => b === 7)).toBe(true);
    expect(view.length).toBe(0);
    expect(other.length).toBe(0);
    // The view has no bytes left: an index write is ignored, a method that writes throws; neither
    // reaches the transferred bytes.
    view[0] = 1;
    expect(view[0]).toBeUndefined();
    expect(() => view.fill(1)).toThrow(/detached/);
    expect(moved[0]).toBe(7);
  });

  test('a slice, a small view and a pooled Buffer are copied once and left as they were', () => {
    const big = Buffer.alloc(TRANSFER_MIN_BYTES * 4, 3);
    const slice = big.subarray(8, 8 + TRANSFER_MIN_BYTES);
    const small = new Uint8Array(16).fill(4);
    const pooled = Buffer.from('pooled bytes');
    for (const [view, value] of [
      [slice, 3],
      [small, 4],
      [pooled, pooled[0]!],
    ] as const) {
      const length = view.length;
      const copied = transferBytes(view);
      expect(copied).toBeInstanceOf(TransferredBytes);
      expect(view.length).toBe(length);
      expect(copied.length).toBe(length);
      expect(copied[0]).toBe(value);
      // The caller reuses its view: the copy keeps the bytes posted.
      view.fill(0xee);
      expect(copied[0]).toBe(value);
    }
    expect(big.length).toBe(TRANSFER_MIN_BYTES * 4);
  });

  test('TransferredBytes are returned as they are; copyOf copies; derived views are plain Uint8Arrays', () => {
    const once = transferBytes(Buffer.alloc(TRANSFER_MIN_BYTES));
    expect(transferBytes(once)).toBe(once);
    const source = Buffer.from([1, 2, 3]);
    const copy = TransferredBytes.copyOf(source);
    source[0] = 9;
    expect([...copy]).toEqual([1, 2, 3]);
    expect(copy.subarray(1)).not.toBeInstanceOf(TransferredBytes);
    expect(copy.slice(1)).not.toBeInstanceOf(TransferredBytes);
    expect(copy.subarray(1)).toBeInstanceOf(Uint8Array);
  });

  test('TransferredBytes cannot be constructed around memory someone else holds', () => {
    const Ctor = TransferredBytes as unknown as new (token: symbol, memory: ArrayBuffer) => Uint8Array;
    expect(() => new Ctor(Symbol('TransferredBytes'), new ArrayBuffer(8))).toThrow(InvalidArgumentError);
  });
});
