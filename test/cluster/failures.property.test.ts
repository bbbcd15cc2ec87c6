/**
 * Property (PROTOCOL §6–8): random writes and reads across the regions of a four-node cluster
 * (RF = 3) while nodes are killed, restarted, paused past their lease and partitioned (from their
 * peers, from the coordinator, or both, then healed) — one fault at a time, so a region never loses
 * every replica. Checked:
 * - no acknowledged write is lost: at the end every key reads as its last acknowledged value, or as
 *   a later write whose outcome was unknown;
 * - every completed read during the run returned such a value too (no stale read from a fenced
 *   primary);
 * - after healing, every backup reads exactly like its primary;
 * - epochs only grow (the coordinator makes each change exactly one step).
 * Seeds are printed; a failing seed becomes a regression test.
 */
import * as fc from 'fast-check';
import { OutcomeLedger } from '../../src/cluster/outcome-ledger.js';
import { OutcomeUnknownError } from '../../src/errors.js';
import type { ReplicationMode } from '../../src/replication/messages.js';
import { expectNothingLost, expectReplicasEqual, faultCluster, waitWhole } from '../support/cluster.js';
import { propertyParams } from '../support/property.js';

const NODES = ['n1', 'n2', 'n3', 'n4'];

type Fault =
  | { kind: 'kill'; node: number }
  | { kind: 'pause'; node: number; ms: number }
  | { kind: 'partition'; node: number; from: 'peers' | 'coordinator' | 'all'; ms: number }
  | { kind: 'none' };
interface Step {
  writes: { key: number; size: number }[];
  reads: number[];
  fault: Fault;
}

const killArb = fc.record({ kind: fc.constant('kill' as const), node: fc.nat({ max: 3 }) });
const pauseArb = fc.record({
  kind: fc.constant('pause' as const),
  node: fc.nat({ max: 3 }),
  ms: fc.integer({ min: 100, max: 700 }),
});
const partitionArb = fc.record({
  kind: fc.constant('partition' as const),
  node: fc.nat({ max: 3 }),
  from: fc.constantFrom('peers' as const, 'coordinator' as const, 'all' as const),
  ms: fc.integer({ min: 50, max: 700 }),
});
const noneArb = fc.constant({ kind: 'none' as const });

/** Steps with kills, restarts and pauses: the generator the kept regression seeds replay. */
const stepArb: fc.Arbitrary<Step> = fc.record({
  writes: fc.array(fc.record({ key: fc.nat({ max: 59 }), size: fc.nat({ max: 80 }) }), { maxLength: 30 }),
  reads: fc.array(fc.nat({ max: 59 }), { maxLength: 10 }),
  fault: fc.oneof(
    { weight: 2, arbitrary: killArb },
    { weight: 1, arbitrary: pauseArb },
    { weight: 2, arbitrary: noneArb },
  ),
});

/** The same with partitions (from peers, from the coordinator, or both; healed after `ms`). */
const stepWithPartitionsArb: fc.Arbitrary<Step> = fc.record({
  writes: fc.array(fc.record({ key: fc.nat({ max: 59 }), size: fc.nat({ max: 80 }) }), { maxLength: 30 }),
  reads: fc.array(fc.nat({ max: 59 }), { maxLength: 10 }),
  fault: fc.oneof(
    { weight: 2, arbitrary: killArb },
    { weight: 1, arbitrary: pauseArb },
    { weight: 1, arbitrary: partitionArb },
    { weight: 2, arbitrary: noneArb },
  ),
});

/** A key spread over the three regions by its first hex digit. */
const keyOf = (k: number): string => `${'0123456789abcdef'[k % 16]}${k % 3}-key-${k}`;

