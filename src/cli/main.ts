/**
 * The `talos` command line. Subcommands are added as the layers beneath them land.
 */
// First: sizes libuv's thread pool before any module uses it.
import './thread-pool.js';
import { Command, InvalidArgumentError, Option } from 'commander';
import { MUTANTS } from '../probe.js';
import { FAULT_KINDS, type Fault, type FaultKind, FIRST_FAULT_KINDS, PHASES } from '../sim/faults.js';
import { type DemoOptions, runDemo } from './demo.js';

const program = new Command();
program
  .name('talos')
  .description('Talos: replicated LSM key-value store with index shipping')
  .version('0.1.0');

const integer = (v: string): number => {
  const n = Number.parseInt(v, 10);
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new InvalidArgumentError(`expected a positive integer, got ${v}`);
  return n;
};
/** A non-negative integer option (`--faults 0`). */
const count = (v: string): number => (v.trim() === '0' ? 0 : integer(v));

program
  .command('demo', { isDefault: true })
  .description(
    'run a 3-node replicated cluster in this process (real files), load a YCSB-style workload, verify every acknowledged write on primaries and backups',
  )
  .option('--quick', 'a short run (under 30 s)')
  .option('--json', 'print one JSON summary object as the last line')
  .option('--compare', 'run the other replication mode too and print both side by side')
  .addOption(
    new Option('--mode <mode>', 'replication mode')
      .choices(['send-index', 'build-index'])
      .default('send-index'),
  )
  .option('--dir <path>', 'parent data directory, kept afterwards (default: a temporary one, removed)')
  .option('--keys <n>', 'number of keys to load', integer)
  .option('--concurrency <n>', 'operations in flight', integer)
  .option('--value-bytes <n>', 'value size in bytes', integer)
  .option('--no-failover', 'do not kill and bring back a primary mid-load')
  .option('--lease-ttl-ms <n>', 'lease TTL of the nodes (how long a dead primary holds its region)', integer)
  .action(async (options: DemoOptions) => {
    await runDemo(options);
  });

const list = (v: string): string[] => v.split(',').filter((x) => x.length > 0);
const etcdOption = (): Option =>
  new Option('--etcd <endpoints>', 'etcd endpoints, comma-separated')
    .default(['http://127.0.0.1:2379'], 'http://127.0.0.1:2379')
    .argParser(list);
const clusterOption = (): Option =>
  new Option('--cluster <name>', 'cluster name (etcd key prefix)').default('talos');

/** A client command's credentials: TLS to the nodes (and to etcd over https), a bearer token. */
const withCredentials = (command: Command): Command =>
  command
    .option('--tls-ca <file>', "TLS: the CA that signed the nodes' (and etcd's) certificates")
    .option('--tls-cert <file>', 'TLS: this client certificate (mutual TLS), with --tls-key')
    .option('--tls-key <file>', "TLS: the client certificate's key")
    .option('--token-file <file>', 'a bearer token (the first line of the file) for the nodes');

interface CredentialOptions {
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tokenFile?: string;
}

async function credentialsFrom(o: CredentialOptions): Promise<{
  tls?: import('../fabric/tls.js').TlsCredentials;
  token?: string;
}> {
  const { readTlsFiles, readClientToken } = await import('../fabric/tls.js');
  if (o.tlsCa === undefined && (o.tlsCert !== undefined || o.tlsKey !== undefined)) {
    throw new InvalidArgumentError('--tls-cert/--tls-key need --tls-ca');
  }
  return {
    ...(o.tlsCa === undefined
      ? {}
      : {
          tls: readTlsFiles({
            caFile: o.tlsCa,
            ...(o.tlsCert === undefined ? {} : { certFile: o.tlsCert }),
            ...(o.tlsKey === undefined ? {} : { keyFile: o.tlsKey }),
          }),
        }),
    ...(o.tokenFile === undefined ? {} : { token: readClientToken(o.tokenFile) }),
  };
}

