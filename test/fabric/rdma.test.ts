/**
 * The rdma fabric and its native addon.
 *
 * Everywhere (host `npm test`): what needs no device — the addon loads or reports
 * RdmaUnavailableError naming the packages, the device list is empty, opening a device that does not
 * exist fails with a typed RdmaDeviceError (ENODEV) and breaks nothing.
 *
 * On real verbs (`npm run test:rdma`: Soft-RoCE in the qemu guest sets TALOS_RDMA_DEVICE): the
 * fabric conformance suite on rxe0→rxe0 (GID index 1) and rxe0→rxe1 (GID index 0, packets cross
 * the veth pair), then the addon's own checks: a write with a dead rkey fails in the HCA with
 * IBV_WC_REM_ACCESS_ERR (and the fabric maps it to RegionRevokedError, rebuilds its data QP and
 * stays usable), a write past the end of a region, a closed queue pair, WRITE_WITH_IMM, and
 * rdma_cm listen/connect/accept/reject with private data.
 */
import { freePort } from '../../coordination/etcd-server.js';
import {
  ConnectionClosedError,
  RdmaDeviceError,
  RdmaUnavailableError,
  RegionRevokedError,
  WriteOutOfBoundsError,
} from '../../src/errors.js';
import {
  loadRdmaAddon,
  type NativeCmEvent,
  type NativeCompletion,
  type RdmaAddon,
  rdmaAddonAvailable,
  rdmaDevices,
} from '../../src/fabric/rdma/addon.js';
import { type RdmaConnection, RdmaFabric } from '../../src/fabric/rdma/fabric.js';
import type { Connection } from '../../src/fabric/types.js';
import { startNodeProcess } from '../../src/server/node-process.js';
import { describeFabricConformance, eventually } from './conformance.js';

const SECRET = 'test-cluster-secret';
const DEVICE = process.env.TALOS_RDMA_DEVICE;
const PEER_DEVICE = process.env.TALOS_RDMA_PEER_DEVICE;
/** The guest is ~15x slower than the host: generous deadlines there. */
const SLOW_MS = 60_000;
const onVerbs = DEVICE !== undefined && DEVICE.length > 0;
const describeOnVerbs = onVerbs ? describe : describe.skip;

