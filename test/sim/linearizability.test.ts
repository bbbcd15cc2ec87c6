import { checkRegister, type RegisterOp } from '../../src/sim/linearizability.js';

const w = (value: string | undefined, call: number, ret: number): RegisterOp => ({
  kind: 'write',
  value,
  call,
  ret,
});
const r = (value: string | undefined, call: number, ret: number): RegisterOp => ({
  kind: 'read',
  value,
  call,
  ret,
});
const UNKNOWN = Number.POSITIVE_INFINITY;

describe('checkRegister (per-key linearizability)', () => {
  test('sequential histories: a read must see the latest write', () => {
    expect(checkRegister([w('a', 0, 1), r('a', 2, 3)], undefined)).toBe('ok');
    expect(checkRegister([w('a', 0, 1), w('b', 2, 3), r('a', 4, 5)], undefined)).toBe('violation');
    expect(checkRegister([r(undefined, 0, 1), w('a', 2, 3)], undefined)).toBe('ok');
    expect(checkRegister([r('a', 0, 1), w('a', 2, 3)], undefined)).toBe('violation'); // read from the future
  });

  test('concurrent operations may take effect in either order', () => {
    // The read overlaps the write: old or new value are both fine.
    expect(checkRegister([w('a', 0, 1), w('b', 2, 5), r('a', 3, 4)], undefined)).toBe('ok');
    expect(checkRegister([w('a', 0, 1), w('b', 2, 5), r('b', 3, 4)], undefined)).toBe('ok');
    // Two reads in a row cannot see new then old (no going back).
    expect(checkRegister([w('a', 0, 1), w('b', 2, 9), r('b', 3, 4), r('a', 5, 6)], undefined)).toBe(
      'violation',
    );
  });

  test('a write of unknown outcome may take effect late, or never', () => {
    expect(checkRegister([w('a', 0, UNKNOWN), r(undefined, 1, 2)], undefined)).toBe('ok');
    expect(checkRegister([w('a', 0, UNKNOWN), r(undefined, 1, 2), r('a', 3, 4)], undefined)).toBe('ok');
    expect(checkRegister([w('a', 0, UNKNOWN), r('a', 1, 2), r(undefined, 3, 4)], undefined)).toBe(
      'violation',
    );
  });

  test('a search past its budget answers unknown, never ok', () => {
    const ops: RegisterOp[] = Array.from({ length: 14 }, (_, i) => w(`v${i}`, 0, 100));
    ops.push(r('nothing-wrote-this', 101, 102));
    expect(checkRegister(ops, undefined, 50)).toBe('unknown');
  });
});
