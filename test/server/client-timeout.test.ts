/**
 * TalosClient's budget on real sockets and a real etcd: a region map and member written straight
 * into etcd point the client at client endpoints that misbehave.
 * - Nobody listens at the primary's address: every attempt never leaves, and the operation ends
 *   with OperationTimeoutError after `operationTimeoutMs` — not with the last retry's error.
 * - The primary accepts requests and never answers: a read ends with OperationTimeoutError and a
 *   write with OutcomeUnknownError, both within the operation's budget even though one request's
 *   wait (`requestTimeoutMs`) is far longer.
 */

import { EtcdCoordinator } from '../../coordination/etcd.js';
import { freePort, type LocalEtcd, startLocalEtcd } from '../../coordination/etcd-server.js';
import type { Membership } from '../../coordination/types.js';
import { TalosClient } from '../../src/client/talos-client.js';
import { OperationTimeoutError, OutcomeUnknownError, UnreachableError } from '../../src/errors.js';
import { type ClientServer, startClientServer } from '../../src/server/client-server.js';

jest.setTimeout(60_000);

let etcd: LocalEtcd;
let coordinator: EtcdCoordinator;
let membership: Membership | undefined;
const cluster = `timeout-${process.pid}`;

beforeAll(async () => {
  etcd = await startLocalEtcd();
  coordinator = new EtcdCoordinator({ endpoints: etcd.endpoints, cluster });
  const created = await coordinator.compareAndSetRegion(0, {
    regionId: 'r0',
    minKey: '',
    epoch: 1,
    primary: 'n1',
    backups: [],
    state: 'active',
  });
  expect(created.ok).toBe(true);
}, 30_000);
afterAll(async () => {
  await membership?.leave().catch(() => {});
  await coordinator?.close();
  await etcd?.stop({ removeData: true });
});

/** Lists n1 with this client address (replacing an earlier listing). */
async function listPrimaryAt(clientAddress: string): Promise<void> {
  await membership?.leave();
  membership = await coordinator.join(
    { nodeId: 'n1', fabricAddress: 'tcp://127.0.0.1:1', clientAddress },
    5000,
  );
}

test('nobody listens at the primary: OperationTimeoutError after the budget, its cause UnreachableError', async () => {
  await listPrimaryAt(`tcp://127.0.0.1:${await freePort()}`);
  const client = await TalosClient.connect({ etcd: etcd.endpoints, cluster, operationTimeoutMs: 800 });
  try {
    for (const op of [() => client.put('k', 'v'), () => client.get('k')]) {
      const started = Date.now();
      const err = await op().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(OperationTimeoutError);
      expect((err as OperationTimeoutError).cause).toBeInstanceOf(UnreachableError);
      expect(Date.now() - started).toBeGreaterThanOrEqual(600);
      expect(Date.now() - started).toBeLessThan(3000);
    }
  } finally {
    await client.close();
  }
});

test('a primary that never answers: a read times out, a write is an unknown outcome, both within the budget', async () => {
  const hanging = new Promise<never>(() => {});
  const server: ClientServer = await startClientServer({
    address: 'tcp://127.0.0.1:0',
    nodeId: 'n1',
    session: () => ({
      isServing: true,
      put: () => hanging,
      delete: () => hanging,
      get: () => hanging,
      scan: () => hanging,
    }),
  });
  await listPrimaryAt(server.address);
  const client = await TalosClient.connect({
    etcd: etcd.endpoints,
    cluster,
    operationTimeoutMs: 700,
    requestTimeoutMs: 30_000,
  });
  try {
    let started = Date.now();
    await expect(client.get('k')).rejects.toBeInstanceOf(OperationTimeoutError);
    expect(Date.now() - started).toBeLessThan(3000);
    started = Date.now();
    await expect(client.put('k', 'v')).rejects.toBeInstanceOf(OutcomeUnknownError);
    expect(Date.now() - started).toBeLessThan(3000);
  } finally {
    await client.close();
    await server.close();
  }
});
