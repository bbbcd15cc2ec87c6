/**
 * The memory fabric's copy pool (src/fabric/copy-pool.ts): copies equal their source and are
 * independent of it; memory given back is handed out again (the point: no fresh pages per write);
 * small copies and foreign arrays are never pooled; a copy recycled twice is a bug caught.
 */
import { AssertionFailedError } from '../../src/errors.js';
import { CopyPool, POOL_MIN_BYTES } from '../../src/fabric/copy-pool.js';

describe('CopyPool', () => {
  test('a copy equals its source and does not follow it', () => {
    const pool = new CopyPool();
    const source = Buffer.alloc(POOL_MIN_BYTES + 5, 3);
    const copy = pool.copy(source);
    expect(copy.length).toBe(source.length);
    source.fill(9);
    expect(copy.every((b) => b === 3)).toBe(true);
  });

  test('memory given back is reused for the next copy of its size class, not before', () => {
    const pool = new CopyPool();
    const first = pool.copy(Buffer.alloc(POOL_MIN_BYTES * 3, 1));
    const second = pool.copy(Buffer.alloc(POOL_MIN_BYTES * 3, 2));
    expect(second.buffer).not.toBe(first.buffer); // first still in use
    pool.recycle(first);
    const third = pool.copy(Buffer.alloc(POOL_MIN_BYTES * 4, 5)); // same class (4 × 64 KiB)
    expect(third.buffer).toBe(first.buffer);
    expect(third.every((b) => b === 5)).toBe(true);
    expect(second.every((b) => b === 2)).toBe(true);
  });

  test('small copies and arrays the pool did not make are not pooled; recycling twice is caught', () => {
    const pool = new CopyPool();
    const small = pool.copy(Buffer.alloc(100, 1));
    pool.recycle(small);
    expect(pool.copy(Buffer.alloc(100, 2)).buffer).not.toBe(small.buffer);
    const foreign = new Uint8Array(POOL_MIN_BYTES * 3).subarray(0, POOL_MIN_BYTES * 2);
    pool.recycle(foreign); // capacity is not its size class: ignored
    expect(pool.copy(Buffer.alloc(POOL_MIN_BYTES * 2)).buffer).not.toBe(foreign.buffer);
    const copy = pool.copy(Buffer.alloc(POOL_MIN_BYTES * 2));
    pool.recycle(copy);
    expect(() => pool.recycle(copy)).toThrow(AssertionFailedError);
  });
});
