/**
 * TalosClusterLevel and LocalClient over a multi-region in-process cluster: keys (strings and
 * bytes) route in byte order, iterators cross regions in key order with seeks and snapshots, a
 * batch is atomic in its region and refused whole across regions.
 */
import { createLocalCluster, type LocalCluster } from '../../src/cluster/local-cluster.js';
import { TalosClusterLevel } from '../../src/level/index.js';

let cluster: LocalCluster;

beforeAll(async () => {
  // Regions r0 = ['', '55'), r1 = ['55', 'aa'), r2 = ['aa', ∞).
  cluster = await createLocalCluster({ nodes: 2, regions: 3, replicas: 2, leaseTtlMs: 5000 });
});
afterAll(() => cluster.close());

describe('LocalClient (multi-region)', () => {
  it('routes byte keys in byte order and iterates across regions', async () => {
    const client = cluster.client();
    const keys = ['10', '54', '55', '9f', 'aa', 'zz'];
    for (const k of keys) await client.put(k, `v${k}`);
    await client.put(Uint8Array.from([0xff, 0x00]), 'binary'); // above every UTF-8 string key here
    const all = client.iterator();
    expect(all.all().map((e) => e.key.toString('latin1'))).toEqual([...keys, '\xff\x00']);
    const reverse = client.iterator({ reverse: true, lt: 'zz', gte: '54' });
    expect(reverse.nextv(2).map((e) => e.key.toString())).toEqual(['aa', '9f']);
    reverse.seek('54');
    expect(reverse.all().map((e) => e.key.toString())).toEqual(['54']);
    const limited = client.iterator({ gt: '10', limit: 3 });
    limited.seek('9');
    expect(limited.all().map((e) => e.key.toString())).toEqual(['9f', 'aa', 'zz']);
    expect(await client.has(Buffer.from([0xff, 0x00]))).toBe(true);
    expect((await client.getMany(['55', 'nope'])).map((v) => v?.toString())).toEqual(['v55', undefined]);
    await client.clearRange({ gte: '50', lt: 'b' });
    expect(
      client
        .iterator({ values: false })
        .all()
        .map((e) => e.key.toString('latin1')),
    ).toEqual(['10', 'zz', '\xff\x00']);
  });

  it('refuses a cross-region batch whole; applies an in-region one', async () => {
    const client = cluster.client();
    await expect(
      client.batch([
        { type: 'put', key: '20', value: 'a' },
        { type: 'put', key: '60', value: 'b' },
      ]),
    ).rejects.toMatchObject({ code: 'CROSS_REGION_BATCH' });
    expect(await client.get('20')).toBeUndefined();
    await client.batch([
      { type: 'put', key: '21', value: 'a' },
      { type: 'put', key: '22', value: 'b' },
      { type: 'del', key: '21' },
    ]);
    expect((await client.getMany(['21', '22'])).map((v) => v?.toString())).toEqual([undefined, 'b']);
  });
});

describe('TalosClusterLevel', () => {
  it('reads a consistent snapshot across regions', async () => {
    const db = new TalosClusterLevel<string, string>({ client: cluster.client() });
    await db.open();
    await db.put('30', 'one');
    await db.put('b0', 'two');
    const snapshot = db.snapshot();
    const iterator = db.iterator({ gte: '30', lt: 'c' });
    await db.put('70', 'three');
    await db.del('b0');
    expect(await iterator.all()).toEqual([
      ['30', 'one'],
      ['b0', 'two'],
    ]);
    expect(await db.get('b0', { snapshot })).toBe('two');
    expect(await db.get('b0')).toBeUndefined();
    expect(await db.keys({ snapshot, gte: '30', lt: 'c' }).all()).toEqual(['30', 'b0']);
    expect(await db.keys({ gte: '30', lt: 'c' }).all()).toEqual(['30', '70']);
    await snapshot.close();
    await expect(
      db.batch([
        { type: 'put', key: '01', value: 'x' },
        { type: 'del', key: 'ab' },
      ]),
    ).rejects.toMatchObject({
      code: 'CROSS_REGION_BATCH',
    });
    await db.close();
  });
});

describe('batches across a failover', () => {
  it('acknowledged batches are wholly on the promoted primary, in both replication modes', async () => {
    for (const mode of ['send-index', 'build-index'] as const) {
      const c = await createLocalCluster({
        nodes: 3,
        regions: 1,
        replicas: 3,
        mode,
        leaseTtlMs: 300,
        store: { segmentBytes: 4096, l0Bytes: 1024, growthFactor: 2, maxLevels: 4, maxKeyBytes: 64 },
      });
      try {
        const client = c.client();
        for (let i = 0; i < 40; i++) {
          await client.batch(
            Array.from({ length: 5 }, (_, j) => ({
              type: 'put' as const,
              key: `b${i}-${j}`,
              value: `v${i}-${'x'.repeat(60)}`,
            })),
          );
        }
        const primary = c.regions()[0]!.primary;
        await c.killNode(primary);
        await c.waitForRegions((map) => map.every((r) => r.primary !== primary), 20_000);
        const rows = await client.scan();
        expect(rows.length).toBe(200);
        const counts = new Map<string, number>();
        for (const row of rows) {
          const batch = row.key.toString().split('-')[0]!;
          counts.set(batch, (counts.get(batch) ?? 0) + 1);
        }
        expect([...counts.values()].every((n) => n === 5)).toBe(true);
      } finally {
        await c.close();
      }
    }
  }, 120_000);
});
