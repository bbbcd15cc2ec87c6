/**
 * The TCP fabric: the conformance suite every fabric passes (one TcpFabric per node, sharing a
 * cluster secret; again under mutual TLS), then its own concerns — the HMAC handshake refuses a
 * peer without the secret before any byte reaches a region, garbage on the port is dropped, a
 * broken socket fails pending writes, and large writes flow under back-pressure; under TLS, a peer
 * whose certificate another CA signed or that expired is refused, a plain-TCP peer too, the
 * cluster secret is still checked, and nothing written crosses the wire in clear text.
 */
import { createConnection } from 'node:net';
import { freePort } from '../../coordination/etcd-server.js';
import { ConnectionClosedError, HandshakeRefusedError } from '../../src/errors.js';
import { TcpFabric } from '../../src/fabric/tcp.js';
import type { TlsCredentials } from '../../src/fabric/tls.js';
import type { Connection } from '../../src/fabric/types.js';
import { createTestPki, type TestCa } from '../support/certs.js';
import { startWiretap } from '../support/wiretap.js';
import { describeFabricConformance, eventually } from './conformance.js';

const SECRET = 'test-cluster-secret';

const pki = createTestPki();
const caA: TestCa = pki.ca('ca-a');
const caB: TestCa = pki.ca('ca-b');
const nodeLeaf = caA.issue('node');
const nodeTls: TlsCredentials = { ca: caA.cert, cert: nodeLeaf.cert, key: nodeLeaf.key };
afterAll(() => pki.remove());

describeFabricConformance('tcp', async () => {
  const fabrics = new Map<string, TcpFabric>();
  const unused = await freePort();
  return {
    fabricFor: (nodeId) => {
      let fabric = fabrics.get(nodeId);
      if (fabric === undefined) {
        fabric = new TcpFabric({ secret: SECRET });
        fabrics.set(nodeId, fabric);
      }
      return fabric;
    },
    listenAddress: () => 'tcp://127.0.0.1:0',
    unusedAddress: () => `tcp://127.0.0.1:${unused}`,
    teardown: async () => {
      for (const fabric of fabrics.values()) await fabric.close();
    },
  };
});

describeFabricConformance('tcp with mutual TLS', async () => {
  const fabrics = new Map<string, TcpFabric>();
  const unused = await freePort();
  return {
    fabricFor: (nodeId) => {
      let fabric = fabrics.get(nodeId);
      if (fabric === undefined) {
        fabric = new TcpFabric({ secret: SECRET, tls: nodeTls });
        fabrics.set(nodeId, fabric);
      }
      return fabric;
    },
    listenAddress: () => 'tcp://127.0.0.1:0',
    unusedAddress: () => `tcp://127.0.0.1:${unused}`,
    teardown: async () => {
      for (const fabric of fabrics.values()) await fabric.close();
    },
  };
});

