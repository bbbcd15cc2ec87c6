/**
 * Crash property: random operations, a SimDevice power loss, reopen — several lifetimes over.
 *
 * A crash happens either after the lifetime's last operation or inside the n-th mutating device
 * operation (write, fsync, manifest replace) — in the middle of a seal, a group commit, a flush or a
 * compaction. The operation in progress then fails with DeviceCrashedError and is not acknowledged.
 * Unsynced writes are dropped or kept at random and the last kept one may be torn.
 *
 * The value log is recovered as a strict prefix (CRC + lsn continuity), so the recovered store must
 * equal the model state after some prefix of the operations that is at least as long as the last
 * durability point (an explicit sync(), a flush, or — with syncPolicy 'always' — every resolved
 * write). That single check covers "every synced write is present with its latest value" and
 * "nothing unsynced appears half-written or out of order". Atomic batches are ops too: the model
 * has no state with half a batch, so a batch torn by the crash must come back whole or not at all.
 * After recovery the store must work.
 */
import * as fc from 'fast-check';
import { SimDevice } from '../../src/engine/sim-device.js';
import { Store } from '../../src/engine/store.js';
import { TalosError } from '../../src/errors.js';
import { propertyParams } from '../support/property.js';
import { dump, sortedEntries, TINY } from '../support/store.js';

type Op =
  | { t: 'put'; key: string; value: Uint8Array }
  | { t: 'del'; key: string }
  | { t: 'batch'; ops: ({ type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string })[] }
  | { t: 'sync' }
  | { t: 'flush' }
  | { t: 'yield' };

type Lifetime = {
  ops: Op[];
  keepProbability: number;
  tearProbability: number;
  crashAtOperation: number | undefined;
};

const keyArb = fc.integer({ min: 0, max: 30 }).map((n) => `key-${n}`);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record({
      t: fc.constant('put' as const),
      key: keyArb,
      value: fc.uint8Array({ maxLength: 900, size: 'max' }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('del' as const), key: keyArb }) },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('batch' as const),
      ops: fc.array(
        fc.oneof(
          fc.record({
            type: fc.constant('put' as const),
            key: keyArb,
            value: fc.uint8Array({ maxLength: 400, size: 'max' }),
          }),
          fc.record({ type: fc.constant('del' as const), key: keyArb }),
        ),
        { minLength: 1, maxLength: 6 },
      ),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ t: 'sync' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'flush' as const }) },
  { weight: 2, arbitrary: fc.constant({ t: 'yield' as const }) },
);
const lifetimeArb: fc.Arbitrary<Lifetime> = fc.record({
  ops: fc.array(opArb, { minLength: 1, maxLength: 120, size: 'max' }),
  keepProbability: fc.constantFrom(0, 0.3, 0.7, 1),
  tearProbability: fc.constantFrom(0, 0.5, 1),
  /** Crash inside the n-th mutating device operation; undefined = after the last op. */
  crashAtOperation: fc.option(fc.integer({ min: 1, max: 60 }), { nil: undefined }),
});

const key = (k: string): string => Buffer.from(k).toString('hex');
const snapshot = (m: Map<string, string>): string => JSON.stringify(sortedEntries(m));

/** Applies one op to the store and, once it resolved, to the model. */
async function apply(
  store: Pick<Store, 'put' | 'delete' | 'batch' | 'sync' | 'flush'>,
  op: Op,
  model: Map<string, string>,
): Promise<void> {
  switch (op.t) {
    case 'put':
      await store.put(op.key, op.value);
      model.set(key(op.key), Buffer.from(op.value).toString('hex'));
      break;
    case 'del':
      await store.delete(op.key);
      model.delete(key(op.key));
      break;
    case 'batch':
      await store.batch(op.ops);
      for (const o of op.ops) {
        if (o.type === 'put') model.set(key(o.key), Buffer.from(o.value).toString('hex'));
        else model.delete(key(o.key));
      }
      break;
    case 'sync':
      await store.sync();
      break;
    case 'flush':
      await store.flush();
      break;
    case 'yield':
      await new Promise((resolve) => setImmediate(resolve));
      break;
  }
}

async function crashRun(seed: number, syncPolicy: 'seal' | 'always', lifetimes: Lifetime[]): Promise<void> {
  const device = new SimDevice({ seed });
  let model = new Map<string, string>();
  for (const [n, lifetime] of lifetimes.entries()) {
    const store = await Store.open({ ...TINY, device: device.attach(), syncPolicy });
    expect(snapshot(await dump(store))).toBe(snapshot(model));
    // states[i] = model after the first i ops of this lifetime.
    const states = [snapshot(model)];
    let durable = 0;
    const crashOptions = {
      keepProbability: lifetime.keepProbability,
      tearProbability: lifetime.tearProbability,
    };
    if (lifetime.crashAtOperation !== undefined)
      device.scheduleCrash(lifetime.crashAtOperation, crashOptions);
    let crashedInside = false;
    for (const op of lifetime.ops) {
      const candidate = new Map(model);
      try {
        await apply(store, op, candidate);
      } catch (err) {
        // A crash inside a group's sync fails the group after its append: an unknown outcome.
        if (
          !(err instanceof TalosError) ||
          !['DEVICE_CRASHED', 'STORE_FAILED', 'OUTCOME_UNKNOWN'].includes(err.code)
        )
          throw err;
        // The interrupted operation was not acknowledged: its effect may or may not survive.
        await apply(new NullStore(), op, candidate);
        states.push(snapshot(candidate));
        crashedInside = true;
        break;
      }
      model = candidate;
      states.push(snapshot(model));
      if (op.t === 'sync' || op.t === 'flush' || (syncPolicy === 'always' && op.t !== 'yield'))
        durable = states.length - 1;
    }
    if (!crashedInside) device.crash(crashOptions);
    // The abandoned store may still have background work: it must fail, not write past the crash.
    await new Promise((resolve) => setImmediate(resolve));

    const recovered = await Store.open({ ...TINY, device: device.attach(), syncPolicy });
    const got = snapshot(await dump(recovered));
    const prefix = states.indexOf(got, durable);
    if (prefix < 0) {
      throw new Error(
        `lifetime ${n}: recovered state is not a prefix state at or after the durable point ${durable}\n` +
          `recovered: ${got.slice(0, 400)}\nat durable: ${states[durable]!.slice(0, 400)}`,
      );
    }
    model = new Map(JSON.parse(got) as [string, string][]);
    // Usable: a write after recovery is readable, and survives a clean reopen.
    await recovered.put('after-crash', `lifetime-${n}`);
    expect((await recovered.get('after-crash'))?.toString()).toBe(`lifetime-${n}`);
    await recovered.close();
    model.set(key('after-crash'), Buffer.from(`lifetime-${n}`).toString('hex'));
  }
}

/** Stands in for the store when replaying an interrupted op onto the model alone. */
class NullStore {
  async put(): Promise<void> {}
  async delete(): Promise<void> {}
  async batch(): Promise<void> {}
  async sync(): Promise<void> {}
  async flush(): Promise<void> {}
}

describe('crash recovery', () => {
  for (const syncPolicy of ['seal', 'always'] as const) {
    it(`recovers a prefix at least as long as the last durability point (syncPolicy=${syncPolicy})`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.integer(),
          fc.array(lifetimeArb, { minLength: 1, maxLength: 4 }),
          (seed, lifetimes) => crashRun(seed, syncPolicy, lifetimes),
        ),
        propertyParams(`crash ${syncPolicy}`, syncPolicy === 'seal' ? 150 : 60),
      );
    });
  }
});
