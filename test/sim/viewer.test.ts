/**
 * The trace viewer (src/sim/viewer.ts, `talos check --replay S --html PATH`). A schedule asked to
 * record keeps its configurations, faults, restarts and trace events; the CLI (compiled, as a user
 * runs it: vega is ESM, which this jest setup does not load) turns a failing schedule into one
 * self-contained page naming its violations with the timeline and the flagged key's operations; and
 * the page loads in a real headless browser (Debian's chromium, installed by scripts/install.sh
 * --test), which renders the violation — the screenshot's path is printed.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { runSchedule } from '../../src/sim/check.js';
import { violatedKeys } from '../../src/sim/recording.js';

jest.setTimeout(180_000);

const ROOT = resolve(__dirname, '../..');
// A build of its own (the e2e suite builds dist/ at the same time).
const OUT = join(ROOT, '.cache', 'viewer-dist');
const chromium = ['chromium', 'chromium-browser', 'google-chrome'].find(
  (bin) => spawnSync('which', [bin]).status === 0,
);
let dir: string;
let page: string;

beforeAll(() => {
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json', '--outDir', OUT], { cwd: ROOT, stdio: 'inherit' });
  dir = mkdtempSync(join(tmpdir(), 'talos-viewer-'));
  page = join(dir, 'schedule.html');
  const run = spawnSync(
    process.execPath,
    [
      join(OUT, 'src/cli/main.js'),
      'check',
      '--replay',
      '1',
      '--mutant',
      'failed-after-append',
      '--html',
      page,
    ],
    { cwd: ROOT, encoding: 'utf8' },
  );
  if (run.status !== 1) throw new Error(`talos check --html exited ${run.status}: ${run.stderr}`);
  expect(run.stdout).toContain(`wrote ${page}`);
});

test('a recorded schedule keeps its configurations, faults, restarts and trace events', async () => {
  const result = await runSchedule({ seed: 1, mutant: 'failed-after-append', record: true });
  const recording = result.recording!;
  expect(recording.nodes).toEqual(['n1', 'n2', 'n3', 'n4']);
  expect(new Set(recording.configs.map((c) => c.config.regionId))).toEqual(new Set(['r0', 'r1', 'r2']));
  expect(recording.faults.map((f) => f.fault)).toEqual(result.faults);
  for (const f of recording.faults)
    expect(f.endMs ?? Number.POSITIVE_INFINITY).toBeGreaterThanOrEqual(f.startMs);
  expect(recording.events.some((e) => e.event.kind === 'log-write')).toBe(true);
  expect(violatedKeys(result.violations).length).toBeGreaterThan(0);
  // Recording only watches: the same seed runs the same without it.
  const quiet = await runSchedule({ seed: 1, mutant: 'failed-after-append' });
  expect(quiet.history).toEqual(result.history);
  expect(quiet.recording).toBeUndefined();
  expect(
    violatedKeys(['linearizability: key 00-key has no valid order', 'durability: key a2-key reads x']),
  ).toEqual(['00-key', 'a2-key']);
});

test('the page names every violation, draws the timeline and the flagged key, and is self-contained', () => {
  const html = readFileSync(page, 'utf8');
  expect(html).toMatch(/<h2>\d+ violation\(s\)<\/h2>/);
  expect(html).toMatch(/linearizability: key \S+-key has no valid order/);
  expect(html).toMatch(/<h2 id="key">Key \S+-key<\/h2>/);
  expect(html).toContain('talos check --replay 1');
  expect((html.match(/<svg/g) ?? []).length).toBe(2); // the timeline and the key's chart
  expect(html).toContain('client c0');
  expect(html).toContain('n1 · r0');
  expect(html).not.toMatch(/<script|<link|src="http/);
});

test('the page loads in headless chromium without errors and shows the violation', () => {
  if (chromium === undefined)
    throw new Error(
      "no chromium on this machine: install Debian's chromium (bash scripts/install.sh --test)",
    );
  const flags = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--hide-scrollbars',
    '--window-size=1300,1400',
  ];
  const dom = execFileSync(chromium, [...flags, '--dump-dom', `file://${page}`], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // The browser parsed and laid out the page: the verdict and both charts are in its DOM.
  expect(dom).toContain('id="verdict"');
  expect(dom).toMatch(/\d+ violation\(s\)/);
  expect((dom.match(/<svg/g) ?? []).length).toBe(2);
  const screenshot = join(dir, 'schedule.png');
  const shot = spawnSync(chromium, [...flags, `--screenshot=${screenshot}`, `file://${page}`], {
    encoding: 'utf8',
  });
  expect(shot.status).toBe(0);
  expect(shot.stderr).not.toMatch(/Uncaught|SyntaxError|Failed to load resource/);
  expect(existsSync(screenshot) && statSync(screenshot).size).toBeGreaterThan(10_000);
  process.stderr.write(`[viewer] screenshot of a failing schedule's page: ${screenshot}\n`);
});
