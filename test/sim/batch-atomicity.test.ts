/**
 * The batch atomicity checker (src/sim/batch-atomicity.ts) on hand-made histories: a batch whose
 * keys read its values — all, or some with the rest overwritten by writes that could come after
 * it — passes; a batch that shows on one key while another key still holds what was there before
 * it, or is absent with no delete to explain it, is reported as applied in part. And the simulator
 * issues batches: a run's history has them, and they pass every checker.
 */
import { type BatchHistoryEntry, batchAtomicity } from '../../src/sim/batch-atomicity.js';
import { runSchedule } from '../../src/sim/check.js';

const put = (key: string, value: string, call: number, ret: number, batch?: number): BatchHistoryEntry => ({
  client: 0,
  op: 'put',
  key,
  value,
  call,
  ret,
  outcome: 'ok',
  ...(batch === undefined ? {} : { batch }),
});
const final = (key: string, value: string | undefined): BatchHistoryEntry => ({
  client: -1,
  op: 'get',
  key,
  value,
  call: 100,
  ret: 101,
  outcome: 'ok',
});

describe('batchAtomicity', () => {
  const batch = [put('a', 'A1', 10, 11, 7), put('b', 'B1', 10, 11, 7)];

  test('a batch wholly visible, or wholly overwritten, passes', () => {
    expect(batchAtomicity([...batch, final('a', 'A1'), final('b', 'B1')])).toEqual([]);
    expect(
      batchAtomicity([
        ...batch,
        put('a', 'A2', 20, 21),
        put('b', 'B2', 20, 21),
        final('a', 'A2'),
        final('b', 'B2'),
      ]),
    ).toEqual([]);
  });

  test('a key overwritten after the batch (or by a write of unknown outcome) passes', () => {
    expect(batchAtomicity([...batch, put('b', 'B2', 12, 13), final('a', 'A1'), final('b', 'B2')])).toEqual(
      [],
    );
    const unknownDelete: BatchHistoryEntry = {
      client: 1,
      op: 'delete',
      key: 'b',
      value: undefined,
      call: 5,
      ret: Number.POSITIVE_INFINITY,
      outcome: 'info',
    };
    expect(batchAtomicity([...batch, unknownDelete, final('a', 'A1'), final('b', undefined)])).toEqual([]);
  });

  test('a batch visible on one key while another holds an older value, or nothing, is torn', () => {
    const older = put('b', 'B0', 1, 2);
    expect(batchAtomicity([older, ...batch, final('a', 'A1'), final('b', 'B0')])).toEqual([
      expect.stringMatching(/^batch atomicity: batch 7 \(a, b\) applied in part: b reads "B0"/),
    ]);
    expect(batchAtomicity([...batch, final('a', 'A1'), final('b', undefined)])).toEqual([
      expect.stringMatching(/applied in part: b reads absent/),
    ]);
    // Unknown outcome: all or nothing still.
    const unknown = batch.map((e) => ({ ...e, outcome: 'info' as const, ret: Number.POSITIVE_INFINITY }));
    expect(batchAtomicity([...unknown, final('a', 'A1'), final('b', undefined)])).toHaveLength(1);
    expect(batchAtomicity([...unknown, final('a', undefined), final('b', undefined)])).toEqual([]);
  });
});

test('the simulator issues atomic batches and they pass every checker', async () => {
  let batches = 0;
  for (let seed = 1; seed <= 6; seed++) {
    const result = await runSchedule({ seed, ops: 80, faults: 2 });
    expect(result.violations).toEqual([]);
    batches += new Set(result.history.filter((e) => e.batch !== undefined).map((e) => e.batch)).size;
  }
  expect(batches).toBeGreaterThan(5);
});
