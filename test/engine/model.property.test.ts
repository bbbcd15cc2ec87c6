/**
 * Model-based property test: random put/delete/get/scan/flush/compact/reopen sequences against a
 * Map model, on tiny segments and L0 so seals, flushes and multi-level compactions happen all the
 * time. After every command the store must answer exactly as the model does.
 */
import * as fc from 'fast-check';
import { SimDevice } from '../../src/engine/sim-device.js';
import { Store } from '../../src/engine/store.js';
import { propertyParams } from '../support/property.js';
import { sortedEntries, TINY } from '../support/store.js';

type Model = { data: Map<string, string> };
type Real = { store: Store; device: SimDevice; syncPolicy: 'seal' | 'always' };
type Cmd = fc.AsyncCommand<Model, Real, false>;

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

// Keys: a small space so keys are overwritten and deleted often, including bytes 0x00 and 0xff
// and prefixes of one another (byte-order edge cases).
const keyArb = fc.oneof(
  fc.integer({ min: 0, max: 40 }).map((n) => Buffer.from(`k${n}`)),
  fc
    .uint8Array({ minLength: 0, maxLength: 3 })
    .map((a) => Buffer.from(a.map((x) => [0, 1, 0x7f, 0x80, 0xff][x % 5]!))),
);
const valueArb = fc.oneof(
  fc.uint8Array({ minLength: 0, maxLength: 40 }),
  fc.uint8Array({ minLength: 100, maxLength: 1500, size: 'max' }),
);

class PutCmd implements Cmd {
  constructor(
    readonly key: Buffer,
    readonly value: Uint8Array,
  ) {}
  check = () => true;
  async run(m: Model, r: Real) {
    await r.store.put(this.key, this.value);
    m.data.set(hex(this.key), hex(this.value));
  }
  toString = () => `put(${hex(this.key)}, ${this.value.length}B)`;
}

class DeleteCmd implements Cmd {
  constructor(readonly key: Buffer) {}
  check = () => true;
  async run(m: Model, r: Real) {
    await r.store.delete(this.key);
    m.data.delete(hex(this.key));
  }
  toString = () => `delete(${hex(this.key)})`;
}

class GetCmd implements Cmd {
  constructor(readonly key: Buffer) {}
  check = () => true;
  async run(m: Model, r: Real) {
    const got = await r.store.get(this.key);
    expect(got === undefined ? undefined : hex(got)).toBe(m.data.get(hex(this.key)));
  }
  toString = () => `get(${hex(this.key)})`;
}

class ScanCmd implements Cmd {
  constructor(
    readonly gte: Buffer | undefined,
    readonly lt: Buffer | undefined,
    readonly limit: number | undefined,
    readonly reverse: boolean,
  ) {}
  check = () => true;
  async run(m: Model, r: Real) {
    let expected = sortedEntries(m.data).filter(([k]) => {
      const key = Buffer.from(k, 'hex');
      return (
        (this.gte === undefined || Buffer.compare(key, this.gte) >= 0) &&
        (this.lt === undefined || Buffer.compare(key, this.lt) < 0)
      );
    });
    if (this.reverse) expected.reverse();
    if (this.limit !== undefined) expected = expected.slice(0, this.limit);
    const got = await r.store.scan({ gte: this.gte, lt: this.lt, limit: this.limit, reverse: this.reverse });
    expect(got.map(({ key, value }) => [hex(key), hex(value)])).toEqual(expected);
  }
  toString = () =>
    `scan(${this.gte ? hex(this.gte) : '-'}, ${this.lt ? hex(this.lt) : '-'}, ${this.limit ?? '∞'}, ${this.reverse ? 'rev' : 'fwd'})`;
}

class FlushCmd implements Cmd {
  check = () => true;
  async run(_m: Model, r: Real) {
    await r.store.flush();
    expect(r.store.stats().l0.entryCount).toBe(0);
  }
  toString = () => 'flush()';
}

