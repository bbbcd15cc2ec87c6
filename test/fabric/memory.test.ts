/**
 * The memory fabric: the conformance suite every fabric passes, then its fault API (partition,
 * heal, drop, delay, failed writes, broken connections), its scheduler hook and its totals, and
 * that it keeps transferred bytes by reference instead of copying them.
 */
import { ManualClock } from '../../src/clock/index.js';
import { ConnectionClosedError, UnreachableError } from '../../src/errors.js';
import { MemoryFabric } from '../../src/fabric/memory.js';
import { TRANSFER_MIN_BYTES, transferBytes } from '../../src/fabric/transfer.js';
import type { Connection } from '../../src/fabric/types.js';
import { describeFabricConformance, eventually } from './conformance.js';

describeFabricConformance('memory', async () => {
  const fabric = new MemoryFabric();
  return {
    fabricFor: () => fabric,
    listenAddress: (nodeId) => `mem://${nodeId}`,
    unusedAddress: () => 'mem://nobody',
    teardown: () => fabric.close(),
  };
});

async function connected(fabric: MemoryFabric): Promise<{ client: Connection; server: Connection }> {
  let server: Connection | undefined;
  await fabric.listen('mem://b', { nodeId: 'b' }, (c) => {
    server = c;
  });
  const client = await fabric.connect('mem://b', { nodeId: 'a', epoch: 1 });
  return { client, server: server! };
}

describe('memory fabric: transferred bytes', () => {
  test('are delivered by reference, not copied at issue — which is why their holder must not change them', async () => {
    const fabric = new MemoryFabric();
    const { client, server } = await connected(fabric);
    const local = server.registerRegion(2 * TRANSFER_MIN_BYTES);
    const remote = client.remoteRegion(local.handle);
    const moved = transferBytes(Buffer.alloc(TRANSFER_MIN_BYTES, 1));
    const plain = Buffer.alloc(TRANSFER_MIN_BYTES, 1);
    const writes = [client.write(remote, 0, moved), client.write(remote, TRANSFER_MIN_BYTES, plain)];
    // Both changed after posting, before delivery: the contract forbids it for `moved`; the lane
    // kept a reference to it, so the change lands. The plain buffer was copied: its change does not.
    moved.fill(2);
    plain.fill(2);
    await Promise.all(writes);
    expect(local.bytes[0]).toBe(2);
    expect(local.bytes[TRANSFER_MIN_BYTES]).toBe(1);
    await fabric.close();
  });
});

describe('memory fabric faults', () => {
  test("partition breaks a node's connections and refuses new ones until healed", async () => {
    const fabric = new MemoryFabric();
    const { client, server } = await connected(fabric);
    const remote = client.remoteRegion(server.registerRegion(8).handle);
    const reasons: Error[] = [];
    client.onClose((r) => reasons.push(r));
    fabric.partition('b');
    await eventually(() => reasons.length === 1);
    expect(reasons[0]).toBeInstanceOf(UnreachableError);
    await expect(client.write(remote, 0, Buffer.from('x'))).rejects.toBeInstanceOf(ConnectionClosedError);
    await expect(fabric.connect('mem://b', { nodeId: 'a', epoch: 1 })).rejects.toBeInstanceOf(
      UnreachableError,
    );
    fabric.heal();
    const again = await fabric.connect('mem://b', { nodeId: 'a', epoch: 2 });
    expect(again.closed).toBe(false);
    await fabric.close();
  });

  test('dropped traffic is held, in order, and released when the fault is lifted', async () => {
    const fabric = new MemoryFabric();
    const { client, server } = await connected(fabric);
    const local = server.registerRegion(8);
    const remote = client.remoteRegion(local.handle);
    const got: string[] = [];
    server.onMessage((m) => got.push(`${Buffer.from(m).toString()}@${local.bytes[0]}`));
    fabric.dropTraffic(client);
    let placed = false;
    const write = client.write(remote, 0, Buffer.from([9])).then(() => {
      placed = true;
    });
    client.send(Buffer.from('m'));
    await new Promise((r) => setTimeout(r, 20));
    expect(placed).toBe(false);
    expect(got).toEqual([]);
    fabric.dropTraffic(client, false);
    await write;
    await eventually(() => got.length === 1);
    expect(got).toEqual(['m@9']);
    await fabric.close();
  });

  test('delayed traffic waits on the injected clock and keeps its order', async () => {
    const clock = new ManualClock();
    const fabric = new MemoryFabric({ clock });
    const { client, server } = await connected(fabric);
    const got: number[] = [];
    server.onMessage((m) => got.push(Buffer.from(m)[0]!));
    fabric.delayTraffic(client, 50);
    client.send(Buffer.from([1]));
    client.send(Buffer.from([2]));
    await new Promise((r) => setTimeout(r, 10));
    expect(got).toEqual([]);
    for (let i = 0; i < 4 && got.length < 2; i++) {
      clock.advance(50);
      await new Promise((r) => setTimeout(r, 1));
    }
    expect(got).toEqual([1, 2]);
    await fabric.close();
  });

  test('a failed write rejects and breaks the connection on both sides', async () => {
    const fabric = new MemoryFabric();
    const { client, server } = await connected(fabric);
    const remote = client.remoteRegion(server.registerRegion(8).handle);
    const closed: string[] = [];
    client.onClose(() => closed.push('client'));
    server.onClose(() => closed.push('server'));
    fabric.failWrites(client);
    await expect(client.write(remote, 0, Buffer.from('x'))).rejects.toBeInstanceOf(Error);
    await eventually(() => closed.length === 2);
    expect(client.closed && server.closed).toBe(true);
    await fabric.close();
  });

  test('breakConnection: both sides see the break; totals survive the connection', async () => {
    const fabric = new MemoryFabric();
    const { client, server } = await connected(fabric);
    const remote = client.remoteRegion(server.registerRegion(16).handle);
    await client.write(remote, 0, Buffer.alloc(16));
    server.onMessage(() => {});
    client.send(Buffer.alloc(3));
    const closed: string[] = [];
    server.onClose(() => closed.push('server'));
    fabric.breakConnection(client);
    await eventually(() => closed.length === 1);
    expect(fabric.stats()).toMatchObject({ bytesWritten: 16, bytesSent: 3 });
    await fabric.close();
  });

  test('a custom scheduler decides when each delivery runs; order within a direction holds', async () => {
    const steps: (() => void)[] = [];
    const fabric = new MemoryFabric({ scheduler: (step) => steps.push(step) });
    const { client, server } = await connected(fabric);
    const got: number[] = [];
    server.onMessage((m) => got.push(Buffer.from(m)[0]!));
    for (let i = 0; i < 5; i++) client.send(Buffer.from([i]));
    expect(got).toEqual([]); // nothing runs until the scheduler runs a step
    while (steps.length > 0) steps.pop()!(); // run pending steps in reverse: the lane still orders
    await eventually(() => got.length === 5);
    expect(got).toEqual([0, 1, 2, 3, 4]);
    await fabric.close();
  });
});
