/**
 * State fingerprints for `talos explore` (explore.ts): a hash of what identifies the simulated
 * world's state at a choice point, so that the explorer prunes a state it already explored.
 *
 * What it covers:
 * - virtual time (ms since the world began), the next due timer and the number of pending timers;
 * - the number of queued fabric steps and I/O completions (not their contents: the world holds
 *   them as closures — see "what it ignores");
 * - the coordinator's region map (epoch, primary, backups, joiners per region) and the dead nodes;
 * - per node and region: the primary session's epoch and whether it serves, and its store's
 *   summary (next LSN, L0 entries and frozen entries, entries and segments per level, log
 *   segments, flushes);
 * - the protocol trace so far as an order-insensitive sum of the events' hashes (with their count):
 *   two interleavings of independent deliveries that produce the same events hash equal, which is
 *   where most of the pruning comes from (a cheap form of partial-order reduction);
 * - the client history: each operation's outcome and value, by its place in the fixed workload;
 * - the faults injected so far and which of them still run.
 *
 * What it ignores: the contents of queued steps and timers (two states that differ only in which
 * message is in flight, with everything above equal, hash equal — rare, since a delivered message
 * leaves a trace event or a store change), backup stores' internals beyond what the trace shows
 * (segment maps, persisted segments: their `log-persisted`, `segment-map` and `index-received`
 * events), actor internals (xstate snapshots) and per-connection sequence numbers. So pruning is a
 * heuristic: a collision can hide a subtree (never adds a false violation).
 */
import { createHash } from 'node:crypto';
import type { LocalCluster } from '../cluster/local-cluster.js';
import type { TraceEvent } from '../trace.js';
import type { HistoryEntry } from './check.js';
import type { SimWorld } from './world.js';

/** An order-insensitive digest of a trace: the count and the sum (mod 2^52) of event hashes. */
export class TraceDigest {
  private count = 0;
  private sum = 0;

  add(event: TraceEvent): void {
    const h = createHash('sha1').update(JSON.stringify(event)).digest();
    // 48 bits of the hash, summed mod 2^52 (exact in a double).
    this.sum = (this.sum + h.readUIntBE(0, 6)) % 2 ** 52;
    this.count++;
  }

  value(): string {
    return `${this.count}:${this.sum}`;
  }
}

export interface FingerprintParts {
  world: SimWorld;
  cluster: LocalCluster;
  pendingSteps: number;
  trace: TraceDigest;
  history: readonly HistoryEntry[];
  /** The faults injected so far, each as `kind node running|done`. */
  faults: readonly string[];
}

export function fingerprint(p: FingerprintParts): string {
  const c = p.cluster;
  const parts: unknown[] = [
    p.world.nowMs(),
    p.world.clock.nextDueMs() === undefined ? -1 : p.world.clock.nextDueMs()! - p.world.clock.now(),
    p.world.clock.pendingTimerCount,
    p.pendingSteps,
    c.deadNodes(),
    c.regions().map((r) => [r.regionId, r.epoch, r.primary, r.backups, r.joining ?? []]),
    p.trace.value(),
    p.history.map((e) => [e.op, e.key, e.outcome, e.value?.slice(0, 12) ?? null]),
    p.faults,
  ];
  for (const nodeId of c.nodeIds()) {
    for (const r of c.regions()) {
      const s = c.session(nodeId, r.regionId);
      if (s === undefined) continue;
      const st = s.store.stats();
      parts.push([
        nodeId,
        r.regionId,
        s.epoch,
        s.isServing,
        st.nextLsn,
        st.l0.entryCount,
        st.l0.frozenEntryCount,
        st.levels.map((l) => [l.entryCount, l.segmentCount]),
        st.logSegmentCount,
        st.flushCount,
      ]);
    }
  }
  return createHash('sha1').update(JSON.stringify(parts)).digest('base64');
}
