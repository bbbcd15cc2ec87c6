/**
 * Routing in the stores' key order (issue #17): with region bounds where UTF-16 and UTF-8 orders
 * part ('\uE000' sorts above every surrogate in UTF-16, below every 4-byte sequence in UTF-8),
 * each key lands in the region whose byte range holds it, gets find it, and scans return every
 * key once, in UTF-8 byte order, across the bounds.
 */
import { createLocalCluster, type LocalCluster } from '../../src/cluster/local-cluster.js';

const SMALL = { segmentBytes: 4096, l0Bytes: 2048, growthFactor: 2, maxLevels: 5, maxKeyBytes: 64 };

const REGIONS = [
  { regionId: 'r0', minKey: '', maxKey: '\ue000' },
  { regionId: 'r1', minKey: '\ue000', maxKey: '\u{1f405}' },
  { regionId: 'r2', minKey: '\u{1f405}' },
];

/** Keys on both sides of each bound, astral ones (surrogate pairs in UTF-16) among them. */
const KEYS = [
  'a',
  'zz',
  'é',
  '\u07ff',
  '\ud7ff',
  '\ud7ff\u{1f404}',
  '\ue000',
  '\ue000a',
  '\ue001',
  '\uffff',
  '\u{10000}',
  '\u{1f404}',
  '\u{1f404}z',
  '\u{1f404}\u{10ffff}',
  '\u{1f405}',
  '\u{1f405}a',
  '\u{1f999}',
  '\u{10ffff}',
];

const utf8Order = (a: string, b: string): number =>
  Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
const inBytes = (key: string, min: string, max: string | undefined): boolean =>
  utf8Order(key, min) >= 0 && (max === undefined || utf8Order(key, max) < 0);

let c: LocalCluster | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

test('puts on both sides of byte-order bounds are found by get and returned by scans in UTF-8 order', async () => {
  c = await createLocalCluster({ nodes: 3, replicas: 3, regions: REGIONS, store: SMALL });
  expect(c.regions().map((r) => r.regionId)).toEqual(['r0', 'r1', 'r2']);
  const client = c.client();
  // Each key written twice (in reverse, then in order), so rows come from levels and from L0.
  const shuffled = [...KEYS].reverse();
  for (const key of shuffled) await client.put(key, `old-${key}`);
  for (const config of c.regions()) await c.session(config.primary, config.regionId)!.store.flush();
  for (const key of KEYS) await client.put(key, `v-${key}`);

  for (const key of KEYS) expect((await client.get(key))?.toString()).toBe(`v-${key}`);

  // Each key sits in the store of the region whose byte range holds it, and only there.
  for (const spec of REGIONS) {
    const config = c.regions().find((r) => r.regionId === spec.regionId)!;
    const rows = await c.session(config.primary, config.regionId)!.store.scan();
    const expected = KEYS.filter((k) => inBytes(k, spec.minKey, spec.maxKey)).sort(utf8Order);
    expect(rows.map((row) => row.key.toString('utf8'))).toEqual(expected);
  }

  const sorted = [...KEYS].sort(utf8Order);
  expect(sorted).not.toEqual([...KEYS].sort()); // the two orders do part on these keys
  const all = await client.scan();
  expect(all.map((row) => row.key.toString('utf8'))).toEqual(sorted);
  expect(all.map((row) => row.value.toString())).toEqual(sorted.map((k) => `v-${k}`));
  const reversed = await client.scan({ reverse: true });
  expect(reversed.map((row) => row.key.toString('utf8'))).toEqual([...sorted].reverse());

  // Bounded scans clip at the region bounds in byte order too.
  for (const [gte, lt] of [
    ['\ud7ff', '\u{1f405}a'],
    ['\uffff', '\u{1f404}z'],
    ['\u{10000}', undefined],
    [undefined, '\u{10000}'],
  ] as const) {
    const rows = await client.scan({
      ...(gte === undefined ? {} : { gte }),
      ...(lt === undefined ? {} : { lt }),
    });
    const expected = sorted.filter((k) => inBytes(k, gte ?? '', lt));
    expect(rows.map((row) => row.key.toString('utf8'))).toEqual(expected);
  }
  const limited = await client.scan({ gte: '\ue000', limit: 6 });
  expect(limited.map((row) => row.key.toString('utf8'))).toEqual(
    sorted.filter((k) => inBytes(k, '\ue000', undefined)).slice(0, 6),
  );
});

test('binary keys, UTF-8 or not, route by their bytes; a string key and its UTF-8 bytes are one key', async () => {
  c = await createLocalCluster({ nodes: 3, replicas: 3, regions: REGIONS, store: SMALL });
  const client = c.client();
  // Bytes that are no UTF-8 at all, on both sides of the bounds (EE 80 80 is '\ue000').
  const binary = [
    Buffer.from([0x00]),
    Buffer.from([0x61, 0xff]),
    Buffer.from([0xed, 0xff, 0xff]),
    Buffer.from([0xee, 0x80, 0x80, 0xff]),
    Buffer.from([0xf0, 0x9f, 0x90, 0x85, 0xc0]),
    Buffer.from([0xff, 0xfe, 0xfd]),
  ];
  for (const [i, key] of binary.entries()) await client.put(key, `b${i}`);
  for (const [i, key] of binary.entries())
    expect((await client.get(new Uint8Array(key)))?.toString()).toBe(`b${i}`);
  const bound = (s: string): Buffer => Buffer.from(s, 'utf8');
  for (const spec of REGIONS) {
    const config = c.regions().find((r) => r.regionId === spec.regionId)!;
    const rows = await c.session(config.primary, config.regionId)!.store.scan();
    const expected = binary.filter(
      (k) =>
        Buffer.compare(k, bound(spec.minKey)) >= 0 &&
        (spec.maxKey === undefined || Buffer.compare(k, bound(spec.maxKey)) < 0),
    );
    expect(rows.map((row) => row.key.toString('hex'))).toEqual(expected.map((k) => k.toString('hex')));
  }
  const all = await client.scan({ gte: Buffer.from([0x01]) });
  expect(all.map((row) => row.key.toString('hex'))).toEqual(binary.slice(1).map((k) => k.toString('hex')));
  await client.put('\u{1f404}', 'as a string');
  expect((await client.get(Buffer.from('\u{1f404}', 'utf8')))?.toString()).toBe('as a string');
  await client.delete(Buffer.from('\u{1f404}', 'utf8'));
  expect(await client.get('\u{1f404}')).toBeUndefined();
});
