/**
 * abstract-level's whole test suite against TalosClusterLevel over TalosClient: every database is
 * an in-process cluster (two nodes, one region with two copies) served over real client endpoints
 * and a real etcd (test/support/served-cluster.ts), and the adapter connects a TalosClient to it
 * at each open (`{ talos }`) — so every get, batch, iterator and snapshot of the suite crosses the
 * client protocol, with server-side cursors and snapshots. Run by the suite's own runner, tape;
 * jest runs it from abstract-suite.test.ts. One region, as abstract-suite-cluster.ts says why.
 */
import { createRequire } from 'node:module';
import { type LocalEtcd, startLocalEtcd } from '../../coordination/etcd-server.js';
import { createLocalCluster, type LocalCluster } from '../../src/cluster/local-cluster.js';
import { TalosClusterLevel } from '../../src/level/index.js';
import { type ServedCluster, serveCluster } from '../support/served-cluster.js';

const require = createRequire(import.meta.url);
const tape = require('tape');
const suite = require('abstract-level/test');

const etcd: LocalEtcd = await startLocalEtcd();

const cluster = {
  nodes: 2,
  regions: 1,
  replicas: 2,
  leaseTtlMs: 5000,
  store: { segmentBytes: 64 * 1024, l0Bytes: 2 * 1024, blockCacheBytes: 1024 * 1024 },
};

/** A database and the cluster it reaches (being started while the adapter's open waits for its map). */
interface Served {
  db: TalosClusterLevel;
  ready: Promise<{ local: LocalCluster; served: ServedCluster }>;
}

let created: Served[] = [];
const end = async (s: Served): Promise<void> => {
  const { local, served } = await s.ready;
  await served.close();
  await local.close();
};
type TapeTest = { teardown(fn: () => Promise<void>): void };
function test(name: string, ...rest: unknown[]): unknown {
  const fn = rest.pop() as (this: unknown, t: TapeTest) => unknown;
  return tape(name, ...rest, function (this: unknown, t: TapeTest) {
    t.teardown(async () => {
      const closed = created.filter((s) => s.db.status === 'closed');
      created = created.filter((s) => s.db.status !== 'closed');
      for (const s of closed) await end(s);
    });
    return fn.call(this, t);
  });
}
Object.assign(test, tape);
tape.onFinish(async () => {
  const left = created.splice(0);
  process.stderr.write(`# ending ${left.length} clusters left open\n`);
  // Only the clusters: closing these databases would run the listeners their (finished) tests
  // left on them (see abstract-suite-cluster.ts); their clients end with the process.
  await Promise.all(left.map(end));
  await etcd.stop({ removeData: true });
  setTimeout(() => process.exit(), 200);
});

let count = 0;
suite({
  test,
  factory(options?: Record<string, unknown>) {
    const name = `served-${process.pid}-${count++}`;
    const ready = (async () => {
      const local = await createLocalCluster(cluster);
      const served = await serveCluster(local, etcd.endpoints, { name });
      return { local, served };
    })();
    ready.catch((err: unknown) => process.stderr.write(`# cluster failed to start: ${String(err)}\n`));
    const db = new TalosClusterLevel({ ...options, talos: { etcd: etcd.endpoints, cluster: name } });
    created.push({ db, ready });
    return db;
  },
});
