/**
 * `talos check` (src/cli/check.ts): a batch with a mutant reports its violations, shrinks the first
 * failure and prints a replay command whose plan reproduces it; --json prints one summary object
 * as the last line with the fields the issue names.
 */
import { runCheck } from '../../src/cli/check.js';
import { captured } from '../support/stdout.js';

jest.setTimeout(300_000);

test('a mutant batch: violations, a shrunk failure, and a replay of it that fails the same way', async () => {
  const { value: summary, lines } = await captured(() =>
    runCheck({ seeds: 4, seed: 1, mutant: 'no-l0-replay', json: true }),
  );
  const last = JSON.parse(lines.at(-1)!) as Record<string, unknown>;
  expect(last).toEqual(summary);
  expect(summary).toMatchObject({ schedules: 4, mutant: 'no-l0-replay' });
  expect(summary.operations).toBeGreaterThan(4 * 60);
  expect(summary.faults).toBe(4 * 3);
  expect(summary.violations).toBeGreaterThan(0);
  const shrunk = summary.shrunk!;
  expect(shrunk.seed).toBe(summary.failedSeeds[0]);
  expect(shrunk.ops).toBeLessThanOrEqual(60);
  expect(shrunk.replay).toContain(`--replay ${shrunk.seed} --ops ${shrunk.ops}`);
  expect(shrunk.replay).toContain(`--plan '${JSON.stringify(shrunk.plan)}'`);

  const { value: replayed, lines: replayLines } = await captured(() =>
    runCheck({ replay: shrunk.seed, ops: shrunk.ops, plan: shrunk.plan, mutant: 'no-l0-replay' }),
  );
  expect(replayed.violations).toBe(shrunk.violations.length);
  expect(replayLines.filter((l) => l.startsWith('VIOLATION ')).map((l) => l.slice(10))).toEqual(
    shrunk.violations,
  );
  expect(replayLines).toContain('history:');
});

test('without a mutant a batch passes and reports every fault it injected', async () => {
  const { value: summary } = await captured(() => runCheck({ seeds: 3, seed: 77, json: true }));
  expect(summary.violations).toBe(0);
  expect(summary.shrunk).toBeNull();
  expect(Object.values(summary.faultsByKind).reduce((a, b) => a + b, 0)).toBe(summary.faults);
});