program
  .command('node')
  .description('run one node of a cluster coordinated by etcd (TCP or RDMA fabric, files under --data-dir)')
  .requiredOption('--id <nodeId>', 'this node id')
  .requiredOption(
    '--listen <address>',
    'fabric address: tcp://host:port, or rdma://host:port with --fabric rdma',
  )
  .requiredOption('--client <tcp://host:port>', 'client endpoint address')
  .requiredOption('--data-dir <path>', 'where this node keeps its stores')
  .addOption(etcdOption())
  .addOption(clusterOption())
  .addOption(new Option('--fabric <kind>', 'fabric').choices(['tcp', 'rdma']).default('tcp'))
  .option('--rdma-device <name>', 'with --fabric rdma: the RDMA device (e.g. mlx5_0, rxe0)')
  .option('--rdma-gid-index <n>', 'with --fabric rdma: GID table index (RoCE)', integer)
  .addOption(
    new Option('--mode <mode>', 'replication mode')
      .choices(['send-index', 'build-index'])
      .default('send-index'),
  )
  .option('--regions <n>', 'regions in the layout (same on every node)', integer, 3)
  .option('--replicas <n>', 'copies of each region', integer, 3)
  .option('--nodes <n>', 'members to wait for before the first placement', integer)
  .option('--lease-ttl-ms <n>', 'lease TTL (etcd grants whole seconds, at least 2)', integer, 3000)
  .option('--metrics-port <n>', 'serve Prometheus metrics on this port', integer)
  .option('--secret-file <path>', 'cluster secret for the fabric handshake (or TALOS_CLUSTER_SECRET)')
  .option('--tls-cert <file>', "TLS: this node's certificate (fabric: mutual TLS; client endpoint)")
  .option('--tls-key <file>', "TLS: the certificate's key")
  .option('--tls-ca <file>', "TLS: the CA that signs the nodes' and clients' certificates")
  .option('--client-token-file <file>', 'clients must present one of these bearer tokens (one per line)')
  .option(
    '--client-cert-auth',
    'with TLS: clients must authenticate (a client certificate from --tls-ca, or a token)',
  )
  .option('--etcd-ca <file>', 'TLS to etcd: its CA (default: --tls-ca for https:// endpoints)')
  .option('--etcd-cert <file>', 'TLS to etcd: client certificate (default: --tls-cert)')
  .option('--etcd-key <file>', 'TLS to etcd: its key (default: --tls-key)')
  .option('--segment-bytes <n>', 'log and index segment size of new stores (default 2 MiB)', integer)
  .option('--l0-bytes <n>', 'L0 size in index bytes before a flush (default 4 MiB)', integer)
  .option('--growth-factor <n>', 'size ratio between consecutive levels (default 8)', integer)
  .option('--max-levels <n>', 'on-device levels L1..Ln (default 5)', integer)
  .action(async (o) => {
    const { startNodeProcess } = await import('../server/node-process.js');
    if (o.fabric === 'rdma' && o.rdmaDevice === undefined) {
      throw new InvalidArgumentError('--fabric rdma needs --rdma-device NAME (see ibv_devices)');
    }
    const tlsFlags = [o.tlsCa, o.tlsCert, o.tlsKey].filter((f) => f !== undefined).length;
    if (tlsFlags !== 0 && tlsFlags !== 3) {
      throw new InvalidArgumentError('TLS needs all of --tls-ca, --tls-cert and --tls-key');
    }
    const store = {
      ...(o.segmentBytes === undefined ? {} : { segmentBytes: o.segmentBytes }),
      ...(o.l0Bytes === undefined ? {} : { l0Bytes: o.l0Bytes }),
      ...(o.growthFactor === undefined ? {} : { growthFactor: o.growthFactor }),
      ...(o.maxLevels === undefined ? {} : { maxLevels: o.maxLevels }),
    };
    const node = await startNodeProcess({
      ...(o.fabric === 'rdma'
        ? {
            rdma: {
              device: o.rdmaDevice,
              ...(o.rdmaGidIndex === undefined ? {} : { gidIndex: o.rdmaGidIndex }),
            },
          }
        : {}),
      nodeId: o.id,
      listen: o.listen,
      clientListen: o.client,
      dataDir: o.dataDir,
      etcd: o.etcd,
      cluster: o.cluster,
      mode: o.mode,
      regions: o.regions,
      replicas: o.replicas,
      expectedNodes: o.nodes ?? o.replicas,
      leaseTtlMs: o.leaseTtlMs,
      store,
      ...(o.metricsPort === undefined ? {} : { metricsPort: o.metricsPort }),
      ...(o.secretFile === undefined ? {} : { secretFile: o.secretFile }),
      ...(o.tlsCa === undefined ? {} : { tls: { caFile: o.tlsCa, certFile: o.tlsCert, keyFile: o.tlsKey } }),
      ...(o.clientTokenFile === undefined ? {} : { clientTokenFile: o.clientTokenFile }),
      ...(o.clientCertAuth === true ? { clientCertAuth: true } : {}),
      ...(o.etcdCa === undefined
        ? {}
        : {
            etcdTls: {
              caFile: o.etcdCa,
              ...((o.etcdCert ?? o.tlsCert) === undefined ? {} : { certFile: o.etcdCert ?? o.tlsCert }),
              ...((o.etcdKey ?? o.tlsKey) === undefined ? {} : { keyFile: o.etcdKey ?? o.tlsKey }),
            },
          }),
    });
    const shutdown = (): void => {
      void node.stop().then(() => process.exit(0));
    };
    process.once('SIGTERM', shutdown);
    process.once('SIGINT', shutdown);
  });

