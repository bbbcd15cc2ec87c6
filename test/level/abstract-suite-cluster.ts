/**
 * abstract-level's whole test suite against TalosClusterLevel over an in-process cluster (two
 * nodes, one region with two copies: every write is replicated and acknowledged by the backup),
 * with the suite's own runner, tape. See abstract-suite.ts; jest runs it from abstract-suite.test.ts.
 *
 * One region: the suite's batches mix keys freely, and a batch over several regions is refused
 * (CROSS_REGION_BATCH: batches are atomic within a region only). Routing, cross-region cursors and
 * that refusal are tested on a multi-region cluster in cluster-level.test.ts.
 */
import { createRequire } from 'node:module';
import { TalosClusterLevel } from '../../src/level/index.js';

const require = createRequire(import.meta.url);
const tape = require('tape');
const suite = require('abstract-level/test');

// A database a test leaves closed is destroyed (its cluster ended) when the test ends; one left
// open is shared with later tests (the suite's setUp/tearDown pattern) and destroyed at the end.
let created: TalosClusterLevel[] = [];
type TapeTest = { teardown(fn: () => Promise<void>): void };
function test(name: string, ...rest: unknown[]): unknown {
  const fn = rest.pop() as (this: unknown, t: TapeTest) => unknown;
  return tape(name, ...rest, function (this: unknown, t: TapeTest) {
    t.teardown(async () => {
      const closed = created.filter((db) => db.status === 'closed');
      created = created.filter((db) => db.status !== 'closed');
      for (const db of closed) await db.destroy();
    });
    return fn.call(this, t);
  });
}
Object.assign(test, tape);
// At the end only the clusters are ended: closing these databases would run the listeners their
// (finished) tests left on them, which fail on anything after the test.
tape.onFinish(async () => {
  const left = created.splice(0);
  process.stderr.write(`# ending ${left.length} clusters left open\n`);
  await Promise.all(left.map((db) => db.cluster?.close()));
  // An ended in-process cluster may leave a timer behind (jest runs with forceExit for the same
  // reason): exit once the clusters ended; tape prints its summary and sets the code on exit.
  setTimeout(() => process.exit(), 200);
});

const cluster = {
  nodes: 2,
  regions: 1,
  replicas: 2,
  leaseTtlMs: 5000,
  store: { segmentBytes: 64 * 1024, l0Bytes: 2 * 1024, blockCacheBytes: 1024 * 1024 },
};

suite({
  test,
  factory(options?: Record<string, unknown>) {
    const db = new TalosClusterLevel({ ...options, cluster });
    created.push(db);
    return db;
  },
});
