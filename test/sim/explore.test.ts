/**
 * `talos explore` (src/sim/explore.ts, src/cli/explore.ts): a path is deterministic (the same
 * choices give the same choice points and fingerprints); the default configuration explores its
 * whole bounded space clean, with at least 1 000 unique states and every reachability property
 * reached, and --json prints one summary object last; every mutant is caught at its configuration
 * (MUTANT_CONFIGS, what `talos explore --mutant M` uses) and the printed replay — `talos check
 * --replay SEED --choices …` — fails the same way.
 */
import {
  type ChoicesReplayOptions,
  exploreConfig,
  replayChoices,
  runExploreCli,
} from '../../src/cli/explore.js';
import { MUTANTS } from '../../src/probe.js';
import { DEFAULT_CONFIG, runPath } from '../../src/sim/explore.js';
import { captured } from '../support/stdout.js';

jest.setTimeout(300_000);

/** A printed replay command as the options `talos check` parses from it. */
function parseReplay(command: string): ChoicesReplayOptions {
  const flag = (name: string): string | undefined => new RegExp(`--${name} '?([^' ]*)'?`).exec(command)?.[1];
  const num = (name: string): number | undefined =>
    flag(name) === undefined ? undefined : Number(flag(name));
  const choices = flag('choices') ?? '';
  return {
    replay: num('replay')!,
    choices: choices === '' ? [] : choices.split(',').map(Number),
    nodes: num('nodes')!,
    replicas: num('replicas')!,
    ops: num('ops')!,
    faults: num('faults')!,
    ...(flag('mode') === undefined ? {} : { mode: flag('mode') as 'send-index' | 'build-index' }),
    ...(flag('fault-kinds') === undefined ? {} : { faultKinds: flag('fault-kinds')!.split(',') }),
    ...(flag('mutant') === undefined ? {} : { mutant: flag('mutant') as (typeof MUTANTS)[number] }),
    ...(command.includes('--no-drift') ? { drift: false } : {}),
    json: true,
  };
}

test('a path is deterministic: the same choices, the same choice points and fingerprints', async () => {
  const config = { ...DEFAULT_CONFIG, depth: 6 };
  const a = await runPath(config, [0, 1, 0, 2]);
  const b = await runPath(config, [0, 1, 0, 2]);
  expect(a.points.length).toBeGreaterThan(3);
  expect(b.points).toEqual(a.points);
  expect(b.history).toEqual(a.history);
  expect(b.violations).toEqual([]);
});

test('the default configuration explores clean: >= 1 000 unique states, every property reached', async () => {
  const { value: summary, lines } = await captured(() => runExploreCli({ json: true }));
  const last = JSON.parse(lines.at(-1)!) as Record<string, unknown>;
  expect(last).toMatchObject({
    statesExplored: summary.statesExplored,
    uniqueStates: summary.uniqueStates,
    violations: [],
  });
  expect(summary.complete).toBe(true);
  expect(summary.uniqueStates).toBeGreaterThanOrEqual(1000);
  expect(summary.statesExplored).toBeGreaterThanOrEqual(summary.uniqueStates);
  expect(summary.maxDepth).toBe(DEFAULT_CONFIG.depth);
  expect(summary.properties.map((p) => [p.name, p.status])).toEqual([
    ['promotion', 'reached'],
    ['rebase', 'reached'],
    ['resync', 'reached'],
    ['fenced', 'reached'],
  ]);
});

test.each(MUTANTS)(
  'explore --mutant %s catches it at its configuration; the replay fails the same way',
  async (mutant) => {
    const { value: summary } = await captured(() => runExploreCli({ mutant, json: true }));
    expect(summary.config).toEqual(exploreConfig({ mutant }));
    expect(summary.violations.length).toBe(1);
    const found = summary.violations[0]!;
    expect(found.violations.length).toBeGreaterThan(0);
    const { value: replayed, lines } = await captured(() => replayChoices(parseReplay(found.replay)));
    expect(replayed.violations).toEqual(found.violations);
    expect(JSON.parse(lines.at(-1)!)).toMatchObject({ violations: found.violations });
  },
);