const propertyOf = (steps: fc.Arbitrary<Step>) =>
  fc.asyncProperty(
    fc.array(steps, { minLength: 1, maxLength: 6, size: 'max' }),
    fc.constantFrom<ReplicationMode>('send-index', 'build-index'),
    async (steps, mode) => {
      const c = await faultCluster({ mode });
      const epochs = new Map<string, number[]>();
      const recordEpochs = (): void => {
        for (const r of c.regions()) {
          const seen = epochs.get(r.regionId) ?? [];
          if (seen.at(-1) !== r.epoch) seen.push(r.epoch);
          epochs.set(r.regionId, seen);
        }
      };
      const timer = setInterval(recordEpochs, 5);
      try {
        const client = c.client({ operationTimeoutMs: 20_000 });
        const ledger = new OutcomeLedger();
        let version = 0;
        let staleReads = 0;
        for (const step of steps) {
          if (process.env.TALOS_DEBUG)
            console.log(
              JSON.stringify(step.fault),
              JSON.stringify(c.regions().map((r) => [r.regionId, r.epoch, r.primary, r.backups.join('+')])),
            );
          // The fault starts while the step's operations are in flight.
          let fault: Promise<void> = Promise.resolve();
          const node = step.fault.kind === 'none' ? undefined : NODES[step.fault.node]!;
          if (step.fault.kind === 'kill') fault = c.killNode(node!);
          else if (step.fault.kind === 'pause') fault = c.pauseNode(node!, step.fault.ms);
          else if (step.fault.kind === 'partition') {
            const { from, ms } = step.fault;
            c.partition(node!, from);
            fault = new Promise((resolve) => setTimeout(resolve, ms)).then(() => c.heal());
          }
          // One write per key in flight at a time, so "the last acknowledged value" is defined.
          const byKey = new Map<number, number>();
          for (const w of step.writes) byKey.set(w.key, w.size);
          await Promise.all([
            ...[...byKey].map(async ([k, size]) => {
              const key = keyOf(k);
              const value = `v${version++}-${'x'.repeat(size)}`;
              try {
                await client.put(key, value);
                ledger.ack(key, value);
              } catch (err) {
                // Unknown outcome (the primary died), or a timeout: either way "maybe".
                if (!(err instanceof OutcomeUnknownError) && !(err instanceof Error)) throw err;
                ledger.unknown(key, value);
              }
            }),
            ...step.reads
              .filter((k) => !byKey.has(k))
              .map(async (k) => {
                const key = keyOf(k);
                const got = await client.get(key).catch(() => 'unavailable');
                if (got !== 'unavailable' && !ledger.accepts(key, got?.toString())) staleReads++;
              }),
          ]);
          await fault;
          if (step.fault.kind === 'kill') await c.restartNode(node!);
          await waitWhole(c);
          recordEpochs();
        }
        expect(staleReads).toBe(0);
        await expectNothingLost(client, ledger);
        await expectReplicasEqual(c);
        for (const [, seen] of epochs) {
          for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeGreaterThan(seen[i - 1]!);
        }
      } finally {
        clearInterval(timer);
        await c.close();
      }
    },
  );

const property = propertyOf(stepArb);
const propertyWithPartitions = propertyOf(stepWithPartitionsArb);

/**
 * The random search: a few runs in `npm test`, many in the soak (`npm run test:soak`, or
 * `TALOS_RUNS=n`). Every seed that ever failed is kept below as a regression.
 */
test('property: kills, restarts, pauses and partitions lose no acknowledged write; replicas converge; epochs grow', async () => {
  const runs = Number(process.env.TALOS_RUNS ?? (process.env.TALOS_SOAK === '1' ? 20 : 10));
  await fc.assert(propertyWithPartitions, propertyParams('cluster under failures', runs));
}, 900_000);

test('regression (seed 1171134928, with partitions): backups that a partitioned primary reported come back once their distrust runs out', async () => {
  // n1, cut off from its peers, reported r0's backups; n3 reported n1. Distrusted for good, no node
  // was left to re-add to r2, which stayed a copy short forever.
  await fc.assert(propertyWithPartitions, { seed: 1171134928, path: '1', numRuns: 1, endOnFailure: true });
});

test('regression (seed 181289786): a backup restarted under a new lease is never promoted as if it kept its buffers', async () => {
  // A node that lost its lease restarted; the controller still listed it as r0's backup and then
  // promoted it: its new incarnation had no buffers and opened a backup store as a primary.
  await fc.assert(property, { seed: 181289786, path: '1', numRuns: 1, endOnFailure: true });
});

test('regression (seed 1810393139): a write acknowledged before a reconfiguration survives the next promotion', async () => {
  // The new epoch's primary served before its backups had persisted the active segment's prefix,
  // which they held only in the previous epoch's buffers; a promotion then read only the new ones.
  await fc.assert(property, { seed: 1810393139, path: '4', numRuns: 1, endOnFailure: true });
});
