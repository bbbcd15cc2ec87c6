/**
 * The Fabric contract (src/fabric/types.ts), as a suite every fabric must pass: memory now, tcp and
 * rdma when they land. It uses only the contract — no fault API — so one suite fits all:
 *
 * - listen/connect with a handshake the acceptor sees (node id, epoch) and may refuse;
 * - one-sided writes placing bytes exactly at an offset of the peer's registered region, resolving
 *   only once placed; bounds checked before anything is placed; large and concurrent writes;
 *   the caller may reuse its buffer at once, a plain one or one it transferred (transfer.ts);
 *   writes issued together into a revoked and a live region fail only for the revoked one;
 * - ordering: a message sent after a write completed is delivered after its bytes are visible;
 *   messages arrive in send order in both directions (RC semantics);
 * - revoke: later writes into a revoked region fail, earlier bytes stay, the connection stays usable;
 * - close: the peer learns of it, later operations fail with ConnectionClosedError, idempotent;
 *   closing the fabric closes its connections and listeners;
 * - stats: bytes and counts on both ends.
 *
 * `laterWritesMayLandFirst` (rdma): a one-sided write issued after a message may be placed before
 * the receiver's handler runs for that message — the NIC places bytes with no code running, so
 * only the contract's rule holds (every write issued before the message is visible when it is
 * handled). The ordering property then accepts, at each byte, the value of the snapshot or of a
 * write issued after the message; memory and tcp keep the exact check.
 */
import * as fc from 'fast-check';
import {
  ConnectionClosedError,
  FabricError,
  HandshakeRefusedError,
  RegionRevokedError,
  WriteOutOfBoundsError,
} from '../../src/errors.js';
import { TRANSFER_MIN_BYTES, transferBytes } from '../../src/fabric/transfer.js';
import type { Connection, Fabric, Handshake, Listener, LocalRegion } from '../../src/fabric/types.js';
import { propertyParams } from '../support/property.js';

export interface FabricEnv {
  /** The fabric a node uses (one shared instance in memory; one per node for tcp and rdma). */
  fabricFor(nodeId: string): Fabric;
  /** The address to listen on for `nodeId` (the Listener reports the address to connect to). */
  listenAddress(nodeId: string): string;
  /** Addresses nobody listens on. */
  unusedAddress(): string;
  teardown(): Promise<void>;
}

interface Pair {
  client: Connection;
  server: Connection;
  handshakes: Handshake[];
  listener: Listener;
}

