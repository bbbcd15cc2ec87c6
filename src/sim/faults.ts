/**
 * The simulator's fault kinds and fault plans (a plan is a list of faults, applied one at a time;
 * see check.ts for what each does). Kept apart from check.ts so the CLI can parse `--plan` without
 * loading the simulator.
 */
import type { Phase } from '../trace.js';

export { PHASES, type Phase } from '../trace.js';

export const FAULT_KINDS = [
  'crash',
  'kill',
  'pause',
  'partition-peers',
  'partition-coordinator',
  'partition-all',
  'drop-connection',
  'delay-connection',
  'slow-device',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/**
 * The nine kinds of the first simulator (sessions 1–7). A plan drawn from a seed picks its kinds
 * by index into the kinds it draws from, so a seed recorded then (REGRESSIONS, docs) replays
 * exactly only when it draws from these: such entries pin `faultKinds: FIRST_FAULT_KINDS`.
 */
export const FIRST_FAULT_KINDS: readonly FaultKind[] = [
  'crash',
  'kill',
  'pause',
  'partition-peers',
  'partition-coordinator',
  'partition-all',
  'drop-connection',
  'delay-connection',
  'slow-device',
];

export interface Fault {
  kind: FaultKind;
  /** The node it strikes (unless `during` picks one). */
  node: string;
  /** Virtual ms after the workload starts. */
  atMs: number;
  /**
   * How long a pause, partition, delay or slow disk lasts. A delay or slow disk adds forMs / 4 ms
   * to each operation; drop-connection breaks connection number forMs mod n of the node's n.
   */
  forMs: number;
  /**
   * Overlapping plans only: strike inside a recovery step — at the first `phase` trace event of
   * this kind at or after `atMs` (within 2 s; otherwise at that time on `node`), on the node that
   * runs the step (`strike: 'actor'`, the default) or the other node it involves (`'peer'`: the
   * backup a primary re-syncs or rebases).
   */
  during?: Phase;
  strike?: 'actor' | 'peer';
}