withCredentials(
  program
    .command('status')
    .description('print members, regions, primaries, backups and epochs')
    .addOption(etcdOption())
    .addOption(clusterOption())
    .option('--json', 'print JSON'),
).action(async (o) => {
  const { EtcdCoordinator } = await import('../../coordination/etcd.js');
  const { tls } = await credentialsFrom(o);
  const c = new EtcdCoordinator({
    endpoints: o.etcd,
    cluster: o.cluster,
    ...(tls === undefined || !o.etcd.some((e: string) => e.startsWith('https:'))
      ? {}
      : {
          credentials: {
            rootCertificate: Buffer.from(tls.ca),
            ...(tls.key === undefined ? {} : { privateKey: Buffer.from(tls.key) }),
            ...(tls.cert === undefined ? {} : { certChain: Buffer.from(tls.cert) }),
          },
        }),
  });
  try {
    const [members, regions] = await Promise.all([c.members(), c.getRegions()]);
    const { memberLoopHealth, formatLoopHealth } = await import('../server/loop-health.js');
    const health = await Promise.all(members.map((m) => memberLoopHealth(m.metricsAddress)));
    if (o.json) {
      process.stdout.write(
        `${JSON.stringify({ members: members.map((m, i) => ({ ...m, loop: health[i] ?? null })), regions: regions.map((r) => r.config) })}\n`,
      );
      return;
    }
    process.stdout.write(`members (${members.length}):\n`);
    for (const [i, m] of members.entries())
      process.stdout.write(
        `  ${m.nodeId}  fabric ${m.fabricAddress}  client ${m.clientAddress ?? '-'}  ${formatLoopHealth(health[i])}\n`,
      );
    process.stdout.write(`regions (${regions.length}):\n`);
    for (const { config: r } of regions) {
      const range = `[${JSON.stringify(r.minKey)}, ${r.maxKey === undefined ? '∞' : JSON.stringify(r.maxKey)})`;
      const joining = r.joining?.length ? `  joining ${r.joining.join(',')}` : '';
      process.stdout.write(
        `  ${r.regionId}  ${range}  epoch ${r.epoch}  primary ${r.primary}  backups ${r.backups.join(',') || '-'}${joining}\n`,
      );
    }
  } finally {
    await c.close();
  }
});

const withClient = async <T>(
  o: { etcd: string[]; cluster: string } & CredentialOptions,
  job: (client: import('../client/talos-client.js').TalosClient) => Promise<T>,
): Promise<T> => {
  const { TalosClient } = await import('../client/talos-client.js');
  const client = await TalosClient.connect({
    etcd: o.etcd,
    cluster: o.cluster,
    ...(await credentialsFrom(o)),
  });
  try {
    return await job(client);
  } finally {
    await client.close();
  }
};

withCredentials(program.command('put <key> <value>'))
  .description('write a value')
  .addOption(etcdOption())
  .addOption(clusterOption())
  .action(async (key: string, value: string, o) => {
    await withClient(o, (client) => client.put(key, value));
  });