describe('rdma addon: what needs no device', () => {
  test('the addon loads, or RdmaUnavailableError names the packages to install', async () => {
    if (rdmaAddonAvailable()) {
      expect(typeof loadRdmaAddon().listDevices).toBe('function');
      expect(loadRdmaAddon().forkInitStatus()).toBe(0);
    } else {
      expect(() => loadRdmaAddon()).toThrow(RdmaUnavailableError);
      expect(() => loadRdmaAddon()).toThrow(/libibverbs-dev librdmacm-dev/);
      await expect(
        new RdmaFabric({ device: 'rxe0' }).connect('rdma://127.0.0.1:1', { nodeId: 'a', epoch: 1 }),
      ).rejects.toBeInstanceOf(RdmaUnavailableError);
    }
  });

  test('an addon that is not built gives RdmaUnavailableError, and only from the rdma fabric', () => {
    const saved = process.env.TALOS_RDMA_ADDON;
    process.env.TALOS_RDMA_ADDON = '/nonexistent/talos_rdma.node';
    try {
      jest.isolateModules(() => {
        const isolated =
          require('../../src/fabric/rdma/addon.js') as typeof import('../../src/fabric/rdma/addon.js');
        let thrown: unknown;
        try {
          isolated.loadRdmaAddon();
        } catch (err) {
          thrown = err;
        }
        expect(thrown).toMatchObject({ code: 'RDMA_UNAVAILABLE', name: 'RdmaUnavailableError' });
        expect(String((thrown as Error).message)).toMatch(/not built .*npm run build:native/);
        expect(isolated.rdmaDevices()).toEqual([]);
        expect(isolated.rdmaAddonAvailable()).toBe(false);
      });
    } finally {
      if (saved === undefined) delete process.env.TALOS_RDMA_ADDON;
      else process.env.TALOS_RDMA_ADDON = saved;
    }
  });

  test('the device list is empty without a device; opening one that does not exist is a typed ENODEV', async () => {
    if (!rdmaAddonAvailable()) return; // covered above
    const names = rdmaDevices().map((d) => d.name);
    if (!onVerbs) expect(names).toEqual([]);
    else expect(names).toEqual(expect.arrayContaining([DEVICE]));
    const addon = loadRdmaAddon();
    expect(() => new addon.Device('nosuchdev9')).toThrow(
      expect.objectContaining({ code: 'ENODEV', syscall: 'ibv_open_device' }),
    );
    const fabric = new RdmaFabric({ device: 'nosuchdev9' });
    const err = await fabric.listen('rdma://127.0.0.1:0', { nodeId: 'b' }, () => {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RdmaDeviceError);
    expect(err).toMatchObject({ verbsCode: 'ENODEV', call: 'ibv_open_device' });
    expect(String((err as Error).message)).toMatch(/nosuchdev9/);
    await fabric.close();
  });

  test('a node process on the rdma fabric checks its address, addon and device before it starts', async () => {
    const start = (listen: string, device: string) =>
      startNodeProcess({
        nodeId: 'n1',
        listen,
        clientListen: 'tcp://127.0.0.1:0',
        dataDir: '/nonexistent/talos-rdma-test',
        etcd: ['http://127.0.0.1:1'],
        rdma: { device },
      }).catch((e: unknown) => e);
    expect(await start('tcp://127.0.0.1:0', 'rxe0')).toMatchObject({ code: 'BAD_ADDRESS' });
    const err = await start('rdma://127.0.0.1:0', 'nosuchdev9');
    if (rdmaAddonAvailable()) {
      expect(err).toBeInstanceOf(RdmaDeviceError);
      expect(err).toMatchObject({ verbsCode: 'ENODEV' });
    } else expect(err).toBeInstanceOf(RdmaUnavailableError);
  });

  test('bad addresses are refused before anything opens', async () => {
    await expect(
      new RdmaFabric({ device: 'rxe0' }).connect('tcp://127.0.0.1:1', { nodeId: 'a', epoch: 1 }),
    ).rejects.toMatchObject({ code: 'BAD_ADDRESS' });
  });
});

function conformanceOn(devices: [string, string], gidIndex: number): void {
  describeFabricConformance(
    `rdma ${devices[0]}→${devices[1]} (gid ${gidIndex})`,
    async () => {
      const fabrics = new Map<string, RdmaFabric>();
      const unused = await freePort();
      return {
        fabricFor: (nodeId) => {
          let fabric = fabrics.get(nodeId);
          if (fabric === undefined) {
            fabric = new RdmaFabric({
              device: nodeId === 'b' ? devices[1] : devices[0],
              gidIndex,
              secret: SECRET,
              connectTimeoutMs: SLOW_MS,
            });
            fabrics.set(nodeId, fabric);
          }
          return fabric;
        },
        listenAddress: () => 'rdma://127.0.0.1:0',
        unusedAddress: () => `rdma://127.0.0.1:${unused}`,
        teardown: async () => {
          for (const fabric of fabrics.values()) await fabric.close();
        },
      };
    },
    { laterWritesMayLandFirst: true },
  );
}

if (onVerbs) {
  conformanceOn([DEVICE!, DEVICE!], Number(process.env.TALOS_RDMA_GID ?? 1));
  if (PEER_DEVICE !== undefined && PEER_DEVICE.length > 0) conformanceOn([DEVICE!, PEER_DEVICE], 0);
} else {
  describe.skip('fabric conformance: rdma (needs a device: npm run test:rdma)', () => {
    test('skipped', () => {});
  });
}

describeOnVerbs('rdma fabric on real verbs: fencing and faults', () => {
  const open: RdmaFabric[] = [];
  const fabric = (stagingBytes?: number): RdmaFabric => {
    const f = new RdmaFabric({
      device: DEVICE!,
      gidIndex: 1,
      secret: SECRET,
      connectTimeoutMs: SLOW_MS,
      ...(stagingBytes === undefined ? {} : { stagingBytes }),
    });
    open.push(f);
    return f;
  };
  afterEach(async () => {
    for (const f of open.splice(0)) await f.close();
  });

  async function pair(stagingBytes?: number): Promise<{ client: Connection; server: Connection }> {
    const accepted: Connection[] = [];
    const listener = await fabric().listen('rdma://127.0.0.1:0', { nodeId: 'b' }, (c) => accepted.push(c));
    const client = await fabric(stagingBytes).connect(listener.address, { nodeId: 'a', epoch: 1 });
    await eventually(() => accepted.length === 1, SLOW_MS);
    return { client, server: accepted[0]! };
  }

  test('a write that reaches the HCA with a dead rkey fails with RegionRevokedError; the data QP is rebuilt and the connection stays usable', async () => {
    const { client, server } = await pair();
    const a = server.registerRegion(64);
    const b = server.registerRegion(64);
    const ra = client.remoteRegion(a.handle);
    const rb = client.remoteRegion(b.handle);
    await client.write(ra, 0, Buffer.from('before'));
    const generation = (client as RdmaConnection).dataQpGeneration();
    // Revoke and write in the same tick: the REVOKED announcement cannot have arrived, so only the
    // hardware (deregistered MR) can refuse this write.
    server.revoke(a);
    const late = client.write(ra, 8, Buffer.from('late'));
    const after = client.write(rb, 0, Buffer.from('other region')); // queued behind, must still land
    await expect(late).rejects.toBeInstanceOf(RegionRevokedError);
    await after;
    expect((client as RdmaConnection).dataQpGeneration()).toBe(generation + 1);
    expect(Buffer.from(a.bytes.subarray(0, 12)).toString('latin1')).toBe('before\0\0\0\0\0\0');
    expect(Buffer.from(b.bytes.subarray(0, 12)).toString()).toBe('other region');
    // Later writes fail locally (the announcement arrived); messages and writes both ways still work.
    await expect(client.write(ra, 0, Buffer.from('x'))).rejects.toBeInstanceOf(RegionRevokedError);
    const c = client.registerRegion(16);
    await server.write(server.remoteRegion(c.handle), 0, Buffer.from('reverse'));
    expect(Buffer.from(c.bytes.subarray(0, 7)).toString()).toBe('reverse');
    const got: string[] = [];
    server.onMessage((m) => got.push(Buffer.from(m).toString()));
    client.send(Buffer.from('still open'));
    await eventually(() => got.length === 1, SLOW_MS);
    expect(got).toEqual(['still open']);
    expect(client.closed).toBe(false);
  });

  test('with a staging area of 4 pieces, writes queue in order; a hardware revoke amid them flushes and reposts the rest', async () => {
    const { client, server } = await pair(256 * 1024);
    const a = server.registerRegion(64);
    const b = server.registerRegion(1 << 20);
    const ra = client.remoteRegion(a.handle);
    const rb = client.remoteRegion(b.handle);
    await client.write(ra, 0, Buffer.from('kept'));
    const piece = 100 * 1024; // two staging pieces each: 10 writes need 20 pieces of 4 slots
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 10; i++) writes.push(client.write(rb, (i % 5) * piece, Buffer.alloc(piece, i + 1)));
    server.revoke(a);
    const late = client.write(ra, 0, Buffer.from('late'));
    for (let i = 10; i < 20; i++) writes.push(client.write(rb, (i % 5) * piece, Buffer.alloc(piece, i + 1)));
    await expect(late).rejects.toBeInstanceOf(RegionRevokedError);
    await Promise.all(writes);
    // Issue order holds at every offset: the last write there wins.
    for (let slot = 0; slot < 5; slot++) {
      const bytes = b.bytes.subarray(slot * piece, (slot + 1) * piece);
      expect(bytes.every((x) => x === 16 + slot)).toBe(true);
    }
    expect(Buffer.from(a.bytes.subarray(0, 4)).toString()).toBe('kept');
  });

  test('a write past the end of a region is refused before posting; a message larger than one SEND arrives whole', async () => {
    const { client, server } = await pair();
    const region = server.registerRegion(4096);
    const remote = client.remoteRegion(region.handle);
    await expect(client.write(remote, 4000, Buffer.alloc(200, 1))).rejects.toBeInstanceOf(
      WriteOutOfBoundsError,
    );
    // A forged handle claiming more bytes than the owner announced is caught against the announcement.
    const forged = client.remoteRegion({ regionKey: region.handle.regionKey, bytes: 1 << 20 });
    await expect(client.write(forged, 8192, Buffer.alloc(16, 1))).rejects.toBeInstanceOf(
      WriteOutOfBoundsError,
    );
    expect(region.bytes.every((x) => x === 0)).toBe(true);
    const big = Buffer.alloc(50_000);
    for (let i = 0; i < big.length; i++) big[i] = i % 251;
    const got: Buffer[] = [];
    server.onMessage((m) => got.push(Buffer.from(m)));
    client.send(big);
    await eventually(() => got.length === 1, SLOW_MS);
    expect(got[0]!.equals(big)).toBe(true);
  });

  test('writes pending when the connection closes reject with ConnectionClosedError', async () => {
    const { client, server } = await pair();
    const region = server.registerRegion(1 << 20);
    const remote = client.remoteRegion(region.handle);
    const writes = Array.from({ length: 16 }, (_, i) =>
      client.write(remote, i * 65536, Buffer.alloc(65536, i)),
    );
    client.close();
    for (const w of writes)
      await w.catch((err: unknown) => expect(err).toBeInstanceOf(ConnectionClosedError));
    await expect(client.write(remote, 0, Buffer.from('x'))).rejects.toBeInstanceOf(ConnectionClosedError);
    await eventually(() => server.closed, SLOW_MS);
  });
});

