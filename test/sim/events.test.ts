/**
 * The trace checkers (src/sim/events.ts) on hand-made traces: each invariant's violation is
 * reported, and the correct sequences around it are not.
 */
import { TraceChecker } from '../../src/sim/events.js';
import type { TraceEvent } from '../../src/trace.js';

function check(events: TraceEvent[]): string[] {
  const checker = new TraceChecker();
  for (const e of events) checker.record(e);
  return checker.violations();
}

const ack = (node: string, epoch: number, key = 'k'): TraceEvent => ({
  kind: 'ack',
  node,
  regionId: 'r0',
  epoch,
  key,
});
const link = { primary: 'n1', backup: 'n2', regionId: 'r0', epoch: 1 };
const write = (seq: number, buffer: number): TraceEvent => ({ kind: 'log-write', ...link, seq, buffer });
const persisted = (seq: number, partial = false, primarySegment = seq * 4096): TraceEvent => ({
  kind: 'log-persisted',
  ...link,
  seq,
  primarySegment,
  partial,
});

test('§8.4: one acknowledging node per epoch, epochs never decrease', () => {
  expect(check([ack('n1', 1), ack('n1', 1), ack('n2', 2), ack('n2', 3)])).toEqual([]);
  expect(check([ack('n1', 1), ack('n2', 1)])).toEqual([
    expect.stringMatching(/^epochs: .*region r0 epoch 1 has two acknowledging nodes, n1 and n2/),
  ]);
  expect(check([ack('n2', 2), ack('n1', 1, 'late')])).toEqual([
    expect.stringMatching(/^epochs: .*n1 acknowledged "late" of region r0 at epoch 1 after epoch 2/),
  ]);
});

test('§8.4 fencing: nothing is placed in a buffer after its backup fenced it', () => {
  const fenced: TraceEvent = { kind: 'fenced', node: 'n2', regionId: 'r0', epoch: 1, regionKeys: [7, 8] };
  expect(check([{ kind: 'placed', node: 'n2', regionKey: 7 }, fenced])).toEqual([]);
  expect(check([fenced, { kind: 'placed', node: 'n3', regionKey: 7 }])).toEqual([]); // another node's key 7
  expect(check([fenced, { kind: 'placed', node: 'n2', regionKey: 8 }])).toEqual([
    expect.stringMatching(/^fencing: .*buffer 8 after n2 fenced region r0 epoch 1/),
  ]);
});

test('§8.1 buffer reuse: a buffer is overwritten only after the segment it held was fully persisted', () => {
  // K = 2: segment 2 reuses buffer 0 after segment 0's full seal persisted.
  expect(check([write(0, 0), write(1, 1), persisted(0), write(2, 0)])).toEqual([]);
  // A partial persist is not enough.
  expect(check([write(0, 0), persisted(0, true), write(1, 1), write(2, 0)])).toEqual([
    expect.stringMatching(
      /^buffer-reuse: .*n1 wrote segment 2 .* into n2's log buffer 0 before n2 persisted segment 0/,
    ),
  ]);
  // Rewriting the same segment (a partial seal, then more bytes) is not a reuse.
  expect(check([write(0, 0), write(0, 0)])).toEqual([]);
  // A new link (new buffers) forgets what the old ones held.
  expect(check([write(0, 0), { kind: 'link-open', ...link }, write(1, 0)])).toEqual([]);
});

test('§8.6: an index segment reaches a backup only after the log segments it points into', () => {
  const index = (primarySegments: number[]): TraceEvent => ({
    kind: 'index-received',
    backup: 'n2',
    regionId: 'r0',
    epoch: 1,
    primarySegments,
  });
  expect(check([persisted(0), persisted(1, true), index([0, 4096])])).toEqual([]);
  expect(check([persisted(0), index([0, 8192])])).toEqual([
    expect.stringMatching(/^index-before-log: .*n2 received an index segment of region r0 .* @8192/),
  ]);
  // A rebase re-keys the map: the checker follows the backup's keys after it.
  const rekeyed: TraceEvent = { kind: 'segment-map', backup: 'n2', regionId: 'r0', primarySegments: [12288] };
  expect(check([persisted(0), rekeyed, index([12288])])).toEqual([]);
  expect(check([persisted(0), rekeyed, index([0])])).toHaveLength(1);
});
