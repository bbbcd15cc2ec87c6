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
  'stall',
  'clock-drift',
  'clock-jump',
  'disk-full',
  'disk-error',
  'bit-flip',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/**
 * The nine kinds of the first simulator (sessions 1–7). A plan drawn from a seed picks its kinds
 * by index into the kinds it draws from, so a seed recorded then (REGRESSIONS, docs) replays
 * exactly only when it draws from these: such entries pin `faultKinds: FIRST_FAULT_KINDS`.
 */
export const FIRST_FAULT_KINDS: readonly FaultKind[] = FAULT_KINDS.slice(0, 9);

export interface Fault {
  kind: FaultKind;
  /** The node it strikes (unless `during` picks one). */
  node: string;
  /** Virtual ms after the workload starts. */
  atMs: number;
  /**
   * How long a pause, partition, delay, slow disk, stall or clock drift lasts. A delay or slow disk
   * adds forMs / 4 ms to each operation; drop-connection breaks connection number forMs mod n of
   * the node's n; clock-drift sets the node's clock rate to 1 + driftOf(fault) (within ±15 %);
   * clock-jump moves the node's clock by jumpOf(fault) ms (ahead by forMs when forMs is even, back
   * — it loses time — by up to 10 ms when odd). A drawn plan's stalls last 200–400 ms (about a
   * lease TTL: see stallMsOf), other kinds' faults 100–700 ms.
   * disk-full (ENOSPC) and disk-error (EIO) fail the node's disk for forMs: disk-full fails writes
   * and manifest replaces, and syncs too when forMs is odd; disk-error fails writes (forMs mod 3
   * = 0), syncs (1) or both (2), manifest replaces always. bit-flip flips one bit of one persisted
   * segment of the node's backup stores (chosen from atMs and forMs) and the node's scrubber
   * passes over its backup stores forMs later.
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

/**
 * The simulator's clock bounds (docs/failure-model.md, "Clocks"): every node's clock runs within
 * ±CLOCK_DRIFT_BOUND of true time and loses at most CLOCK_JUMP_BOUND_MS within a lease TTL. With
 * the simulator's 300 ms TTL they need a lease margin of 0.15 · 300 + 10 = 55 ms; the default
 * margin (a fifth of the TTL, 60 ms) covers them. (Far beyond real clocks — quartz drifts by
 * 10⁻⁴ — so that the margin is what stands between a drifting node and a stale lease.)
 */
export const CLOCK_DRIFT_BOUND = 0.15;
export const CLOCK_JUMP_BOUND_MS = 10;

/** A clock-drift fault's rate offset: −0.15 … +0.15 in steps of 0.01, from forMs. */
export function driftOf(fault: Fault): number {
  return ((fault.forMs % 31) - 15) / 100;
}

/**
 * How long a drawn plan's stall lasts, from the drawn 100–700 ms: 200–400 ms, about the 300 ms
 * lease. Those are the stalls that matter for leases — a node that wakes up just after its lease
 * ran out, with requests queued while it stalled, is exactly where a margin too small shows
 * (shorter stalls are harmless, much longer ones are failovers pauses already cover).
 */
export function stallMsOf(drawnMs: number): number {
  return 200 + Math.floor((drawnMs - 100) / 3);
}

/** A clock-jump fault's jump in ms: +forMs (ahead) when forMs is even, else −(forMs mod 11) (lost). */
export function jumpOf(fault: Fault): number {
  return fault.forMs % 2 === 0 ? fault.forMs : -(fault.forMs % (CLOCK_JUMP_BOUND_MS + 1));
}
