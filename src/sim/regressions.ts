import type { ScheduleOptions } from './check.js';
import { FIRST_FAULT_KINDS } from './faults.js';

/**
 * How schedules were drawn and sized before phase faults, compactions under load and the new
 * fault kinds (sessions 1–7): an entry recorded then spreads this, so its seed replays exactly.
 */
const FIRST_SIMULATOR = {
  faultKinds: FIRST_FAULT_KINDS,
  phaseFaults: false,
  l0Bytes: 1024,
  batches: false,
} as const;

/** Seeds recorded before the workload issued atomic batches (session 11) replay without them. */
const BEFORE_BATCHES = { batches: false } as const;

/**
 * Schedules that once failed a checker; each runs on every `npm test`
 * (test/sim/sim.test.ts) and is listed in the soak's report.
 * - seeds 12 and 15, K = 1: promotion offered the buffers of segments S … S + K − 1 after the last
 *   persisted segment S, so the tail in S + K was lost (acknowledged writes gone).
 * - seed 185, K = 1: with the buffer-reuse baseline counting the backup's last, partially
 *   persisted segment as persisted, a re-sync could overwrite its buffer before the backup copied
 *   the segment's full seal (found by the buffer-reuse trace checker).
 * - seed 1250625380 (the 10 000-schedule soak; shrunk to one operation and three faults): a region
 *   left with its primary alone (both backups reported, joiners not caught up) whose node restarted
 *   before acting on its promotion; the new incarnation opened the on-disk backup store as a
 *   primary, failed an assertion on every retry, and the region stayed unserved. A restarted node
 *   now promotes such a store from what it persisted.
 * - seed 101697, overlapping faults (2 at once): a false alarm of the overlapping plans, where a
 *   node counted as no longer faulted when its partition from the coordinator ended, but its
 *   lease-loss restart (buffers gone) came 58 ms later, while a crash of the region's third
 *   replica had started: every copy of the unsynced tail gone, outside PROTOCOL §8.2's model. A
 *   node now counts as faulted for a lease's time after its fault, then until the map is whole.
 * - seed 799926141 (npm test's batch, after device syncs became asynchronous): a Build-Index
 *   backup's flush installed L1 and dropped its frozen L0 only after the install's manifest edit
 *   was durable; a scan in between saw each record twice with one lsn (the merge's assertion, a
 *   fail-stop). The frozen L0 now leaves in the install's synchronous step.
 * - seed 1243464713, overlapping faults (a liveness failure: 296 epochs, a joiner never admitted):
 *   a bit flip struck n3's copy of r1's log during its promotion, after the promotion's scrub, in
 *   a record before the flushed position, which recovery does not parse again. The new primary
 *   served from the rotted active segment and every joiner refused its re-sync as corrupt, for
 *   ever. Segments read for shipping are now verified at the source: the primary fail-stops and a
 *   replica with a good copy takes the region.
 * - seed 185150896, overlapping faults (a liveness failure: a backup refused "removed segment 8192
 *   is not installed here"): after a failover the new primary rebased backup n2, whose last
 *   installed compaction id equalled the new primary's — but the ids counted two lineages'
 *   compactions, and n2's levels were not the primary's, so re-sync shipped no levels and the
 *   primary's next flush removed a segment n2 never had. After a rebase the levels now go whole.
 *   (Surfaced once index blocks became compact and due compactions bounded, which changed the
 *   schedules; the old code passes this seed by chance of timing.)
 * - seed 923763848, overlapping faults (CI, session 11; an acknowledged put lost): n2 fail-stopped,
 *   r0's next epoch kept primary n1, and n1's epoch-1 session stopped — removing the store's commit
 *   gate — while a put it had admitted still waited for room. The put then committed with no gate:
 *   into L0 and acknowledged, never written to a backup. n1 was killed during its re-sync, n3
 *   promoted without the put. A stopped replicator now leaves a refusing gate (an unknown outcome).
 * - seed 297259283, overlapping faults (a liveness failure: "corrupt segment index@12288: bad
 *   footer magic" when the checkers read the stores): a bit flip struck a Build-Index backup's
 *   index segment while the backup was being promoted, after the promotion verified it; the scrub
 *   that follows a flip covered backup stores only, so the corrupt footer sat unfound in the new
 *   primary. Scrubs now verify primary stores too (the node fail-stops, a good replica takes over).
 * - seed 963158544, overlapping faults (acknowledged writes lost; found by a helper's npm test): a
 *   bit flip struck the promoting backup's active log segment after the promotion verified it;
 *   the reopened primary's recovery took the flipped record for a torn tail, served without the
 *   writes after it and re-synced every other replica to the shortened log. The reopen must now
 *   find the promoted tail whole (assertPromotedTail), else the node fail-stops and another
 *   backup takes the region.
 * - seed 1732623301, overlapping faults, Build-Index (a liveness failure): the same flip during a
 *   promotion; the new primary's shortened log then met a backup that had indexed 201 bytes of
 *   the segment it now said held 38 ("log segment 0 shrank"), which rightly refused, and the
 *   region never moved on. With the promoted tail checked, the flipped node fail-stops instead.
 * - seed 22, K = 1: a false alarm of that checker (a primary re-opening a backup within its epoch
 *   gets new buffers: link-open now resets what the checker believes they hold).
 */
export const REGRESSIONS: readonly ScheduleOptions[] = [
  { seed: 12, ops: 60, faults: 3, logBufferCount: 1, ...FIRST_SIMULATOR },
  { seed: 15, ops: 60, faults: 3, logBufferCount: 1, ...FIRST_SIMULATOR },
  { seed: 22, ops: 60, faults: 3, logBufferCount: 1, ...FIRST_SIMULATOR },
  { seed: 185, ops: 60, faults: 3, logBufferCount: 1, ...FIRST_SIMULATOR },
  { seed: 1250625380, ops: 60, faults: 3, ...FIRST_SIMULATOR },
  { seed: 101697, ops: 60, faults: 4, concurrentFaults: 2, ...FIRST_SIMULATOR },
  { seed: 799926141, ops: 40, faults: 3, ...BEFORE_BATCHES },
  { seed: 1243464713, ops: 60, faults: 4, concurrentFaults: 2, ...BEFORE_BATCHES },
  { seed: 185150896, ops: 60, faults: 4, concurrentFaults: 2, ...BEFORE_BATCHES },
  { seed: 923763848, ops: 60, faults: 4, concurrentFaults: 2, ...BEFORE_BATCHES },
  { seed: 297259283, ops: 60, faults: 4, concurrentFaults: 2, ...BEFORE_BATCHES },
  { seed: 963158544, ops: 60, faults: 4, concurrentFaults: 2, ...BEFORE_BATCHES },
  { seed: 1732623301, ops: 60, faults: 4, concurrentFaults: 2, ...BEFORE_BATCHES },
  {
    seed: 1250625380,
    ops: 1,
    faults: 3,
    ...FIRST_SIMULATOR,
    plan: [
      { kind: 'partition-all', node: 'n2', atMs: 55, forMs: 140 },
      { kind: 'drop-connection', node: 'n4', atMs: 55, forMs: 482 },
      { kind: 'crash', node: 'n3', atMs: 78, forMs: 481 },
    ],
  },
];
