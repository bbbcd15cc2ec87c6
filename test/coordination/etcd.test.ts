/**
 * EtcdCoordinator against a real etcd server, started by this file from the `etcd` binary (free
 * loopback ports, a temporary data directory, stopped afterwards): the shared conformance suite,
 * then what only a real server shows — etcd killed and restarted under running clients, a member's
 * lease running out while etcd is frozen, a transaction whose reply is lost.
 */
import { Etcd3 } from 'etcd3';
import { EtcdCoordinator } from '../../coordination/etcd.js';
import { EtcdBinaryMissingError, type LocalEtcd, startLocalEtcd } from '../../coordination/etcd-server.js';
import type { CasResult, Membership } from '../../coordination/types.js';
import { CoordinatorUnavailableError } from '../../src/errors.js';
import { type CoordinatorTestEnv, describeCoordinatorConformance, regionConfig } from './conformance.js';

jest.setTimeout(60_000);

let etcd: LocalEtcd;
let clusterNumber = 0;

beforeAll(async () => {
  etcd = await startLocalEtcd();
}, 30_000);

afterAll(async () => {
  await etcd?.stop({ removeData: true });
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function makeEtcdEnv(): CoordinatorTestEnv {
  // Every test gets its own key space, so nothing one test leaves behind reaches the next.
  const cluster = `conformance-${process.pid}-${++clusterNumber}`;
  const clients: EtcdCoordinator[] = [];
  const admin = new Etcd3({ hosts: etcd.endpoints });
  return {
    leaseTtlMs: 2000,
    expirySlackMs: 1500,
    stepMs: 100,
    now: () => Date.now(),
    newClient: () => {
      const client = new EtcdCoordinator({ endpoints: etcd.endpoints, cluster, callTimeoutMs: 3000 });
      clients.push(client);
      return client;
    },
    advance: sleep,
    settle: () => sleep(40),
    revokeLease: async (membership: Membership) => {
      const id = (membership as unknown as { leaseId: string }).leaseId;
      await admin.leaseClient.leaseRevoke({ ID: id });
    },
    teardown: async () => {
      for (const client of clients) await client.close();
      admin.close();
    },
  };
}

describeCoordinatorConformance('EtcdCoordinator (real etcd)', makeEtcdEnv);

test('a missing etcd binary is one clear error naming the package, not a hang', async () => {
  const started = startLocalEtcd({ binary: '/nonexistent/etcd' });
  await expect(started).rejects.toBeInstanceOf(EtcdBinaryMissingError);
  await expect(started).rejects.toThrow(/apt-get install etcd-server/);
});

describe('EtcdCoordinator against a failing etcd', () => {
  test('etcd killed and restarted: calls fail with CoordinatorUnavailableError meanwhile, then work; watches resume', async () => {
    const env = makeEtcdEnv();
    try {
      const c = env.newClient();
      const seen: number[] = [];
      c.watchRegions((event) => {
        if (event.kind === 'put') seen.push(event.entry.config.epoch);
      });
      expect(await c.compareAndSetRegion(0, regionConfig('r1', 1, 'n1', ['n2']))).toMatchObject({ ok: true });
      for (let t = 0; t < 50 && !seen.includes(1); t++) await sleep(50); // the watch is running
      expect(seen).toEqual([1]);
      await etcd.kill();
      await expect(c.getRegions()).rejects.toBeInstanceOf(CoordinatorUnavailableError);
      await etcd.restart();
      let entry = await c.getRegion('r1').catch(() => undefined);
      for (let t = 0; t < 50 && entry === undefined; t++) {
        await sleep(200);
        entry = await c.getRegion('r1').catch(() => undefined);
      }
      expect(entry?.config.epoch).toBe(1);
      expect(await c.compareAndSetRegion(entry!.revision, regionConfig('r1', 2, 'n1', []))).toMatchObject({
        ok: true,
      });
      for (let t = 0; t < 50 && !seen.includes(2); t++) await sleep(100);
      expect(seen).toEqual([1, 2]);
    } finally {
      await env.teardown();
    }
  });

  test('a member of a frozen etcd fences itself by its own clock; after the lease ran out it is gone', async () => {
    const env = makeEtcdEnv();
    try {
      const c = env.newClient();
      const watcher = env.newClient();
      const m = await c.join({ nodeId: 'n1', fabricAddress: 'mem://n1' }, 2000);
      etcd.pause();
      const frozenAt = Date.now();
      // No keepalive is answered: validUntil stops moving and passes while etcd is frozen.
      await sleep(2500);
      expect(m.validUntilMs(0)).toBeLessThanOrEqual(frozenAt + 2000);
      expect(Date.now()).toBeGreaterThan(m.validUntilMs(0));
      etcd.resume();
      // Leases survive an etcd leader change at full TTL (etcd resets them): wait them out.
      let ids = ['n1'];
      for (let t = 0; t < 80 && ids.includes('n1'); t++) {
        await sleep(100);
        ids = (await watcher.members().catch(() => [{ nodeId: 'n1' }])).map((x) => x.nodeId);
      }
      // Either the client re-established keepalives in time (still a member, valid again) or the
      // lease ran out and it is gone; never a member whose validity did not come back.
      if (ids.includes('n1')) expect(m.validUntilMs(0)).toBeGreaterThan(Date.now());
    } finally {
      etcd.resume();
      await env.teardown();
    }
  });

  test('a compare-and-set whose reply is lost is read back: it committed once, and says so', async () => {
    const env = makeEtcdEnv();
    try {
      const c = env.newClient() as EtcdCoordinator;
      const first = await c.compareAndSetRegion(0, regionConfig('r1', 1, 'n1', ['n2']));
      expect(first.ok).toBe(true);
      // Freeze etcd right after the request is sent: the call's deadline passes without a reply.
      const slow = new EtcdCoordinator({
        endpoints: etcd.endpoints,
        cluster: c.options.cluster!,
        callTimeoutMs: 400,
      });
      try {
        const cas = slow.compareAndSetRegion(
          (first as { revision: number }).revision,
          regionConfig('r1', 2, 'n1', []),
        );
        await sleep(30);
        etcd.pause();
        await sleep(600);
        etcd.resume();
        const result: unknown = await cas.catch((err: unknown) => err);
        const after = await c.getRegion('r1');
        if (result instanceof Error) {
          // Unknown outcome: it is reported as unavailable only when the read-back could not decide.
          expect(result).toBeInstanceOf(CoordinatorUnavailableError);
        } else if ((result as CasResult).ok) {
          expect(after?.config.epoch).toBe(2);
          expect(after?.revision).toBe((result as { revision: number }).revision);
        } else {
          expect(after?.config.epoch).toBe(1);
        }
      } finally {
        await slow.close();
      }
    } finally {
      etcd.resume();
      await env.teardown();
    }
  });
});
