/**
 * TalosClient's batching, in-flight window and binary keys on real sockets and a real etcd: two
 * client endpoints (n1 serves r0 = ['', 'm'), n2 serves r1 = ['m', ∞)) over in-memory sessions.
 * - Operations issued in one tick to one node leave in one request frame; the replies come back
 *   batched (the endpoint's observeFrame counts both).
 * - `maxInFlight` bounds the operations a connection carries; the rest wait unsent, and
 *   `inFlight` reports the window's occupancy.
 * - The error contract holds per operation inside a batch: each gets its own outcome; when the
 *   connection breaks, the sent writes are OutcomeUnknownError and the queued ones, which never
 *   left, end as a definite OperationTimeoutError.
 * - GOAWAY: a closing node names the last request it started; the started writes end unknown, the
 *   later ones definite. (Whether a late batch was written into the closing socket or refused
 *   depends on timing here; test/server/node-process.test.ts's stopped node is the case where it
 *   is written — without GOAWAY every write of that batch came back as an unknown outcome.)
 * - Keys that are not UTF-8 travel as their bytes and route by region in byte order; a string key
 *   is its UTF-8 bytes (so 'abc' and Buffer.from('abc') are one key).
 */
import { EtcdCoordinator } from '../../coordination/etcd.js';
import { type LocalEtcd, startLocalEtcd } from '../../coordination/etcd-server.js';
import type { Membership } from '../../coordination/types.js';
import { TalosClient } from '../../src/client/talos-client.js';
import type { RegionSession } from '../../src/cluster/client.js';
import type { KeyValue, ScanOptions } from '../../src/engine/store.js';
import {
  KeyTooLargeError,
  OperationTimeoutError,
  OutcomeUnknownError,
  TalosError,
} from '../../src/errors.js';
import { type KeyLike, keyBytesOf } from '../../src/keys.js';
import { type ClientServer, startClientServer } from '../../src/server/client-server.js';

jest.setTimeout(60_000);

let etcd: LocalEtcd;
let coordinator: EtcdCoordinator;
const memberships: Membership[] = [];
let clusterCount = 0;

beforeAll(async () => {
  etcd = await startLocalEtcd();
}, 30_000);
afterAll(async () => {
  await etcd?.stop({ removeData: true });
});

/** An in-memory region session: rows by key bytes, every call recorded, puts optionally held. */
class MemorySession implements RegionSession {
  readonly isServing = true;
  readonly rows = new Map<string, Buffer>();
  readonly calls: { op: string; key: Buffer }[] = [];
  /** While set, puts wait here until released (oldest first). */
  hold = false;
  readonly held: (() => void)[] = [];
  maxHeld = 0;
  /** Keys (hex) a put refuses with KeyTooLargeError, a definite failure. */
  readonly refuse = new Set<string>();

  async put(key: KeyLike, value: Uint8Array | string): Promise<void> {
    const k = Buffer.from(keyBytesOf(key));
    this.calls.push({ op: 'put', key: k });
    if (this.refuse.has(k.toString('hex'))) throw new KeyTooLargeError(k.length, 1);
    if (this.hold) {
      await new Promise<void>((resolve) => {
        this.held.push(resolve);
        this.maxHeld = Math.max(this.maxHeld, this.held.length);
      });
    }
    this.rows.set(k.toString('hex'), Buffer.from(value));
  }

  async delete(key: KeyLike): Promise<void> {
    const k = Buffer.from(keyBytesOf(key));
    this.calls.push({ op: 'delete', key: k });
    this.rows.delete(k.toString('hex'));
  }

  async get(key: KeyLike): Promise<Buffer | undefined> {
    const k = Buffer.from(keyBytesOf(key));
    this.calls.push({ op: 'get', key: k });
    return this.rows.get(k.toString('hex'));
  }

