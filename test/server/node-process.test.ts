/**
 * Node processes' building block in one jest process: three `startNodeProcess` nodes on a real
 * etcd, the TCP fabric with a cluster secret and files, reached by a TalosClient over the client
 * protocol. Writes and reads route by region, a stopped primary's regions move on, the client
 * retries through it, and /metrics answers.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { EtcdCoordinator } from '../../coordination/etcd.js';
import { type LocalEtcd, startLocalEtcd } from '../../coordination/etcd-server.js';
import { TalosClient } from '../../src/client/talos-client.js';
import { OutcomeLedger } from '../../src/cluster/outcome-ledger.js';
import { OutcomeUnknownError } from '../../src/errors.js';
import { memberLoopHealth, readMetricsHealth } from '../../src/server/loop-health.js';
import { type RunningNode, startNodeProcess } from '../../src/server/node-process.js';

jest.setTimeout(90_000);

let etcd: LocalEtcd;
let dir: string;
beforeAll(async () => {
  etcd = await startLocalEtcd();
  dir = mkdtempSync(join(tmpdir(), 'talos-nodes-'));
}, 30_000);
afterAll(async () => {
  await etcd?.stop({ removeData: true });
  rmSync(dir, { recursive: true, force: true });
});

test('three node processes serve a TalosClient; a stopped primary is replaced and nothing acknowledged is lost', async () => {
  const cluster = `np-${process.pid}`;
  const nodes: RunningNode[] = [];
  const start = (id: string, metricsPort?: number) =>
    startNodeProcess({
      nodeId: id,
      listen: 'tcp://127.0.0.1:0',
      clientListen: 'tcp://127.0.0.1:0',
      etcd: etcd.endpoints,
      cluster,
      dataDir: join(dir, id),
      regions: 3,
      replicas: 3,
      expectedNodes: 3,
      leaseTtlMs: 2000,
      secret: 'node-process-test',
      logger: pino({ level: 'silent' }),
      store: { segmentBytes: 64 * 1024, l0Bytes: 64 * 1024 },
      ...(metricsPort === undefined ? {} : { metricsPort }),
    });
  nodes.push(await start('n1', 0), await start('n2'), await start('n3'));
  const client = await TalosClient.connect({ etcd: etcd.endpoints, cluster, operationTimeoutMs: 30_000 });
  try {
    const ledger = new OutcomeLedger();
    const write = async (from: number, to: number, round: number): Promise<void> => {
      await Promise.all(
        Array.from({ length: to - from }, async (_, j) => {
          const i = from + j;
          const key = `${(i * 37).toString(16).padStart(2, '0').slice(-2)}-key-${i}`;
          try {
            await client.put(key, `v${round}-${i}`);
            ledger.ack(key, `v${round}-${i}`);
          } catch (err) {
            // A write in flight on a connection that closed under it may or may not have landed.
            if (!(err instanceof OutcomeUnknownError)) throw err;
            ledger.unknown(key, `v${round}-${i}`);
          }
        }),
      );
    };
    await write(0, 600, 0);
    expect(ledger.unknownOutcomes).toBe(0);
    for (const key of ledger.keys())
      expect(ledger.accepts(key, (await client.get(key))?.toString())).toBe(true);
    const all = await client.scan({ limit: 10_000 });
    expect(all.map((r) => r.key.toString('latin1'))).toEqual(ledger.keys().sort());

    const metrics = await fetch(nodes[0]!.metricsAddress!).then((r) => r.text());
    expect(metrics).toContain('talos_serving_regions');
    expect(metrics).toMatch(/talos_client_requests_total\{[^}]*op="put"[^}]*outcome="ok"[^}]*\} \d+/);
    expect(metrics).toContain('talos_client_request_seconds_bucket');
    expect(metrics).toMatch(/talos_region_epoch\{[^}]*region="r0"[^}]*\} 1/);
    // Per-role numbers (the paper benchmark reads these): n1 is the primary of r0, a backup of r1, r2.
    const gauge = (re: RegExp): number => Number(re.exec(metrics)?.[1] ?? Number.NaN);
    // 600 small puts fill no log segment: the role's log bytes are reported, possibly 0 yet.
    expect(metrics).toMatch(/talos_role_io_bytes\{[^}]*role="backup"[^}]*direction="written"[^}]*\} \d+/);
    expect(gauge(/talos_role_user_bytes\{[^}]*role="primary"[^}]*\} (\d+)/)).toBeGreaterThan(0);
    expect(gauge(/talos_role_cpu_seconds\{[^}]*role="backup"[^}]*\} ([\d.e-]+)/)).toBeGreaterThan(0);
    expect(
      gauge(/talos_backup_message_cpu_seconds\{[^}]*message="OpenBackup"[^}]*\} ([\d.e-]+)/),
    ).toBeGreaterThan(0);
    expect(gauge(/talos_backup_log_buffer_bytes\{[^}]*\} (\d+)/)).toBe(2 * 4 * 64 * 1024);
    expect(metrics).toMatch(/talos_store_levels\{[^}]*role="backup"[^}]*region="r1"[^}]*\} \d+/);
    // Event-loop health, as `talos status` reads it from the address the node published.
    const health = readMetricsHealth(metrics);
    expect(Number.isFinite(health.p99Ms)).toBe(true);
    expect(Number.isFinite(health.stalls)).toBe(true);
    const reader = new EtcdCoordinator({ endpoints: etcd.endpoints, cluster });
    const published = await reader.members().finally(() => reader.close());
    expect(published.find((m) => m.nodeId === 'n1')?.metricsAddress).toBe(nodes[0]!.metricsAddress);
    expect(published.find((m) => m.nodeId === 'n2')?.metricsAddress).toBeUndefined();
    expect(await memberLoopHealth(nodes[0]!.metricsAddress)).toMatchObject({ stalls: health.stalls });

    // Stop n2 (the primary of r1): its regions move on, the client retries through the failover.
    const r1Before = client.regions().find((r) => r.regionId === 'r1')!;
    expect(r1Before.primary).toBe('n2');
    await nodes[1]!.stop();
    await write(600, 900, 1);
    const r1After = client.regions().find((r) => r.regionId === 'r1')!;
    expect(r1After.primary).not.toBe('n2');
    expect(r1After.epoch).toBeGreaterThan(r1Before.epoch);
    for (const key of ledger.keys())
      expect(ledger.accepts(key, (await client.get(key))?.toString())).toBe(true);
    expect(ledger.unknownOutcomes).toBeLessThan(10);
  } finally {
    await client.close();
    for (const node of nodes) await node.stop().catch(() => {});
  }
});
