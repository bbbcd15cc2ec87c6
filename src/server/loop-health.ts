/**
 * Event-loop health of a node process (issue 15 item 6). Everything a node does — client requests,
 * replication messages, lease keepalives, and today the disk calls — runs on its one JS thread; a
 * stall there delays keepalives, and a stall longer than the lease margin can cost the lease
 * (PROTOCOL §6: the node fences itself; the controller moves its regions).
 *
 * Two measurements, both on real time (this module is for node processes, never the simulator):
 * - the delay distribution, from perf_hooks' event-loop delay histogram (p50 / p99 / max since the
 *   last `snapshot(reset)`), as prom-client's default metrics also export it;
 * - stalls: a probe timer every `probeMs` notes how late it fired; a lateness over `stallMs` is a
 *   stall, reported once through `onStall` with its length, counted, and kept as the longest.
 * `readMetricsHealth` parses those numbers back out of a node's /metrics text (`talos status`).
 */
import { type IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks';

export interface LoopHealthSnapshot {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Stalls over the threshold since the monitor started, and the longest of them. */
  stalls: number;
  longestStallMs: number;
}

export interface LoopHealthOptions {
  /** A probe lateness above this is a stall (e.g. half the lease margin). */
  stallMs: number;
  /** How often the probe fires (default 20 ms, at most stallMs / 2). */
  probeMs?: number;
  onStall?: (stallMs: number) => void;
}

export class LoopHealth {
  private readonly histogram: IntervalHistogram;
  private readonly probe: NodeJS.Timeout;
  private stalls = 0;
  private longestStallMs = 0;
  readonly stallMs: number;

  constructor(options: LoopHealthOptions) {
    if (!(options.stallMs > 0)) throw new RangeError(`stallMs must be positive, not ${options.stallMs}`);
    this.stallMs = options.stallMs;
    this.histogram = monitorEventLoopDelay({ resolution: 10 });
    this.histogram.enable();
    const probeMs = Math.max(1, Math.min(options.probeMs ?? 20, Math.floor(options.stallMs / 2)));
    let expected = performance.now() + probeMs;
    this.probe = setInterval(() => {
      const now = performance.now();
      const lateMs = now - expected;
      expected = now + probeMs;
      if (lateMs <= this.stallMs) return;
      this.stalls++;
      this.longestStallMs = Math.max(this.longestStallMs, lateMs);
      options.onStall?.(Math.round(lateMs));
    }, probeMs);
    this.probe.unref();
  }

  /** The delay distribution (since the last reset) and the stalls so far. */
  snapshot(reset = false): LoopHealthSnapshot {
    const ms = (ns: number): number => Number((ns / 1e6).toFixed(2));
    const out = {
      p50Ms: ms(this.histogram.percentile(50)),
      p99Ms: ms(this.histogram.percentile(99)),
      maxMs: ms(this.histogram.max),
      stalls: this.stalls,
      longestStallMs: Math.round(this.longestStallMs),
    };
    if (reset) this.histogram.reset();
    return out;
  }

  close(): void {
    clearInterval(this.probe);
    this.histogram.disable();
  }
}

/**
 * A node's loop health from its /metrics text: prom-client's `nodejs_eventloop_lag_{p50,p99,max}_seconds`
 * and the node's `talos_event_loop_stalls_total` / `talos_event_loop_longest_stall_seconds`.
 * Missing numbers read as NaN.
 */
export function readMetricsHealth(metricsText: string): LoopHealthSnapshot {
  const value = (name: string): number => {
    const match = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+|NaN)$`, 'm').exec(metricsText);
    return match === null ? Number.NaN : Number(match[1]);
  };
  const ms = (seconds: number): number => Number((seconds * 1000).toFixed(2));
  return {
    p50Ms: ms(value('nodejs_eventloop_lag_p50_seconds')),
    p99Ms: ms(value('nodejs_eventloop_lag_p99_seconds')),
    maxMs: ms(value('nodejs_eventloop_lag_max_seconds')),
    stalls: value('talos_event_loop_stalls_total'),
    longestStallMs: Math.round(ms(value('talos_event_loop_longest_stall_seconds'))),
  };
}

/** A member's loop health read from its /metrics (undefined: none published, or no answer within 1 s). */
export async function memberLoopHealth(
  metricsAddress: string | undefined,
): Promise<LoopHealthSnapshot | undefined> {
  if (metricsAddress === undefined) return undefined;
  try {
    const response = await fetch(metricsAddress, { signal: AbortSignal.timeout(1000) });
    return response.ok ? readMetricsHealth(await response.text()) : undefined;
  } catch {
    return undefined;
  }
}

/** `loop p50 0.01 ms p99 1.2 ms max 40 ms, 2 stalls (longest 310 ms)`, or `loop -` when unknown. */
export function formatLoopHealth(h: LoopHealthSnapshot | undefined): string {
  if (h === undefined) return 'loop -';
  const stalls = Number.isNaN(h.stalls)
    ? ''
    : `, ${h.stalls} stall${h.stalls === 1 ? '' : 's'}${h.stalls > 0 ? ` (longest ${h.longestStallMs} ms)` : ''}`;
  return `loop p50 ${h.p50Ms} ms p99 ${h.p99Ms} ms max ${h.maxMs} ms${stalls}`;
}

/**
 * The warning a node logs once it started when starting (recovery, the first re-syncs) already
 * stalled its event loop for longer than the lease margin — a lease it may not keep under load —
 * or undefined when it did not.
 */
export function startupStallWarning(
  health: LoopHealthSnapshot,
  leaseTtlMs: number,
  leaseMarginMs: number,
): string | undefined {
  if (!(health.longestStallMs > leaseMarginMs)) return undefined;
  return `starting stalled the event loop for ${health.longestStallMs} ms, longer than the lease margin (${leaseMarginMs} ms of a ${leaseTtlMs} ms lease): under this load the node may lose its lease; give it a longer --lease-ttl-ms or a faster disk`;
}