describe('tcp fabric: mutual TLS', () => {
  const open: TcpFabric[] = [];
  const fabric = (options: ConstructorParameters<typeof TcpFabric>[0]): TcpFabric => {
    const f = new TcpFabric(options);
    open.push(f);
    return f;
  };
  afterEach(async () => {
    for (const f of open.splice(0)) await f.close();
  });

  async function tlsListener(): Promise<{ address: string; port: number; accepted: Connection[] }> {
    const accepted: Connection[] = [];
    const listener = await fabric({ secret: SECRET, tls: nodeTls }).listen(
      'tcp://127.0.0.1:0',
      { nodeId: 'b' },
      (c) => accepted.push(c),
    );
    return { address: listener.address, port: Number(listener.address.split(':').at(-1)), accepted };
  }

  test('a peer whose certificate another CA signed is refused in the TLS handshake, both ways', async () => {
    const server = await tlsListener();
    const foreign = caB.issue('intruder');
    // The dialer presents a certificate from CA B (and trusts A): the listener refuses it.
    await expect(
      fabric({ secret: SECRET, tls: { ca: caA.cert, cert: foreign.cert, key: foreign.key } }).connect(
        server.address,
        { nodeId: 'x', epoch: 1 },
      ),
    ).rejects.toThrow(HandshakeRefusedError);
    // The dialer trusts only CA B: it refuses the listener's certificate from A.
    const trustsB = { ca: caB.cert, cert: foreign.cert, key: foreign.key };
    await expect(
      fabric({ secret: SECRET, tls: trustsB }).connect(server.address, { nodeId: 'x', epoch: 1 }),
    ).rejects.toThrow(/TLS with .*(UNABLE_TO_VERIFY|SELF_SIGNED|unable to (verify|get))/i);
    expect(server.accepted).toHaveLength(0);
    const ok = await fabric({ secret: SECRET, tls: nodeTls }).connect(server.address, {
      nodeId: 'a',
      epoch: 1,
    });
    await eventually(() => server.accepted.length === 1);
    expect(ok.peerNodeId).toBe('b');
  });

  test('an expired certificate is refused, on either side', async () => {
    const server = await tlsListener();
    const expired = caA.issue('old', { expired: true });
    await expect(
      fabric({ secret: SECRET, tls: { ca: caA.cert, cert: expired.cert, key: expired.key } }).connect(
        server.address,
        { nodeId: 'x', epoch: 1 },
      ),
    ).rejects.toThrow(HandshakeRefusedError);
    const stale: Connection[] = [];
    const staleListener = await fabric({
      secret: SECRET,
      tls: { ca: caA.cert, cert: expired.cert, key: expired.key },
    }).listen('tcp://127.0.0.1:0', { nodeId: 'c' }, (c) => stale.push(c));
    await expect(
      fabric({ secret: SECRET, tls: nodeTls }).connect(staleListener.address, { nodeId: 'a', epoch: 1 }),
    ).rejects.toThrow(/CERT_HAS_EXPIRED/);
    expect(server.accepted).toHaveLength(0);
    expect(stale).toHaveLength(0);
  });

  test('a plain-TCP peer gets nowhere, and the cluster secret is still a second factor', async () => {
    const server = await tlsListener();
    await expect(
      fabric({ secret: SECRET, connectTimeoutMs: 1000 }).connect(server.address, { nodeId: 'x', epoch: 1 }),
    ).rejects.toThrow();
    await expect(
      fabric({ secret: 'another', tls: nodeTls }).connect(server.address, { nodeId: 'x', epoch: 1 }),
    ).rejects.toThrow(/authentication failed/);
    expect(server.accepted).toHaveLength(0);
  });

  test('written bytes and messages are encrypted on the wire (and visible without TLS: the tap works)', async () => {
    const marker = Buffer.from('talos-secret-value-0123456789'.repeat(8));
    const observe = async (tls: boolean): Promise<Buffer> => {
      const accepted: Connection[] = [];
      const listener = await fabric({ secret: SECRET, ...(tls ? { tls: nodeTls } : {}) }).listen(
        'tcp://127.0.0.1:0',
        { nodeId: 'b' },
        (c) => accepted.push(c),
      );
      const tap = await startWiretap({ host: '127.0.0.1', port: Number(listener.address.split(':').at(-1)) });
      try {
        const client = await fabric({ secret: SECRET, ...(tls ? { tls: nodeTls } : {}) }).connect(
          `tcp://127.0.0.1:${tap.port}`,
          { nodeId: 'a', epoch: 1 },
        );
        await eventually(() => accepted.length === 1);
        const local = accepted[0]!.registerRegion(64 * 1024);
        const got: Buffer[] = [];
        accepted[0]!.onMessage((m) => got.push(Buffer.from(m)));
        await client.write(client.remoteRegion(local.handle), 0, marker);
        client.send(marker);
        await eventually(() => got.length === 1);
        expect(Buffer.from(local.bytes.subarray(0, marker.length)).equals(marker)).toBe(true);
        expect(got[0]!.equals(marker)).toBe(true);
        return tap.seen();
      } finally {
        await tap.close();
      }
    };
    const plain = await observe(false);
    expect(plain.includes(marker)).toBe(true);
    const encrypted = await observe(true);
    expect(encrypted.length).toBeGreaterThan(marker.length * 2);
    expect(encrypted.includes(marker.subarray(0, 16))).toBe(false);
    expect(encrypted.includes(Buffer.from('"nodeId"'))).toBe(false); // the handshake is inside TLS too
  });
});

