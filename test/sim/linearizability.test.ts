import { type HistoryEntry, registerOps } from '../../src/sim/check.js';
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

describe('registerOps (history → register operations, strict about definite failures)', () => {
  const entry = (
    op: HistoryEntry['op'],
    value: string | undefined,
    call: number,
    ret: number,
    outcome: HistoryEntry['outcome'],
  ): HistoryEntry => ({ client: 0, op, key: 'k', value, call, ret, callMs: call, retMs: ret, outcome });

  test('a write reported as failed that is ever observed is a violation (it certainly did not happen)', () => {
    const history = [
      entry('put', 'a', 0, 1, 'ok'),
      entry('put', 'b', 2, 3, 'fail'),
      entry('get', 'b', 4, 5, 'ok'),
    ];
    expect(checkRegister(registerOps(history, 'k'), undefined)).toBe('violation');
    // The same write with an unknown outcome may have happened: no violation.
    const unknown = [
      entry('put', 'a', 0, 1, 'ok'),
      entry('put', 'b', 2, UNKNOWN, 'info'),
      entry('get', 'b', 4, 5, 'ok'),
    ];
    expect(checkRegister(registerOps(unknown, 'k'), undefined)).toBe('ok');
  });

  test('a failed delete that is observed (the key absent) is a violation too', () => {
    const history = [
      entry('put', 'a', 0, 1, 'ok'),
      entry('delete', undefined, 2, 3, 'fail'),
      entry('get', undefined, 4, 5, 'ok'),
    ];
    expect(checkRegister(registerOps(history, 'k'), undefined)).toBe('violation');
  });

  test('a scan is a read of every key in its range, and only of those', () => {
    const scan = (rows: [string, string][], ret: number): HistoryEntry => ({
      ...entry('scan', JSON.stringify(rows), ret - 1, ret, 'ok'),
      key: 'a',
      end: 'm',
    });
    const history = [entry('put', 'v', 0, 1, 'ok'), scan([], 3)];
    expect(checkRegister(registerOps(history, 'k'), undefined)).toBe('violation');
    expect(
      checkRegister(registerOps([entry('put', 'v', 0, 1, 'ok'), scan([['k', 'v']], 3)], 'k'), undefined),
    ).toBe('ok');
    // A key outside the range is not read by the scan.
    expect(registerOps([scan([], 3)], 'z')).toEqual([]);
  });
});