/** Waits until `predicate` holds, polling on timers (fabrics deliver asynchronously). */
export async function eventually(predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

export interface ConformanceOptions {
  /** One-sided writes issued after a message may be visible when the message is handled (rdma). */
  laterWritesMayLandFirst?: boolean;
}

export function describeFabricConformance(
  name: string,
  makeEnv: () => Promise<FabricEnv>,
  options: ConformanceOptions = {},
): void {
  describe(`fabric conformance: ${name}`, () => {
    let env: FabricEnv;
    beforeEach(async () => {
      env = await makeEnv();
    });
    afterEach(async () => {
      await env.teardown();
    });

    async function pair(epoch = 7, accept?: (h: Handshake) => true | string): Promise<Pair> {
      const handshakes: Handshake[] = [];
      let server: Connection | undefined;
      const listener = await env.fabricFor('b').listen(
        env.listenAddress('b'),
        {
          nodeId: 'b',
          accept: (h) => {
            handshakes.push(h);
            return accept ? accept(h) : true;
          },
        },
        (connection) => {
          server = connection;
        },
      );
      const client = await env.fabricFor('a').connect(listener.address, { nodeId: 'a', epoch });
      await eventually(() => server !== undefined);
      return { client, server: server!, handshakes, listener };
    }

    /** Registers a region of `bytes` on the server side and returns both views. */
    function region(
      p: Pair,
      bytes: number,
    ): { local: LocalRegion; remote: ReturnType<Connection['remoteRegion']> } {
      const local = p.server.registerRegion(bytes);
      return { local, remote: p.client.remoteRegion(local.handle) };
    }

    test('connect: the acceptor sees the handshake; each side knows its peer', async () => {
      const p = await pair(7);
      expect(p.handshakes).toEqual([expect.objectContaining({ nodeId: 'a', epoch: 7 })]);
      expect(p.client.peerNodeId).toBe('b');
      expect(p.client.localNodeId).toBe('a');
      expect(p.server.peerNodeId).toBe('a');
      expect(p.client.closed).toBe(false);
    });

    test('a refused handshake rejects the connect with HandshakeRefusedError', async () => {
      await expect(pair(1, () => 'epoch too old')).rejects.toBeInstanceOf(HandshakeRefusedError);
    });

    test('connecting to an address nobody listens on fails with a FabricError, without hanging', async () => {
      await expect(
        env.fabricFor('a').connect(env.unusedAddress(), { nodeId: 'a', epoch: 1 }),
      ).rejects.toBeInstanceOf(FabricError);
    });

    test('a write places the bytes exactly at the offset, and resolves once they are there', async () => {
      const p = await pair();
      const { local, remote } = region(p, 64);
      await p.client.write(remote, 10, Buffer.from('hello'));
      expect(Buffer.from(local.bytes.subarray(8, 17)).toString('latin1')).toBe('\0\0hello\0\0');
      // The caller may reuse its buffer at once: the fabric copied it at issue.
      const reused = Buffer.from('abc');
      const done = p.client.write(remote, 0, reused);
      reused.fill(0x7a);
      await done;
      expect(Buffer.from(local.bytes.subarray(0, 3)).toString()).toBe('abc');
    });

    test('transferred bytes (transfer.ts): land like any write; the caller reusing its view changes nothing; posting them again carries the same bytes', async () => {
      const p = await pair();
      const size = 2 * TRANSFER_MIN_BYTES;
      const { local, remote } = region(p, 2 * size);
      const view = Buffer.alloc(size, 0x41);
      const moved = transferBytes(view);
      // Posted twice, at two offsets; the caller's view is empty now (detached): writing into it
      // is ignored or throws, and never reaches the posted bytes.
      const first = p.client.write(remote, 0, moved);
      const second = p.client.write(remote, size, moved);
      expect(view.length).toBe(0);
      view[0] = 0x5a;
      expect(() => view.fill(0x5a)).toThrow(/detached/);
      await Promise.all([first, second]);
      expect(local.bytes.every((b) => b === 0x41)).toBe(true);
      // A slice of a larger buffer is copied by transferBytes: the source stays the caller's.
      const big = Buffer.alloc(3 * size, 0x42);
      const slice = big.subarray(size, 2 * size);
      const copied = p.client.write(remote, 0, transferBytes(slice));
      slice.fill(0x5b);
      await copied;
      expect(Buffer.from(local.bytes.subarray(0, size)).every((b) => b === 0x42)).toBe(true);
      expect(big[size]).toBe(0x5b);
    });

    test('writes issued together into a revoked and a live region: only those into the revoked one fail', async () => {
      const p = await pair();
      const gone = region(p, 64);
      const live = region(p, 64);
      p.server.revoke(gone.local);
      const outcomes = await Promise.allSettled([
        p.client.write(live.remote, 0, Buffer.from('ab')),
        p.client.write(live.remote, 2, Buffer.from('cd')),
        p.client.write(gone.remote, 0, Buffer.from('xx')),
        p.client.write(gone.remote, 2, Buffer.from('yy')),
        p.client.write(live.remote, 4, Buffer.from('ef')),
      ]);
      expect(outcomes.map((o) => o.status)).toEqual([
        'fulfilled',
        'fulfilled',
        'rejected',
        'rejected',
        'fulfilled',
      ]);
      for (const o of outcomes.slice(2, 4))
        expect((o as PromiseRejectedResult).reason).toBeInstanceOf(RegionRevokedError);
      expect(Buffer.from(live.local.bytes.subarray(0, 6)).toString()).toBe('abcdef');
      expect(gone.local.bytes.every((b) => b === 0)).toBe(true);
    });

    test('out-of-bounds writes are rejected with WriteOutOfBoundsError and place nothing', async () => {
      const p = await pair();
      const { local, remote } = region(p, 16);
      await expect(p.client.write(remote, 12, Buffer.alloc(5, 1))).rejects.toBeInstanceOf(
        WriteOutOfBoundsError,
      );
      await expect(p.client.write(remote, -1, Buffer.alloc(1, 1))).rejects.toBeInstanceOf(
        WriteOutOfBoundsError,
      );
      expect(local.bytes.every((b) => b === 0)).toBe(true);
      await p.client.write(remote, 0, Buffer.alloc(16, 2)); // the connection is still usable
      expect(local.bytes.every((b) => b === 2)).toBe(true);
    });

    test('a 4 MiB write and many concurrent writes to distinct offsets all land', async () => {
      const p = await pair();
      const big = region(p, 4 * 1024 * 1024);
      const payload = Buffer.alloc(big.local.bytes.length);
      for (let i = 0; i < payload.length; i += 4096) payload[i] = (i >> 12) & 0xff;
      await p.client.write(big.remote, 0, payload);
      expect(Buffer.from(big.local.bytes).equals(payload)).toBe(true);
      const small = region(p, 256 * 64);
      await Promise.all(
        Array.from({ length: 256 }, (_, i) =>
          p.client.write(small.remote, i * 64, Buffer.alloc(64, i & 0xff)),
        ),
      );
      for (let i = 0; i < 256; i++) expect(small.local.bytes[i * 64 + 63]).toBe(i & 0xff);
    });

    test('a message sent after a write completed is delivered after the bytes are visible', async () => {
      const p = await pair();
      const { local, remote } = region(p, 1024);
      const seen: string[] = [];
      p.server.onMessage((m) => {
        const n = Buffer.from(m).readUInt32LE(0);
        // Every write before message n has landed when n arrives.
        seen.push(`${n}:${local.bytes[n]}`);
      });
      for (let n = 0; n < 50; n++) {
        await p.client.write(remote, n, Buffer.from([n + 1]));
        const m = Buffer.alloc(4);
        m.writeUInt32LE(n);
        p.client.send(m);
      }
      await eventually(() => seen.length === 50);
      expect(seen).toEqual(Array.from({ length: 50 }, (_, n) => `${n}:${n + 1}`));
    });

    test('messages arrive in send order, in both directions', async () => {
      const p = await pair();
      const atServer: number[] = [];
      const atClient: number[] = [];
      p.server.onMessage((m) => atServer.push(Buffer.from(m).readUInt16LE(0)));
      p.client.onMessage((m) => atClient.push(Buffer.from(m).readUInt16LE(0)));
      for (let i = 0; i < 200; i++) {
        const m = Buffer.alloc(2);
        m.writeUInt16LE(i);
        p.client.send(m);
        p.server.send(m);
      }
      await eventually(() => atServer.length === 200 && atClient.length === 200);
      expect(atServer).toEqual([...Array(200).keys()]);
      expect(atClient).toEqual([...Array(200).keys()]);
    });

    test('revoke: later writes into the region fail, earlier bytes stay, other regions still work', async () => {
      const p = await pair();
      const a = region(p, 32);
      const b = region(p, 32);
      await p.client.write(a.remote, 0, Buffer.from('kept'));
      p.server.revoke(a.local);
      expect(a.local.revoked).toBe(true);
      await expect(p.client.write(a.remote, 4, Buffer.from('late'))).rejects.toBeInstanceOf(
        RegionRevokedError,
      );
      expect(Buffer.from(a.local.bytes.subarray(0, 8)).toString('latin1')).toBe('kept\0\0\0\0');
      await p.client.write(b.remote, 0, Buffer.from('fine'));
      expect(Buffer.from(b.local.bytes.subarray(0, 4)).toString()).toBe('fine');
      expect(p.client.closed).toBe(false);
    });

    test('close: the peer is told, later operations fail with ConnectionClosedError, close is idempotent', async () => {
      const p = await pair();
      const { remote } = region(p, 16);
      const reasons: Error[] = [];
      p.server.onClose((reason) => reasons.push(reason));
      p.client.close();
      p.client.close();
      await eventually(() => reasons.length === 1);
      expect(reasons[0]).toBeInstanceOf(ConnectionClosedError);
      expect(p.client.closed).toBe(true);
      expect(p.server.closed).toBe(true);
      await expect(p.client.write(remote, 0, Buffer.from('x'))).rejects.toBeInstanceOf(ConnectionClosedError);
      expect(() => p.server.send(Buffer.from('x'))).toThrow(ConnectionClosedError);
      // A handler registered after the close still hears of it.
      const late: Error[] = [];
      p.client.onClose((reason) => late.push(reason));
      await eventually(() => late.length === 1);
    });

    test('stats count bytes and operations on both ends', async () => {
      const p = await pair();
      const { remote } = region(p, 100);
      p.server.onMessage(() => {});
      await p.client.write(remote, 0, Buffer.alloc(60));
      await p.client.write(remote, 60, Buffer.alloc(40));
      p.client.send(Buffer.alloc(10));
      p.client.send(Buffer.alloc(5));
      await eventually(() => p.server.stats().messagesReceived === 2);
      expect(p.client.stats()).toMatchObject({
        bytesWritten: 100,
        writeCount: 2,
        bytesSent: 15,
        messagesSent: 2,
      });
      expect(p.server.stats()).toMatchObject({ bytesReceived: 15, messagesReceived: 2 });
    });

    test('closing the fabric closes its connections and refuses new ones', async () => {
      const p = await pair();
      const closedAt: string[] = [];
      p.client.onClose(() => closedAt.push('client'));
      p.server.onClose(() => closedAt.push('server'));
      await env.fabricFor('b').close();
      await eventually(() => closedAt.length === 2);
      await expect(
        env.fabricFor('a').connect(env.listenAddress('b'), { nodeId: 'a', epoch: 1 }),
      ).rejects.toBeInstanceOf(FabricError);
    });

    test('property: after each message arrives, every write issued before it is visible with its final bytes', async () => {
      type Op = { kind: 'write'; offset: number; bytes: number[] } | { kind: 'message' };
      const opArb: fc.Arbitrary<Op> = fc.oneof(
        {
          weight: 3,
          arbitrary: fc
            .record({
              offset: fc.nat({ max: 250 }),
              bytes: fc.array(fc.nat({ max: 255 }), { minLength: 1, maxLength: 6 }),
            })
            .map((w) => ({ kind: 'write' as const, ...w })),
        },
        { weight: 1, arbitrary: fc.constant({ kind: 'message' as const }) },
      );
      await fc.assert(
        fc.asyncProperty(
          fc.array(opArb, { minLength: 1, maxLength: 80, size: 'max' }),
          fc.boolean(),
          async (ops, awaitEach) => {
            const p = await pair();
            try {
              const { local, remote } = region(p, 256);
              const model = Buffer.alloc(256);
              const snapshots: Buffer[] = [];
              /** Per message: the values each byte may take from writes issued after it. */
              const later: Set<number>[][] = [];
              const observed: Buffer[] = [];
              p.server.onMessage(() => observed.push(Buffer.from(local.bytes)));
              const pending: Promise<void>[] = [];
              for (const op of ops) {
                if (op.kind === 'write') {
                  const bytes = Buffer.from(op.bytes);
                  model.set(bytes.subarray(0, Math.min(bytes.length, 256 - op.offset)), op.offset);
                  const len = Math.min(bytes.length, 256 - op.offset);
                  for (const values of later)
                    for (let i = 0; i < len; i++) values[op.offset + i]!.add(bytes[i]!);
                  const w = p.client.write(remote, op.offset, bytes.subarray(0, len));
                  if (awaitEach) await w;
                  else pending.push(w);
                } else {
                  // RC ordering: a message is delivered after every write issued before it.
                  await Promise.all(pending.splice(0));
                  snapshots.push(Buffer.from(model));
                  later.push(Array.from({ length: 256 }, () => new Set<number>()));
                  p.client.send(Buffer.from([1]));
                }
              }
              await Promise.all(pending);
              await eventually(() => observed.length === snapshots.length);
              observed.forEach((seen, i) => {
                if (!options.laterWritesMayLandFirst) {
                  expect(seen.equals(snapshots[i]!)).toBe(true);
                  return;
                }
                const snapshot = snapshots[i]!;
                const wrong = [...seen.keys()].filter(
                  (at) => seen[at] !== snapshot[at] && !later[i]![at]!.has(seen[at]!),
                );
                expect(wrong).toEqual([]);
              });
            } finally {
              p.client.close();
              p.listener.close();
            }
          },
        ),
        propertyParams(`fabric ordering (${name})`, 30),
      );
    });
  });
}
