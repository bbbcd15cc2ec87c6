/**
 * Deliberate protocol defects, for the simulator's proof that its checkers bite (`talos check
 * --mutant NAME`). Only src/sim sets one, around a single schedule; production never does. Each
 * names the one place in the protocol code that consults it.
 * - `ack-before-replicate`: RegionReplicator acknowledges a write before the backups hold it.
 * - `no-l0-replay`: a primary opens its store without replaying the log tail into L0 (as a
 *   promotion that skipped the replay would).
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

let active: Mutant | undefined;

/** Whether `name` is the active mutant. */
export function mutant(name: Mutant): boolean {
  return active === name;
}

/** Sets (or clears) the active mutant: the simulator's switch. */
export function setMutant(name: Mutant | undefined): void {
  active = name;
}
