/**
 * What a simulated schedule did, kept for looking at it afterwards (`talos check --html`, the trace
 * viewer in viewer.ts): the region configurations as they were published, the faults with their
 * start and end, supervisor restarts, and the protocol trace events (src/trace.ts), each stamped
 * with virtual ms since the workload began (setup, before it, is at 0). Only a schedule asked to
 * record (`ScheduleOptions.record`) keeps one: the soak's schedules do not pay for it.
 */
import type { RegionConfig } from '../../coordination/types.js';
import type { TraceEvent } from '../trace.js';
import type { Fault } from './faults.js';

export interface RecordedConfig {
  ms: number;
  config: RegionConfig;
}

export interface RecordedFault {
  fault: Fault;
  /** The node it struck (a `during` fault strikes the node of the recovery step). */
  node: string;
  startMs: number;
  /** When the fault itself ended (a partition healed, a killed node restarted); undefined: never. */
  endMs: number | undefined;
}

export interface Recording {
  nodes: string[];
  configs: RecordedConfig[];
  faults: RecordedFault[];
  restarts: { ms: number; nodeId: string; reason: string }[];
  events: { ms: number; event: TraceEvent }[];
}

export class Recorder {
  readonly recording: Recording;

  constructor(
    nodes: readonly string[],
    private readonly nowMs: () => number,
  ) {
    this.recording = { nodes: [...nodes], configs: [], faults: [], restarts: [], events: [] };
  }

  private ms(): number {
    const ms = this.nowMs();
    return Number.isNaN(ms) ? 0 : ms;
  }

  config(config: RegionConfig): void {
    this.recording.configs.push({ ms: this.ms(), config });
  }

  restart(nodeId: string, reason: string): void {
    this.recording.restarts.push({ ms: this.ms(), nodeId, reason });
  }

  event(event: TraceEvent): void {
    this.recording.events.push({ ms: this.ms(), event });
  }

  /** A fault starts; returns the function that records its end. */
  fault(fault: Fault, node: string): () => void {
    const entry: RecordedFault = { fault, node, startMs: this.ms(), endMs: undefined };
    this.recording.faults.push(entry);
    return () => {
      entry.endMs = this.ms();
    };
  }
}

/** Keys a violation names (`… key 00-key …`), in order, once each. */
export function violatedKeys(violations: readonly string[]): string[] {
  const keys = new Set<string>();
  for (const v of violations) for (const m of v.matchAll(/key (\S+-key)/g)) keys.add(m[1]!);
  return [...keys];
}
