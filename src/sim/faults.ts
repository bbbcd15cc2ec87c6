/**
 * The simulator's fault kinds and fault plans (a plan is a list of faults, applied one at a time;
 * see check.ts for what each does). Kept apart from check.ts so the CLI can parse `--plan` without
 * loading the simulator.
 */
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
  node: string;
  /** Virtual ms after the workload starts. */
  atMs: number;
  /**
   * How long a pause, partition, delay or slow disk lasts. A delay or slow disk adds forMs / 4 ms
   * to each operation; drop-connection breaks connection number forMs mod n of the node's n.
   * disk-full (ENOSPC) and disk-error (EIO) fail the node's disk for forMs: disk-full fails writes
   * and manifest replaces, and syncs too when forMs is odd; disk-error fails writes (forMs mod 3
   * = 0), syncs (1) or both (2), manifest replaces always. bit-flip flips one bit of one persisted
   * segment of the node's backup stores (chosen from atMs and forMs) and the node's scrubber
   * passes over its backup stores forMs later.
   */
  forMs: number;
}
