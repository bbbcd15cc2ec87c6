/**
 * Event-loop health (src/server/loop-health.ts): a blocked thread is seen as a stall of about the
 * time it was blocked, reported once, counted and kept as the longest; short waits are not stalls;
 * the numbers round-trip through /metrics text as `talos status` reads them.
 */
import {
  formatLoopHealth,
  LoopHealth,
  readMetricsHealth,
  startupStallWarning,
} from '../../src/server/loop-health.js';

const block = (ms: number): void => {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // the thread is busy, as it is in a synchronous fsync
  }
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('a thread blocked for 150 ms is one stall of about 150 ms; a quiet loop has none', async () => {
  const stalls: number[] = [];
  const health = new LoopHealth({ stallMs: 50, onStall: (ms) => stalls.push(ms) });
  try {
    await sleep(100);
    expect(stalls).toEqual([]);
    block(150);
    await sleep(60);
    expect(stalls).toHaveLength(1);
    expect(stalls[0]).toBeGreaterThanOrEqual(100);
    expect(stalls[0]).toBeLessThan(400);
    const snap = health.snapshot();
    expect(snap.stalls).toBe(1);
    expect(snap.longestStallMs).toBe(stalls[0]);
    expect(snap.maxMs).toBeGreaterThanOrEqual(100);
  } finally {
    health.close();
  }
  expect(() => new LoopHealth({ stallMs: 0 })).toThrow(RangeError);
});

test('loop health read back from /metrics text', () => {
  const text = [
    '# HELP nodejs_eventloop_lag_p50_seconds The 50th percentile of the recorded event loop delays.',
    'nodejs_eventloop_lag_p50_seconds{node="n1"} 0.0101',
    'nodejs_eventloop_lag_p99_seconds{node="n1"} 0.05',
    'nodejs_eventloop_lag_max_seconds{node="n1"} 0.31',
    'talos_event_loop_stalls_total{node="n1"} 2',
    'talos_event_loop_longest_stall_seconds{node="n1"} 0.31',
  ].join('\n');
  const h = readMetricsHealth(text);
  expect(h).toEqual({ p50Ms: 10.1, p99Ms: 50, maxMs: 310, stalls: 2, longestStallMs: 310 });
  expect(formatLoopHealth(h)).toBe('loop p50 10.1 ms p99 50 ms max 310 ms, 2 stalls (longest 310 ms)');
  expect(formatLoopHealth(undefined)).toBe('loop -');
  expect(Number.isNaN(readMetricsHealth('').p99Ms)).toBe(true);
});

test('a start that stalled the loop past the lease margin is warned about, with what to do', () => {
  const health = { p50Ms: 1, p99Ms: 5, maxMs: 700, stalls: 1, longestStallMs: 700 };
  expect(startupStallWarning(health, 2000, 400)).toBe(
    'starting stalled the event loop for 700 ms, longer than the lease margin (400 ms of a 2000 ms lease): under this load the node may lose its lease; give it a longer --lease-ttl-ms or a faster disk',
  );
  expect(startupStallWarning({ ...health, longestStallMs: 400 }, 2000, 400)).toBeUndefined();
  expect(startupStallWarning({ ...health, stalls: 0, longestStallMs: 0 }, 2000, 400)).toBeUndefined();
});