describeOnVerbs('rdma addon on real verbs', () => {
  let addon: RdmaAddon;
  beforeAll(() => {
    addon = loadRdmaAddon();
  });

  /** Two RC QPs on one device in this process, connected to each other (GID index 1). */
  function loopback() {
    const device = new addon.Device(DEVICE!);
    const pd = new addon.ProtectionDomain(device);
    const completions: NativeCompletion[] = [];
    const cq = new addon.CompletionQueue(device, 64, (batch) => completions.push(...batch));
    const qpA = new addon.QueuePair(pd, cq, cq, { maxSendWr: 16, maxRecvWr: 16 });
    const qpB = new addon.QueuePair(pd, cq, cq, { maxSendWr: 16, maxRecvWr: 16 });
    const gid = device.queryGid(1, 1);
    qpA.connect({ remoteQpNum: qpB.qpNum!, remotePsn: 7, remoteGid: gid, localPsn: 9, gidIndex: 1 });
    qpB.connect({ remoteQpNum: qpA.qpNum!, remotePsn: 9, remoteGid: gid, localPsn: 7, gidIndex: 1 });
    const src = new addon.MemoryRegion(pd, 4096, false);
    const dst = new addon.MemoryRegion(pd, 4096, true);
    const close = (): void => {
      for (const x of [qpA, qpB, src, dst, cq, pd, device]) x.close();
    };
    return { device, pd, cq, qpA, qpB, src, dst, completions, close };
  }

  test('RDMA_WRITE and WRITE_WITH_IMM land, completions come as batches with their ids', async () => {
    const l = loopback();
    try {
      expect(l.qpA.state).toBe('RTS');
      new Uint8Array(l.src.buffer).set(Buffer.from('verbs!'), 0);
      l.qpB.postRecvs([{ wrId: 50 }]);
      l.qpA.postWrites([
        { wrId: 1, mr: l.src, offset: 0, length: 6, remoteAddress: l.dst.address, rkey: l.dst.rkey! },
        {
          wrId: 2,
          mr: l.src,
          offset: 0,
          length: 6,
          remoteAddress: l.dst.address + 100n,
          rkey: l.dst.rkey!,
          imm: 0xc0ffee,
        },
      ]);
      await eventually(() => l.completions.length === 3, SLOW_MS);
      expect(l.completions.map((c) => [c.wrId, c.status])).toEqual(
        expect.arrayContaining([
          [1, 'IBV_WC_SUCCESS'],
          [2, 'IBV_WC_SUCCESS'],
          [50, 'IBV_WC_SUCCESS'],
        ]),
      );
      expect(l.completions.find((c) => c.wrId === 50)).toMatchObject({
        opcode: 'RECV_RDMA_WITH_IMM',
        imm: 0xc0ffee,
      });
      expect(Buffer.from(l.dst.buffer, 0, 6).toString()).toBe('verbs!');
      expect(Buffer.from(l.dst.buffer, 100, 6).toString()).toBe('verbs!');
    } finally {
      l.close();
    }
  });

  test('after reregister the old rkey fails with IBV_WC_REM_ACCESS_ERR; a write past the MR end fails too; the QP goes to ERR', async () => {
    const l = loopback();
    try {
      const oldRkey = l.dst.rkey!;
      const newRkey = l.dst.reregister();
      expect(newRkey).not.toBe(oldRkey);
      l.qpA.postWrites([
        { wrId: 1, mr: l.src, offset: 0, length: 8, remoteAddress: l.dst.address, rkey: oldRkey },
      ]);
      await eventually(() => l.completions.length === 1, SLOW_MS);
      expect(l.completions[0]).toMatchObject({ wrId: 1, status: 'IBV_WC_REM_ACCESS_ERR' });
      expect(l.qpA.state).toBe('ERR');
      const l2 = loopback();
      try {
        l2.qpA.postWrites([
          {
            wrId: 5,
            mr: l2.src,
            offset: 0,
            length: 64,
            remoteAddress: l2.dst.address + 4090n,
            rkey: l2.dst.rkey!,
          },
        ]);
        await eventually(() => l2.completions.length === 1, SLOW_MS);
        expect(l2.completions[0]!.status).not.toBe('IBV_WC_SUCCESS');
      } finally {
        l2.close();
      }
    } finally {
      l.close();
    }
  });

  test('closed objects and bad arguments throw errors with a code; parents outlive their children', () => {
    const l = loopback();
    // Closing the PD and device first is fine: the QPs and MRs hold them.
    l.pd.close();
    l.device.close();
    l.qpA.postWrites([]); // still open
    l.qpA.close();
    l.qpA.close(); // idempotent
    expect(l.qpA.state).toBe('CLOSED');
    expect(() =>
      l.qpA.postWrites([{ wrId: 1, mr: l.src, offset: 0, length: 1, remoteAddress: l.dst.address, rkey: 1 }]),
    ).toThrow(expect.objectContaining({ code: 'ECLOSED' }));
    expect(() =>
      l.qpB.postWrites([
        { wrId: 1, mr: l.src, offset: 4090, length: 64, remoteAddress: l.dst.address, rkey: 1 },
      ]),
    ).toThrow(expect.objectContaining({ code: 'EINVAL', syscall: 'ibv_post_send' }));
    l.dst.deregister();
    expect(l.dst.registered).toBe(false);
    expect(l.dst.rkey).toBeUndefined();
    expect(new Uint8Array(l.dst.buffer).length).toBe(4096); // memory stays readable
    expect(() => new addon.ProtectionDomain(l.device)).toThrow(expect.objectContaining({ code: 'ECLOSED' }));
    l.close();
  });

  test('rdma_cm: listen, connect with private data, accept; a reject carries its private data back', async () => {
    const host = process.env.TALOS_RDMA_CM_HOST ?? '169.254.77.1';
    const events: NativeCmEvent[] = [];
    const channel = new addon.CmChannel((e) => events.push(e));
    const device = new addon.Device(DEVICE!, true); // librdmacm's context: QPs on cm ids need it
    const pd = new addon.ProtectionDomain(device);
    const cq = new addon.CompletionQueue(device, 16, () => {});
    const listener = new addon.CmId(channel);
    const client = new addon.CmId(channel);
    const refused = new addon.CmId(channel);
    const take = async (type: string) => {
      await eventually(() => events.some((e) => e.type === type), SLOW_MS);
      return events.splice(
        events.findIndex((e) => e.type === type),
        1,
      )[0]!;
    };
    try {
      const port = listener.listen(host, 0);
      expect(port).toBeGreaterThan(0);
      for (const id of [client, refused]) id.resolveAddress(host, port, 5000);
      await take('RDMA_CM_EVENT_ADDR_RESOLVED');
      await take('RDMA_CM_EVENT_ADDR_RESOLVED');
      for (const id of [client, refused]) id.resolveRoute(5000);
      await take('RDMA_CM_EVENT_ROUTE_RESOLVED');
      await take('RDMA_CM_EVENT_ROUTE_RESOLVED');
      expect(client.deviceName()).toBe(DEVICE);
      client.createQp(pd, cq, cq, { maxSendWr: 4, maxRecvWr: 4 });
      client.connect(Buffer.from('node a epoch 3'));
      const request = await take('RDMA_CM_EVENT_CONNECT_REQUEST');
      expect(request.privateData?.subarray(0, 14).toString()).toBe('node a epoch 3');
      expect(request.listenId).toBe(listener);
      const server = request.id!;
      const qp = server.createQp(pd, cq, cq, { maxSendWr: 4, maxRecvWr: 4 });
      server.accept(Buffer.from('welcome'));
      await take('RDMA_CM_EVENT_ESTABLISHED');
      await take('RDMA_CM_EVENT_ESTABLISHED');
      expect(qp.state).toBe('RTS');
      refused.createQp(pd, cq, cq, { maxSendWr: 4, maxRecvWr: 4 });
      refused.connect(Buffer.from('node x'));
      const second = await take('RDMA_CM_EVENT_CONNECT_REQUEST');
      second.id!.reject(Buffer.from('epoch too old'));
      const rejected = await take('RDMA_CM_EVENT_REJECTED');
      expect(rejected.privateData?.subarray(0, 13).toString()).toBe('epoch too old');
      expect(() => client.connect(Buffer.alloc(57))).toThrow(expect.objectContaining({ code: 'EINVAL' }));
      client.disconnect();
      await take('RDMA_CM_EVENT_DISCONNECTED');
      second.id!.close();
      server.close();
    } finally {
      for (const x of [client, refused, listener, cq, pd, device, channel]) x.close();
    }
  });
});