  async scan(options: ScanOptions): Promise<KeyValue[]> {
    const gte = keyBytesOf(options.gte ?? '');
    const lt = options.lt === undefined ? undefined : keyBytesOf(options.lt);
    const rows = [...this.rows]
      .map(([hex, value]) => ({ key: Buffer.from(hex, 'hex'), value }))
      .filter((r) => Buffer.compare(r.key, gte) >= 0 && (lt === undefined || Buffer.compare(r.key, lt) < 0))
      .sort((a, b) => Buffer.compare(a.key, b.key));
    if (options.reverse) rows.reverse();
    return rows.slice(0, options.limit ?? rows.length);
  }

  releaseOne(): boolean {
    const next = this.held.shift();
    next?.();
    return next !== undefined;
  }
}

interface Node {
  session: MemorySession;
  server: ClientServer;
  frames: { requests: number[]; replies: number[] };
}

/** Two endpoints (n1: r0 = ['', 'm'), n2: r1 = ['m', ∞)) listed in etcd under a fresh cluster name. */
async function twoNodes(): Promise<{ cluster: string; n1: Node; n2: Node; stop(): Promise<void> }> {
  const cluster = `batching-${process.pid}-${clusterCount++}`;
  coordinator = new EtcdCoordinator({ endpoints: etcd.endpoints, cluster });
  const start = async (nodeId: string): Promise<Node> => {
    const session = new MemorySession();
    const frames = { requests: [] as number[], replies: [] as number[] };
    const server = await startClientServer({
      address: 'tcp://127.0.0.1:0',
      nodeId,
      session: () => session,
      observeFrame: (direction, count) => frames[direction].push(count),
    });
    memberships.push(
      await coordinator.join(
        { nodeId, fabricAddress: 'tcp://127.0.0.1:1', clientAddress: server.address },
        5000,
      ),
    );
    return { session, server, frames };
  };
  const n1 = await start('n1');
  const n2 = await start('n2');
  for (const region of [
    { regionId: 'r0', minKey: '', maxKey: 'm', primary: 'n1' },
    { regionId: 'r1', minKey: 'm', primary: 'n2' },
  ]) {
    const created = await coordinator.compareAndSetRegion(0, {
      ...region,
      epoch: 1,
      backups: [],
      state: 'active',
    });
    expect(created.ok).toBe(true);
  }
  return {
    cluster,
    n1,
    n2,
    stop: async () => {
      for (const m of memberships.splice(0)) await m.leave().catch(() => {});
      await n1.server.close();
      await n2.server.close();
      await coordinator.close();
    },
  };
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

test('operations issued in one tick to one node leave in one frame; the replies come back batched', async () => {
  const nodes = await twoNodes();
  const client = await TalosClient.connect({ etcd: etcd.endpoints, cluster: nodes.cluster });
  try {
    await client.put('a-warmup', 'v'); // opens the connection to n1
    nodes.n1.frames.requests.length = 0;
    nodes.n1.frames.replies.length = 0;
    const keys = Array.from({ length: 200 }, (_, i) => `a${String(i).padStart(3, '0')}`);
    await Promise.all(keys.map((k) => client.put(k, `value of ${k}`)));
    expect(nodes.n1.frames.requests).toEqual([200]);
    expect(sum(nodes.n1.frames.replies)).toBe(200);
    expect(nodes.n1.frames.replies.length).toBeLessThanOrEqual(2);
    const values = await Promise.all(keys.map((k) => client.get(k)));
    expect(values.map((v) => v?.toString())).toEqual(keys.map((k) => `value of ${k}`));
    expect(nodes.n1.frames.requests).toEqual([200, 200]);
    expect(nodes.n2.frames.requests).toEqual([]); // every key is below 'm'
    expect(client.inFlight).toBe(0);
  } finally {
    await client.close();
    await nodes.stop();
  }
});

test('maxInFlight bounds what a connection carries; the rest wait unsent; inFlight reports it', async () => {
  const nodes = await twoNodes();
  const client = await TalosClient.connect({ etcd: etcd.endpoints, cluster: nodes.cluster, maxInFlight: 8 });
  try {
    expect(client.maxInFlight).toBe(8);
    await client.put('a-warmup', 'v');
    const { session } = nodes.n1;
    session.hold = true;
    const callsBefore = session.calls.length;
    const puts = Array.from({ length: 30 }, (_, i) => client.put(`b${i}`, 'v'));
    await waitFor(() => session.held.length === 8);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(session.calls.length - callsBefore).toBe(8); // the other 22 never left the client
    expect(client.inFlight).toBe(8);
    let done = false;
    const all = Promise.all(puts).then(() => {
      done = true;
    });
    while (!done) {
      if (!session.releaseOne()) await new Promise((resolve) => setTimeout(resolve, 2));
      expect(client.inFlight).toBeLessThanOrEqual(8);
    }
    await all;
    expect(session.maxHeld).toBe(8);
    expect(session.calls.length - callsBefore).toBe(30);
    expect(client.inFlight).toBe(0);
  } finally {
    await client.close();
    await nodes.stop();
  }
});

test('each operation of a batch gets its own outcome', async () => {
  const nodes = await twoNodes();
  const client = await TalosClient.connect({ etcd: etcd.endpoints, cluster: nodes.cluster });
  try {
    await client.put('c-present', 'here');
    nodes.n1.session.refuse.add(Buffer.from('c-refused').toString('hex'));
    nodes.n1.frames.requests.length = 0;
    const outcomes = await Promise.allSettled([
      client.put('c-ok', 'v'),
      client.put('c-refused', 'v'),
      client.get('c-missing'),
      client.get('c-present'),
      client.delete('c-present'),
    ]);
    expect(nodes.n1.frames.requests).toEqual([5]); // one frame
    expect(outcomes[0]).toEqual({ status: 'fulfilled', value: undefined });
    expect(outcomes[1]!.status).toBe('rejected');
    const refused = (outcomes[1] as PromiseRejectedResult).reason as TalosError;
    expect(refused).toBeInstanceOf(TalosError);
    expect(refused.code).toBe('KEY_TOO_LARGE'); // definite: not an unknown outcome
    expect(outcomes[2]).toEqual({ status: 'fulfilled', value: undefined });
    expect(outcomes[3]).toEqual({ status: 'fulfilled', value: Buffer.from('here') });
    expect(outcomes[4]).toEqual({ status: 'fulfilled', value: undefined });
    expect(await client.get('c-ok')).toEqual(Buffer.from('v'));
    expect(await client.get('c-refused')).toBeUndefined();
  } finally {
    await client.close();
    await nodes.stop();
  }
});

test('a broken connection: sent writes are unknown outcomes, queued ones never left (a definite timeout)', async () => {
  const nodes = await twoNodes();
  const client = await TalosClient.connect({
    etcd: etcd.endpoints,
    cluster: nodes.cluster,
    maxInFlight: 2,
    operationTimeoutMs: 1500,
  });
  try {
    await client.put('d-warmup', 'v');
    const { session } = nodes.n1;
    session.hold = true;
    const callsBefore = session.calls.length;
    const puts = ['d1', 'd2', 'd3', 'd4'].map((k) =>
      client.put(k, 'v').then(
        () => 'acknowledged',
        (err: unknown) => err,
      ),
    );
    await waitFor(() => session.held.length === 2);
    await nodes.n1.server.close(); // the connection breaks with d1, d2 sent and d3, d4 queued
    const [d1, d2, d3, d4] = await Promise.all(puts);
    expect(d1).toBeInstanceOf(OutcomeUnknownError);
    expect(d2).toBeInstanceOf(OutcomeUnknownError);
    expect(d3).toBeInstanceOf(OperationTimeoutError);
    expect(d4).toBeInstanceOf(OperationTimeoutError);
    expect(session.calls.length - callsBefore).toBe(2);
  } finally {
    await client.close();
    await nodes.stop();
  }
});

test('GOAWAY: requests sent after the last one the closing node started end definite; started ones unknown', async () => {
  const nodes = await twoNodes();
  const client = await TalosClient.connect({
    etcd: etcd.endpoints,
    cluster: nodes.cluster,
    operationTimeoutMs: 1500,
  });
  try {
    await client.put('e-warmup', 'v');
    const { session } = nodes.n1;
    session.hold = true;
    const callsBefore = session.calls.length;
    const settle = (k: string): Promise<unknown> =>
      client.put(k, 'v').then(
        () => 'acknowledged',
        (err: unknown) => err,
      );
    const started = ['e1', 'e2'].map(settle);
    await waitFor(() => session.held.length === 2);
    const closing = nodes.n1.server.close(); // GOAWAY with e2's id, then the close
    // Sent in the same tick as the close: written into a socket the node is closing, or refused.
    const late = ['e3', 'e4', 'e5'].map(settle);
    await closing;
    for (const outcome of await Promise.all(started)) expect(outcome).toBeInstanceOf(OutcomeUnknownError);
    for (const outcome of await Promise.all(late)) expect(outcome).toBeInstanceOf(OperationTimeoutError);
    expect(session.calls.length - callsBefore).toBe(2);
  } finally {
    await client.close();
    await nodes.stop();
  }
});

test('binary keys travel as bytes and route by region in byte order', async () => {
  const nodes = await twoNodes();
  const client = await TalosClient.connect({ etcd: etcd.endpoints, cluster: nodes.cluster });
  try {
    const cases: { key: KeyLike; node: 'n1' | 'n2' }[] = [
      { key: Buffer.from([0xff, 0xfe]), node: 'n2' }, // not UTF-8; above 'm' (0x6d)
      { key: Buffer.from([0x6c, 0xff, 0x00]), node: 'n1' }, // 'l' then non-UTF-8: below 'm'
      { key: new Uint8Array([0x6d]), node: 'n2' }, // exactly the bound: the upper region
      { key: Buffer.from([0x00]), node: 'n1' },
      { key: Buffer.from([0xc3, 0x28]), node: 'n2' }, // an invalid UTF-8 sequence
      { key: 'é', node: 'n2' }, // UTF-8 C3 A9
      { key: 'abc', node: 'n1' },
    ];
    for (const [i, c] of cases.entries()) await client.put(c.key, Buffer.from([i, 0xff]));
    for (const [i, c] of cases.entries()) {
      const hex = keyBytesOf(c.key).toString('hex');
      const here = nodes[c.node].session.rows;
      const there = nodes[c.node === 'n1' ? 'n2' : 'n1'].session.rows;
      expect({ hex, stored: here.get(hex), elsewhere: there.has(hex) }).toEqual({
        hex,
        stored: Buffer.from([i, 0xff]),
        elsewhere: false,
      });
      expect(await client.get(c.key)).toEqual(Buffer.from([i, 0xff]));
    }
    // A string key is its UTF-8 bytes.
    expect(await client.get(Buffer.from('abc'))).toEqual(Buffer.from([6, 0xff]));
    expect(await client.get(Buffer.from('é'))).toEqual(Buffer.from([5, 0xff]));
    // A scan with binary bounds crosses both regions in byte order.
    const rows = await client.scan({ gte: Buffer.from([0x01]), lt: Buffer.from([0xff, 0xff]) });
    const expected = cases
      .map((c) => keyBytesOf(c.key))
      .filter(
        (k) =>
          Buffer.compare(k, Buffer.from([0x01])) >= 0 && Buffer.compare(k, Buffer.from([0xff, 0xff])) < 0,
      )
      .sort(Buffer.compare);
    expect(rows.map((r) => r.key.toString('hex'))).toEqual(expected.map((k) => k.toString('hex')));
    await client.delete(Buffer.from([0xff, 0xfe]));
    expect(await client.get(Buffer.from([0xff, 0xfe]))).toBeUndefined();
    expect(nodes.n2.session.rows.has('fffe')).toBe(false);
  } finally {
    await client.close();
    await nodes.stop();
  }
});

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return true;
}
