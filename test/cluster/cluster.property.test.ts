/**
 * Property (PROTOCOL §3, §5, §8.5): random puts, deletes and scans across the regions of a
 * three-node cluster read like a plain map, and at the end every backup's levels — read through
 * its segment map — equal its primary's. Tiny segments and L0 make seals, flushes, compactions and
 * trivial moves happen constantly. Seeds are printed; a failing seed becomes a regression test.
 */
import * as fc from 'fast-check';
import { createLocalCluster } from '../../src/cluster/local-cluster.js';
import type { ReplicationMode } from '../../src/replication/messages.js';
import { propertyParams } from '../support/property.js';
import { expectEquivalent } from '../support/replicas.js';
import { dump } from '../support/store.js';

const HEX = '0123456789abcdef';
const keyArb = fc
  .tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 60 }))
  .map(([prefix, n]) => `${HEX[prefix >> 4]}${HEX[prefix & 15]}-k${n}`);

type Op =
  | { kind: 'put'; key: string; size: number }
  | { kind: 'delete'; key: string }
  | { kind: 'scan'; gte: string; limit: number; reverse: boolean };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('put' as const),
      key: keyArb,
      size: fc.integer({ min: 0, max: 120 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), key: keyArb }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('scan' as const),
      gte: keyArb,
      limit: fc.integer({ min: 1, max: 40 }),
      reverse: fc.boolean(),
    }),
  },
);

test('property: cluster reads equal a model; backups equal primaries after many compactions', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(opArb, { minLength: 1, maxLength: 600, size: 'max' }),
      fc.boolean(),
      fc.constantFrom<ReplicationMode>('send-index', 'build-index'),
      async (ops, concurrent, mode) => {
        const cluster = await createLocalCluster({
          nodes: 3,
          mode,
          store: { segmentBytes: 4096, l0Bytes: 1024, growthFactor: 2, maxLevels: 4, maxKeyBytes: 64 },
        });
        try {
          const client = cluster.client();
          const model = new Map<string, string>();
          let version = 0;
          // Writes to distinct keys may run concurrently (a batch); a key's writes stay ordered.
          let batch: Promise<void>[] = [];
          let batchKeys = new Set<string>();
          const drain = async (): Promise<void> => {
            await Promise.all(batch);
            batch = [];
            batchKeys = new Set();
          };
          for (const op of ops) {
            if (op.kind === 'scan') {
              await drain();
              const rows = await client.scan({ gte: op.gte, limit: op.limit, reverse: op.reverse });
              const expected = [...model.entries()]
                .filter(([k]) => k >= op.gte)
                .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
              if (op.reverse) expected.reverse();
              expect(rows.map((r) => [r.key.toString('latin1'), r.value.toString()])).toEqual(
                expected.slice(0, op.limit),
              );
              continue;
            }
            if (!concurrent || batchKeys.has(op.key)) await drain();
            const write =
              op.kind === 'put'
                ? client.put(op.key, `v${version++}-${'x'.repeat(op.size)}`)
                : client.delete(op.key);
            if (op.kind === 'put') model.set(op.key, `v${version - 1}-${'x'.repeat(op.size)}`);
            else model.delete(op.key);
            batch.push(write);
            batchKeys.add(op.key);
          }
          await drain();
          for (const [key, value] of model) expect((await client.get(key))?.toString()).toBe(value);
          const all = await client.scan();
          expect(all.length).toBe(model.size);
          // Send-Index: backups hold the primary's levels, translated (§8.5). Build-Index: backups
          // build their own levels; after the primaries flush, they read what the primaries read.
          if (mode === 'send-index') await cluster.settle();
          else await cluster.flush();
          for (const config of cluster.regions()) {
            const primary = cluster.session(config.primary, config.regionId)!.store;
            for (const b of config.backups) {
              const backup = (await cluster.runtime(b).backupStoresByRegion()).get(config.regionId)!;
              if (mode === 'send-index') expectEquivalent(primary, backup);
              else expect(await dump(backup)).toEqual(await dump(primary));
            }
          }
        } finally {
          await cluster.close();
        }
      },
    ),
    propertyParams('cluster model and equivalence', 40),
  );
});
