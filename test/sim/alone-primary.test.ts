/**
 * Regression (issue 17, item 1): acknowledged writes lost at a fresh primary's kill. A pause of one
 * node and a partition of another left a region's primary with no backup of its configuration
 * (the others were removed, or re-joining); it acknowledged writes held only in its memory, and a
 * kill moments later took them. Reproduced in the simulated world: both backups cut off past their
 * lease, writes acknowledged by the primary alone, the primary killed and restarted.
 */

import { SimDevice } from '../../src/engine/sim-device.js';
import { Store } from '../../src/engine/store.js';
import { OutcomeUnknownError, StoreClosedError } from '../../src/errors.js';
import { SimWorld } from '../../src/sim/world.js';

const STORE = { segmentBytes: 4096, l0Bytes: 1024, growthFactor: 2, maxLevels: 4, maxKeyBytes: 64 };

test.each([
  ['send-index', 1],
  ['build-index', 2],
] as const)(
  'a primary left alone acknowledges only what its own device holds (%s, K=%i)',
  async (mode, k) => {
    const world = await SimWorld.create({
      seed: 7,
      nodes: 3,
      regions: 1,
      replicas: 3,
      mode,
      leaseTtlMs: 300,
      logBufferCount: k,
      store: STORE,
    });
    try {
      const c = world.localCluster;
      const client = c.client({ operationTimeoutMs: 20_000 });
      const initial = c.regions()[0]!;
      // Acknowledged with both backups holding it in their buffers only (no seal yet).
      await world.run(client.put('before', 'v-before'));
      for (const b of initial.backups) c.partition(b, 'all');
      for (let i = 0; i < 80 && c.regions()[0]!.backups.length > 0; i++) await world.sleep(25);
      const alone = c.regions()[0]!;
      expect(alone.primary).toBe(initial.primary);
      expect(alone.backups).toEqual([]);
      const acked: string[] = [];
      for (let i = 0; i < 5; i++) {
        await world.run(client.put('k', `v-${i}`));
        acked.push(`v-${i}`);
      }
      c.heal();
      // Killed moments after its last acknowledgement; its simulated disk keeps only what was synced.
      await world.run(c.killNode(alone.primary));
      await world.run(c.restartNode(alone.primary));
      await world.run(
        c.waitForRegions((m) => m.every((r) => c.session(r.primary, r.regionId)?.isServing === true), 60_000),
        120_000,
      );
      expect((await world.run(client.get('k')))?.toString()).toBe(acked.at(-1));
      expect((await world.run(client.get('before')))?.toString()).toBe('v-before');
    } finally {
      await world.close();
    }
  },
  60_000,
);

test('a store closed under in-flight gated groups applies them: none is refused as closed', async () => {
  const store = await Store.open({ device: new SimDevice(), ...STORE, autoCompact: false });
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  store.setCommitGate(() => gate);
  const write = store.put('a', 'one');
  await new Promise((resolve) => setImmediate(resolve)); // the group is handed to the gate
  const first = store.close();
  const second = store.close(); // a second close waits for the first
  await expect(store.put('b', 'two')).rejects.toBeInstanceOf(StoreClosedError); // nothing new appended
  release();
  await expect(write).resolves.toBeUndefined();
  await Promise.all([first, second]);
  expect(store.isClosed).toBe(true);
});

test('a group whose gate fails after the append is an unknown outcome, never a definite failure', async () => {
  const store = await Store.open({ device: new SimDevice(), ...STORE, autoCompact: false });
  store.setCommitGate(() => Promise.reject(new Error('backup link broke')));
  await expect(store.put('a', 'one')).rejects.toBeInstanceOf(OutcomeUnknownError);
  await store.close();
});