class CompactCmd implements Cmd {
  check = () => true;
  async run(m: Model, r: Real) {
    await r.store.compactAll();
    const levels = r.store.stats().levels;
    // Everything sits in the deepest level, tombstones dropped: its entries are exactly the model.
    expect(levels.slice(0, -1).every((l) => l.entryCount === 0)).toBe(true);
    expect(levels[levels.length - 1]!.entryCount).toBe(m.data.size);
  }
  toString = () => 'compactAll()';
}

class ReopenCmd implements Cmd {
  check = () => true;
  async run(_m: Model, r: Real) {
    record(r.store);
    await r.store.close();
    r.store = await Store.open({ ...TINY, device: r.device, syncPolicy: r.syncPolicy });
  }
  toString = () => 'reopen()';
}

const commands = [
  fc.tuple(keyArb, valueArb).map(([k, v]) => new PutCmd(k, v)),
  fc.tuple(keyArb, valueArb).map(([k, v]) => new PutCmd(k, v)),
  fc.tuple(keyArb, valueArb).map(([k, v]) => new PutCmd(k, v)),
  keyArb.map((k) => new DeleteCmd(k)),
  keyArb.map((k) => new GetCmd(k)),
  fc
    .tuple(
      fc.option(keyArb, { nil: undefined }),
      fc.option(keyArb, { nil: undefined }),
      fc.option(fc.nat(20), { nil: undefined }),
      fc.boolean(),
    )
    .map(([a, b, l, rev]) => new ScanCmd(a, b, l, rev)),
  fc.constant(new FlushCmd()),
  fc.constant(new CompactCmd()),
  fc.constant(new ReopenCmd()),
];

/** What the runs exercised, so the test proves it reached seals, flushes and deep levels. */
const tally = { commands: 0, flushes: 0, compactions: 0, trivialMoves: 0, deepestLevel: 0, logSegments: 0 };

function record(store: Store): void {
  const stats = store.stats();
  tally.flushes += stats.flushCount;
  tally.compactions += stats.compactionCount;
  tally.trivialMoves += stats.trivialMoveCount;
  tally.logSegments = Math.max(tally.logSegments, stats.logSegmentCount);
  for (const level of stats.levels)
    if (level.segmentCount > 0) tally.deepestLevel = Math.max(tally.deepestLevel, level.level);
}

describe('Store against a Map model', () => {
  afterAll(() => {
    process.stderr.write(`[property] model tally: ${JSON.stringify(tally)}\n`);
    expect(tally.flushes).toBeGreaterThan(50);
    expect(tally.compactions).toBeGreaterThan(20);
    expect(tally.trivialMoves).toBeGreaterThan(0);
    expect(tally.deepestLevel).toBe(TINY.maxLevels);
    expect(tally.logSegments).toBeGreaterThan(5);
  });

  for (const syncPolicy of ['seal', 'always'] as const) {
    it(`agrees with the model on every command (syncPolicy=${syncPolicy})`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.commands(commands, { maxCommands: 400, size: 'max' }), async (cmds) => {
          const device = new SimDevice();
          const real: Real = { device, store: await Store.open({ ...TINY, device, syncPolicy }), syncPolicy };
          const model: Model = { data: new Map() };
          await fc.asyncModelRun(() => ({ model, real }), cmds);
          tally.commands += [...cmds].length;
          record(real.store);
          // Final full check, then the store must survive a clean reopen unchanged.
          const before = await real.store.scan();
          await real.store.close();
          const reopened = await Store.open({ ...TINY, device, syncPolicy });
          expect((await reopened.scan()).map((e) => [hex(e.key), hex(e.value)])).toEqual(
            before.map((e) => [hex(e.key), hex(e.value)]),
          );
          await reopened.close();
        }),
        propertyParams(`model ${syncPolicy}`, syncPolicy === 'seal' ? 60 : 25),
      );
    });
  }
});
