/**
 * The probe: the one port through which a simulator watches and perturbs the protocol code. It
 * carries the protocol trace (the events in trace.ts) and the deliberate defects (mutants, below)
 * that `talos check --mutant NAME` turns on to prove its checkers bite. It is an option of the
 * objects that produce events or consult a defect (NodeRuntime, which hands it to its sessions and
 * backup regions; PrimarySession → BackupLink, RegionReplicator; BackupRegion → BackupStore;
 * StoreOptions → recovery; MemoryFabric; EmbeddedCoordinator), and defaults to NO_PROBE: nothing
 * traced, no defect. Only src/sim builds one that listens (sim/probe.ts), one per schedule;
 * production never does, and no module keeps one in a global (test/architecture.test.ts).
 *
 * Producers stay cheap without a listener: `probe.trace?.({ … })` evaluates its argument only when
 * a sink is there (optional calls short-circuit), and work only a trace needs is skipped on
 * `probe.trace === undefined`.
 */
import type { TraceEvent } from './trace.js';

/**
 * Deliberate protocol defects, for the simulator's proof that its checkers bite. Each names the one
 * place in the protocol code that consults it (`probe.defect?.(name)`).
 * - `ack-before-replicate`: RegionReplicator acknowledges a write before the backups hold it.
 * - `no-l0-replay`: a primary opens its store without replaying the log tail into L0 (as a
 *   promotion that skipped the replay would; engine recovery, StoreOptions.probe).
 * - `no-revoke`: a backup fencing an epoch does not revoke its buffers (BackupRegion.fence).
 * - `stale-map`: a rebase keeps the segment map keyed by the old primary's offsets, so later
 *   pointers are translated through a stale map (BackupStore.rebaseMaps).
 * - `early-buffer-reuse`: the primary writes segment `seq` into log buffer `seq mod K` without
 *   waiting until the backup persisted `seq − K` (BackupLink.writeLog).
 * - `failed-after-append`: the primary reports every fourth write as a definite failure
 *   (StoreClosedError) although its commit gate resolved — the record is on every backup — as a
 *   store closed under in-flight groups once did (PrimarySession.replicated).
 * - `no-lease-margin`: a node's self-fencing deadline is computed without the clock safety margin
 *   (NodeRuntime.leaseValid), so a node whose clock runs slow or lost time still believes in a
 *   lease the coordinator already ended.
 */
export const MUTANTS = [
  'ack-before-replicate',
  'no-l0-replay',
  'no-revoke',
  'stale-map',
  'early-buffer-reuse',
  'failed-after-append',
  'no-lease-margin',
] as const;
export type Mutant = (typeof MUTANTS)[number];

export interface Probe {
  /** Receives each protocol trace event; absent: nothing is traced, and producers build nothing. */
  readonly trace?: (event: TraceEvent) => void;
  /** Whether the deliberate defect `name` is on; absent: none is. */
  readonly defect?: (name: Mutant) => boolean;
}

/** No listener, no defect: what production runs with. */
export const NO_PROBE: Probe = Object.freeze({});

/** Whether `probe` turns the defect `name` on. */
export function defective(probe: Probe, name: Mutant): boolean {
  return probe.defect?.(name) === true;
}
