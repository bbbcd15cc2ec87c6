/**
 * The restart-storm scenario (issue 15 item 7), shared by `npm run bench:storm` (a measurement) and
 * test/e2e/storm.e2e.test.ts (the bound, asserted).
 *
 * One repetition: a 5-node in-process cluster on real files (FileDevice under a temporary
 * directory: real fdatasync through the thread pool, every node's JS on this one thread), 4
 * regions, RF 3, a 1 s lease, 64 puts of 100 B in flight; after 1.5 s the primary of r0 is killed
 * (no goodbye). Measured: how long until every region is whole again without it (two backups, no
 * joiner, served), how many epochs each region moved for that one fault, and how many lease-loss
 * restarts the supervisor made before and after the kill.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalCluster } from '../../src/cluster/local-cluster.js';
import type { ReplicationMode } from '../../src/replication/messages.js';

/** The bound: whole within this many ms of the kill, … */
export const STORM_WHOLE_WITHIN_MS = 5000;
/** … and at most this many epochs per region for the one fault (remove the node, admit its replacement). */
export const STORM_MAX_EPOCHS = 2;

export interface StormRep {
  rep: number;
  mode: ReplicationMode;
  victim: string;
  /** ms from the kill until every region was whole without the victim; null: not within 20 s. */
  wholeMs: number | null;
  maxEpochsMoved: number;
  restartsBeforeKill: number;
  restartsAfterKill: number;
  acknowledged: number;
}

export async function stormRepetition(rep: number, mode: ReplicationMode): Promise<StormRep> {
  const dir = mkdtempSync(join(tmpdir(), 'talos-storm-'));
  const c = await createLocalCluster({
    nodes: 5,
    regions: 4,
    replicas: 3,
    dataDir: dir,
    leaseTtlMs: 1000,
    mode,
    store: { segmentBytes: 256 * 1024, l0Bytes: 256 * 1024 },
  });
  const client = c.client({ operationTimeoutMs: 30_000 });
  let stop = false;
  let acknowledged = 0;
  const value = 'x'.repeat(100);
  const load = Array.from({ length: 64 }, async (_, w) => {
    for (let i = 0; !stop; i++) {
      try {
        await client.put(`${String((w * 7919 + i * 31) % 4096).padStart(4, '0')}-key`, value);
        acknowledged++;
      } catch {
        // a put in the failover window: retried by the next iteration's key
      }
    }
  });
  try {
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const before = new Map(c.regions().map((r) => [r.regionId, r.epoch]));
    const victim = c.regions()[0]!.primary;
    const restartsBeforeKill = c.restarts.length;
    const killedAt = Date.now();
    await c.killNode(victim);
    let wholeMs: number | null = null;
    try {
      await c.waitForRegions(
        (map) =>
          map.every(
            (r) =>
              r.primary !== victim &&
              r.backups.length === 2 &&
              !r.backups.includes(victim) &&
              (r.joining ?? []).length === 0,
          ),
        20_000,
      );
      wholeMs = Date.now() - killedAt;
    } catch {
      wholeMs = null;
    }
    const maxEpochsMoved = Math.max(...c.regions().map((r) => r.epoch - (before.get(r.regionId) ?? r.epoch)));
    return {
      rep,
      mode,
      victim,
      wholeMs,
      maxEpochsMoved,
      restartsBeforeKill,
      restartsAfterKill: c.restarts.length - restartsBeforeKill,
      acknowledged,
    };
  } finally {
    stop = true;
    await Promise.all(load);
    await c.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Whether a repetition met the bound. */
export function stormMet(r: StormRep): boolean {
  return r.wholeMs !== null && r.wholeMs <= STORM_WHOLE_WITHIN_MS && r.maxEpochsMoved <= STORM_MAX_EPOCHS;
}