withCredentials(program.command('get <key>'))
  .description('read a value (exit 2 when absent)')
  .addOption(etcdOption())
  .addOption(clusterOption())
  .action(async (key: string, o) => {
    const value = await withClient(o, (client) => client.get(key));
    if (value === undefined) process.exitCode = 2;
    else process.stdout.write(`${value.toString()}\n`);
  });

withCredentials(program.command('delete <key>'))
  .description('delete a key')
  .addOption(etcdOption())
  .addOption(clusterOption())
  .action(async (key: string, o) => {
    await withClient(o, (client) => client.delete(key));
  });

withCredentials(program.command('scan'))
  .description('list keys and values in key order')
  .addOption(etcdOption())
  .addOption(clusterOption())
  .option('--gte <key>', 'from this key')
  .option('--lt <key>', 'up to this key')
  .option('--limit <n>', 'at most this many', integer, 100)
  .option('--reverse', 'descending')
  .action(async (o) => {
    const rows = await withClient(o, (client) =>
      client.scan({
        ...(o.gte === undefined ? {} : { gte: o.gte }),
        ...(o.lt === undefined ? {} : { lt: o.lt }),
        limit: o.limit,
        reverse: o.reverse === true,
      }),
    );
    for (const row of rows) process.stdout.write(`${row.key.toString('latin1')}\t${row.value.toString()}\n`);
  });

program
  .command('check')
  .description(
    'run seeded simulated schedules (faults, concurrent clients) and check durability, linearizability, replicas and epochs',
  )
  .option('--seeds <n>', 'schedules to run', integer, 100)
  .option('--ops <n>', 'client operations per schedule', integer, 60)
  .option('--faults <n>', 'faults per schedule (drawn from the seed)', count, 3)
  .option(
    '--fault-kinds <list>',
    `comma-separated kinds a drawn plan picks from (default all: ${FAULT_KINDS.join(', ')}; "first": the first simulator's nine, which older seeds were drawn from)`,
    (v: string) => parseFaultKinds(v),
  )
  .option('--nodes <n>', 'nodes in the simulated cluster (≥ 4: RF 3 plus a spare)', integer, 4)
  .option(
    '--concurrent-faults <n>',
    'faults that may overlap, on distinct nodes (1: one at a time, each healed before the next)',
    integer,
  )
  .option('--seed <n>', 'first seed (default: random)', (v: string) => Number.parseInt(v, 10))
  .option('--replay <seed>', 'run one seed again and print its faults and history', (v: string) =>
    Number.parseInt(v, 10),
  )
  .option(
    '--plan <json>',
    'with --replay: this fault plan instead of the drawn one (as printed)',
    (v: string) => parsePlan(v),
  )
  .option(
    '--choices <list>',
    'with --replay: one path of `talos explore` (its printed choices; with --nodes --replicas --ops --faults as printed)',
  )
  .option('--replicas <n>', 'with --choices: copies of the region (RF)', integer)
  .option('--log-buffers <n>', 'with --choices: log buffers per backup (K)', integer)
  .option('--no-drift', 'with --choices: clocks without drift')
  .option('--timeline', 'with --replay: print faults, region configurations and restarts as they happen')
  .option(
    '--html <path>',
    'with --replay: write the schedule as one self-contained HTML page (the trace viewer)',
  )
  .option('--no-shrink', 'report the first failing schedule without shrinking it')
  .option('--no-batches', 'a workload without atomic batches (seeds recorded before session 11 replay so)')
  .addOption(
    new Option('--mode <mode>', 'replication mode (default: by seed)').choices(['send-index', 'build-index']),
  )
  .addOption(
    new Option(
      '--mutant <name>',
      'run with a deliberate protocol defect (the checkers must catch it)',
    ).choices([...MUTANTS]),
  )
  .option('--json', 'print one JSON summary object as the last line')
  .option('--report <path>', 'write a markdown report (docs/reliability.md)')
  .option('--append-report', "with --report: add this run's section to the existing report")
  .action(async (o) => {
    if (o.choices !== undefined) {
      if (o.replay === undefined) throw new InvalidArgumentError('--choices: only with --replay');
      const { parseChoices, replayChoices } = await import('./explore.js');
      const result = await replayChoices({ ...o, replay: o.replay, choices: parseChoices(o.choices) });
      if (result.violations.length > 0) process.exitCode = 1;
      return;
    }
    const { runCheck } = await import('./check.js');
    const summary = await runCheck(o);
    if (summary.violations > 0) process.exitCode = 1;
  });

