/**
 * Checks shared by the whole-cluster failure tests (crash points, the fault property): the
 * durability check against an OutcomeLedger, replica equality after a flush, and "the cluster is
 * whole again" (every region served by a live primary with a full set of live backups).
 */
import { expect } from '@jest/globals';
import type { LocalClient } from '../../src/cluster/client.js';
import {
  createLocalCluster,
  type LocalCluster,
  type LocalClusterOptions,
} from '../../src/cluster/local-cluster.js';
import type { OutcomeLedger } from '../../src/cluster/outcome-ledger.js';
import { expectEquivalent } from './replicas.js';
import { dump } from './store.js';

/**
 * The cluster the failure tests use: four nodes, three regions, RF = 3 (so a region always has a
 * free node to take), short leases, tiny segments and L0 so seals, flushes and compactions happen
 * within a few hundred writes. `overrides` replace fields (`store` merges).
 */
export function faultCluster(overrides: Partial<LocalClusterOptions> = {}): Promise<LocalCluster> {
  return createLocalCluster({
    nodes: 4,
    regions: 3,
    replicas: 3,
    mode: 'send-index',
    leaseTtlMs: 300,
    ...overrides,
    store: {
      segmentBytes: 4096,
      l0Bytes: 1024,
      growthFactor: 2,
      maxLevels: 4,
      maxKeyBytes: 64,
      ...overrides.store,
    },
  });
}

/** Waits until every region has a live primary and `backups` live backups, none joining. */
export async function waitWhole(c: LocalCluster, backups = 2, timeoutMs = 30_000): Promise<void> {
  await c.waitForRegions(
    (map) =>
      map.every(
        (r) =>
          !c.deadNodes().includes(r.primary) &&
          r.backups.length === backups &&
          (r.joining ?? []).length === 0 &&
          r.backups.every((b) => !c.deadNodes().includes(b)),
      ),
    timeoutMs,
  );
}

/** PROTOCOL §8.2: every key reads as its last acknowledged value (or a later unknown-outcome one). */
export async function expectNothingLost(client: LocalClient, ledger: OutcomeLedger): Promise<void> {
  for (const key of ledger.keys()) {
    const got = (await client.get(key))?.toString();
    if (!ledger.accepts(key, got)) {
      throw new Error(`key ${key}: read ${JSON.stringify(got)}, acknowledged ${ledger.ackedKeys.has(key)}`);
    }
  }
}

/**
 * PROTOCOL §8.5 after a flush: every backup reads exactly like its primary; with `levels`, its
 * levels also equal the primary's through its segment map (Send-Index).
 */
export async function expectReplicasEqual(
  c: LocalCluster,
  options: { levels?: boolean } = {},
): Promise<void> {
  await c.flush();
  for (const r of c.regions()) {
    const primary = c.session(r.primary, r.regionId)!.store;
    const expected = await dump(primary);
    for (const b of r.backups) {
      const store = (await c.runtime(b).backupStoresByRegion()).get(r.regionId)!;
      if (options.levels) expectEquivalent(primary, store);
      expect(await dump(store)).toEqual(expected);
    }
  }
}