describe('tcp fabric: authentication and faults', () => {
  const open: TcpFabric[] = [];
  const fabric = (options: ConstructorParameters<typeof TcpFabric>[0]): TcpFabric => {
    const f = new TcpFabric(options);
    open.push(f);
    return f;
  };
  afterEach(async () => {
    for (const f of open.splice(0)) await f.close();
  });

  async function listening(secret?: string): Promise<{ address: string; accepted: Connection[] }> {
    const accepted: Connection[] = [];
    const listener = await fabric(secret === undefined ? {} : { secret }).listen(
      'tcp://127.0.0.1:0',
      { nodeId: 'b' },
      (c) => accepted.push(c),
    );
    return { address: listener.address, accepted };
  }

  test('a peer without the cluster secret, or with another one, is refused before any connection exists', async () => {
    const server = await listening(SECRET);
    await expect(fabric({}).connect(server.address, { nodeId: 'x', epoch: 1 })).rejects.toBeInstanceOf(
      HandshakeRefusedError,
    );
    await expect(
      fabric({ secret: 'another' }).connect(server.address, { nodeId: 'x', epoch: 1 }),
    ).rejects.toThrow(/authentication failed/);
    expect(server.accepted).toHaveLength(0);
    const ok = await fabric({ secret: SECRET }).connect(server.address, { nodeId: 'a', epoch: 1 });
    await eventually(() => server.accepted.length === 1);
    expect(ok.peerNodeId).toBe('b');
  });

  test('a client with the secret refuses a server that cannot prove it', async () => {
    const server = await listening(undefined);
    await expect(
      fabric({ secret: SECRET }).connect(server.address, { nodeId: 'a', epoch: 1 }),
    ).rejects.toThrow(/did not prove the cluster secret/);
  });

  test('raw bytes on the port (no handshake) never reach a region and do not disturb the listener', async () => {
    const server = await listening(SECRET);
    const port = Number(server.address.split(':').at(-1));
    const raw = createConnection({ host: '127.0.0.1', port });
    raw.on('error', () => {});
    await new Promise((resolve) => raw.once('connect', resolve));
    // A WRITE frame straight away: type 5, region 1, offset 0.
    const body = Buffer.alloc(21);
    body.writeUInt32LE(body.length - 4, 0);
    body.writeUInt8(5, 4);
    raw.write(body);
    raw.write(Buffer.from('garbage that is no frame at all'));
    await new Promise((resolve) => setTimeout(resolve, 100));
    raw.destroy();
    expect(server.accepted).toHaveLength(0);
    const ok = await fabric({ secret: SECRET }).connect(server.address, { nodeId: 'a', epoch: 1 });
    expect(ok.closed).toBe(false);
  });

  test('a broken socket fails pending writes with ConnectionClosedError and tells both sides', async () => {
    const server = await listening(SECRET);
    const client = await fabric({ secret: SECRET }).connect(server.address, { nodeId: 'a', epoch: 1 });
    await eventually(() => server.accepted.length === 1);
    const remote = client.remoteRegion(server.accepted[0]!.registerRegion(8 * 1024 * 1024).handle);
    const reasons: Error[] = [];
    client.onClose((r) => reasons.push(r));
    server.accepted[0]!.onClose((r) => reasons.push(r));
    const writes = Array.from({ length: 8 }, (_, i) =>
      client.write(remote, i * 1024 * 1024, Buffer.alloc(1024 * 1024, i)),
    );
    (client as unknown as { socket: { destroy(): void } }).socket.destroy();
    for (const w of writes)
      await w.catch((err: unknown) => expect(err).toBeInstanceOf(ConnectionClosedError));
    await eventually(() => reasons.length === 2);
  });

  test('64 MiB of writes under a small high-water mark all land, in order with a final message', async () => {
    const server = await listening(SECRET);
    const client = await fabric({ secret: SECRET, highWaterBytes: 64 * 1024 }).connect(server.address, {
      nodeId: 'a',
      epoch: 1,
    });
    await eventually(() => server.accepted.length === 1);
    const local = server.accepted[0]!.registerRegion(2 * 1024 * 1024);
    const remote = client.remoteRegion(local.handle);
    let lastSeen = -1;
    server.accepted[0]!.onMessage(() => {
      lastSeen = local.bytes[local.bytes.length - 1]!;
    });
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 32; i++) writes.push(client.write(remote, 0, Buffer.alloc(2 * 1024 * 1024, i)));
    await Promise.all(writes);
    client.send(Buffer.from([1]));
    await eventually(() => lastSeen !== -1);
    expect(lastSeen).toBe(31);
  });
});