program
  .command('explore')
  .description(
    'explore every order of deliveries, I/O completions, timers and fault points of a small simulated world (bounded), checking the invariants of talos check and reachability properties',
  )
  .option('--nodes <n>', 'nodes (2–4; default 3)', integer)
  .option('--replicas <n>', 'copies of the one region (2–3; default 3)', integer)
  .option('--ops <n>', 'client operations of the fixed workload (1–6; default 3)', integer)
  .option('--faults <n>', 'faults the explorer may inject (0–2; default 1)', count)
  .option('--depth <n>', 'choice points per path the explorer branches at (default 7)', integer)
  .option(
    '--fault-kinds <list>',
    'the fault menu: some of crash, kill, partition-all, stall (default crash,kill,partition-all)',
    (v: string) => parseFaultKinds(v),
  )
  .option('--log-buffers <n>', 'log buffers per backup, K (default 1)', integer)
  .option('--no-drift', "every node's clock exact (default: at the drift bound's edge, as talos check)")
  .option('--seed <n>', "the world's seed (its start-up before the first choice; default 1)", integer)
  .option('--max-states <n>', 'stop after this many unique states', integer)
  .option('--time-budget <s>', 'stop after this many seconds', integer)
  .option('--all', 'keep exploring after the first violation')
  .addOption(
    new Option('--mode <mode>', 'replication mode (default send-index)').choices([
      'send-index',
      'build-index',
    ]),
  )
  .addOption(
    new Option(
      '--mutant <name>',
      'a deliberate protocol defect; alone, at the smallest configuration that shows it (docs/explore.md)',
    ).choices([...MUTANTS]),
  )
  .option('--json', 'print one JSON summary object as the last line')
  .action(async (o) => {
    const { runExploreCli } = await import('./explore.js');
    const summary = await runExploreCli(o);
    if (summary.violations.length > 0) process.exitCode = 1;
  });

/** `--fault-kinds`: kinds by name, or "first" for FIRST_FAULT_KINDS. */
function parseFaultKinds(text: string): FaultKind[] {
  if (text === 'first') return [...FIRST_FAULT_KINDS];
  const kinds: readonly string[] = FAULT_KINDS;
  const list = text.split(',').map((k) => k.trim());
  const unknown = list.filter((k) => !kinds.includes(k));
  if (unknown.length > 0 || list.length === 0)
    throw new InvalidArgumentError(
      `--fault-kinds: unknown kind(s) ${unknown.join(', ')}; known: ${FAULT_KINDS.join(', ')}`,
    );
  return list as FaultKind[];
}

/** A fault plan as `talos check` prints it: a JSON array of {kind, node, atMs, forMs}. */
function parsePlan(text: string): Fault[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new InvalidArgumentError('--plan: not JSON');
  }
  const kinds: readonly string[] = FAULT_KINDS;
  const phases: readonly string[] = PHASES;
  const valid =
    Array.isArray(value) &&
    value.every(
      (f) =>
        typeof f === 'object' &&
        f !== null &&
        kinds.includes(f.kind) &&
        typeof f.node === 'string' &&
        Number.isInteger(f.atMs) &&
        Number.isInteger(f.forMs) &&
        (f.during === undefined || phases.includes(f.during)) &&
        (f.strike === undefined || f.strike === 'actor' || f.strike === 'peer'),
    );
  if (!valid)
    throw new InvalidArgumentError(
      `--plan: expected [{"kind","node","atMs","forMs"[,"during","strike"]}, …] (during: ${PHASES.join(', ')}; strike: actor, peer)`,
    );
  return value as Fault[];
}

// Output piped into a reader that stopped (`talos check --replay … | head`): end quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`talos: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
