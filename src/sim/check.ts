/**
 * One simulated schedule (`talos check`): a SimWorld from a seed, concurrent clients issuing
 * put/get/delete on a small skewed key space, a fault plan drawn from the same seed (crash and
 * restart, pause past the lease, partition from peers / the coordinator / both — one at a time, so
 * a region never loses every replica), then healing and the checkers of PROTOCOL §8:
 * - durability: after healing, every key reads as its last acknowledged write (or a later write
 *   whose outcome was unknown);
 * - linearizability per key (register model, checkRegister), over the whole history including the
 *   final reads;
 * - replica equivalence: every backup's store reads exactly like its primary's;
 * - epoch safety: each region's epochs advance by exactly one, one configuration per epoch.
 * The history records every operation as invoke → ok | fail | info (unknown outcome).
 */
import type { RegionConfig } from '../../coordination/types.js';
import type { LocalCluster } from '../cluster/local-cluster.js';
import { OutcomeUnknownError } from '../errors.js';
import { type Mutant, setMutant } from '../mutants.js';
import type { ReplicationMode } from '../replication/messages.js';
import { checkRegister, type RegisterOp } from './linearizability.js';
import { SimWorld } from './world.js';

export type FaultKind = 'crash' | 'pause' | 'partition-peers' | 'partition-coordinator' | 'partition-all';
export const FAULT_KINDS: readonly FaultKind[] = [
  'crash',
  'pause',
  'partition-peers',
  'partition-coordinator',
  'partition-all',
];

export interface Fault {
  kind: FaultKind;
  node: string;
  /** Virtual ms after the workload starts. */
  atMs: number;
  /** How long a pause or partition lasts. */
  forMs: number;
}

export interface HistoryEntry {
  client: number;
  op: 'put' | 'get' | 'delete';
  key: string;
  value: string | undefined;
  call: number;
  ret: number;
  outcome: 'ok' | 'fail' | 'info';
}

export interface ScheduleOptions {
  seed: number;
  /** Client operations in all (default 60). */
  ops?: number;
  nodes?: number;
  mode?: ReplicationMode;
  /** Faults in the plan drawn from the seed (default 2). */
  faults?: number;
  /** An explicit fault plan instead (fast-check generates and shrinks these). */
  plan?: readonly Fault[];
  /** A deliberate protocol defect for this schedule (the checkers must catch it). */
  mutant?: Mutant;
  /** Called with the healed cluster before it closes (debugging a seed). */
  inspect?: (cluster: LocalCluster, world: SimWorld) => Promise<void>;
}

export interface ScheduleResult {
  seed: number;
  mode: ReplicationMode;
  operations: number;
  faults: Fault[];
  violations: string[];
  history: HistoryEntry[];
  /** Fabric steps and clock jumps the world took. */
  steps: number;
  virtualMs: number;
}

const KEYS = 8;

export async function runSchedule(options: ScheduleOptions): Promise<ScheduleResult> {
  setMutant(options.mutant);
  try {
    return await runScheduleWith(options);
  } finally {
    setMutant(undefined);
  }
}

async function runScheduleWith(options: ScheduleOptions): Promise<ScheduleResult> {
  const seed = options.seed;
  const ops = options.ops ?? 60;
  const nodes = options.nodes ?? 4;
  const world = await SimWorld.create({
    seed,
    nodes,
    regions: 3,
    replicas: 3,
    mode: options.mode ?? (seed % 2 === 0 ? 'send-index' : 'build-index'),
    leaseTtlMs: 300,
    store: { segmentBytes: 4096, l0Bytes: 1024, growthFactor: 2, maxLevels: 4, maxKeyBytes: 64 },
  });
  const mode = world.localCluster.mode;
  const c = world.localCluster;
  const prng = world.prng;
  const nodeIds = c.nodeIds();
  const drawn = (): Fault[] =>
    Array.from({ length: options.faults ?? 2 }, () => ({
      kind: FAULT_KINDS[prng.int(0, FAULT_KINDS.length - 1)]!,
      node: nodeIds[prng.int(0, nodeIds.length - 1)]!,
      atMs: prng.int(0, ops * 8),
      forMs: prng.int(100, 700),
    }));
  const faults: Fault[] = [...(options.plan ?? drawn())].sort((a, b) => a.atMs - b.atMs);
  const keyOf = (): string => {
    // Skewed: key 0 about half the time, then fewer and fewer; spread over the three regions.
    const k = Math.min(KEYS - 1, Math.floor(Math.abs(Math.log2(prng.int(1, 1 << KEYS) / (1 << KEYS)))));
    return `${'05af'[k % 4]}${k}-key`;
  };
  const history: HistoryEntry[] = [];
  let clock = 0; // logical time: one counter for every invocation and completion
  const epochs = recordEpochs(c);
  const violations: string[] = [];
  const client = c.client({ operationTimeoutMs: 20_000 });
  let issued = 0;
  let written = 0;

  const clientLoop = async (id: number): Promise<void> => {
    while (issued < ops) {
      issued++;
      const roll = prng.int(0, 99);
      const op: HistoryEntry['op'] = roll < 55 ? 'put' : roll < 92 ? 'get' : 'delete';
      const key = keyOf();
      const value = op === 'put' ? `s${seed}-${written++}` : undefined;
      const entry: HistoryEntry = {
        client: id,
        op,
        key,
        value,
        call: clock++,
        ret: Number.POSITIVE_INFINITY,
        outcome: 'info',
      };
      history.push(entry);
      try {
        if (op === 'put') await client.put(key, value!);
        else if (op === 'delete') await client.delete(key);
        else entry.value = (await client.get(key))?.toString();
        entry.outcome = 'ok';
        entry.ret = clock++;
      } catch (err) {
        if (err instanceof OutcomeUnknownError) entry.outcome = 'info';
        else {
          entry.outcome = 'fail';
          entry.ret = clock++;
        }
      }
      await new Promise<void>((resolve) => world.clock.setTimeout(resolve, prng.int(0, 15)));
    }
  };

  const faultPlan = async (): Promise<void> => {
    const start = world.clock.now();
    for (const fault of faults) {
      const wait = start + fault.atMs - world.clock.now();
      if (wait > 0) await new Promise<void>((resolve) => world.clock.setTimeout(resolve, wait));
      await inject(c, world, fault);
    }
  };

  try {
    await world.run(Promise.all([...Array.from({ length: 4 }, (_, i) => clientLoop(i)), faultPlan()]));
    // Heal: every node alive and reachable, every region whole again.
    c.heal();
    for (const nodeId of c.deadNodes()) await world.run(c.restartNode(nodeId));
    await world.run(
      c.waitForRegions((map) => whole(c, map), 120_000),
      180_000,
    );
    // Final reads, recorded like any other.
    for (let k = 0; k < KEYS; k++) {
      const key = `${'05af'[k % 4]}${k}-key`;
      const entry: HistoryEntry = {
        client: -1,
        op: 'get',
        key,
        value: undefined,
        call: clock++,
        ret: 0,
        outcome: 'ok',
      };
      entry.value = (await world.run(client.get(key)))?.toString();
      entry.ret = clock++;
      history.push(entry);
      const verdict = checkRegister(registerOps(history, key), undefined);
      if (verdict === 'violation')
        violations.push(`linearizability: key ${key} has no valid order (${describeKey(history, key)})`);
    }
    violations.push(...durability(history));
    violations.push(...(await world.run(replicaEquivalence(c))));
    violations.push(...epochs.check());
    if (options.inspect !== undefined) await world.run(options.inspect(c, world));
  } catch (err) {
    violations.push(`liveness: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    epochs.stop();
    await world.close();
  }
  return {
    seed,
    mode,
    operations: history.length,
    faults,
    violations,
    history,
    steps: world.stepCount,
    virtualMs: world.nowMs(),
  };
}

async function inject(c: LocalCluster, world: SimWorld, fault: Fault): Promise<void> {
  const wait = (ms: number) => new Promise<void>((resolve) => world.clock.setTimeout(resolve, ms));
  switch (fault.kind) {
    case 'crash':
      await c.killNode(fault.node);
      await c.restartNode(fault.node);
      break;
    case 'pause':
      await c.pauseNode(fault.node, fault.forMs);
      break;
    default: {
      const from =
        fault.kind === 'partition-peers'
          ? 'peers'
          : fault.kind === 'partition-coordinator'
            ? 'coordinator'
            : 'all';
      c.partition(fault.node, from);
      await wait(fault.forMs);
      c.heal();
    }
  }
  // One fault at a time: the next waits until every region is whole again.
  await c.waitForRegions((map) => whole(c, map), 120_000);
}

/**
 * Every region has two backups, none joining, and its primary serves the map's epoch (a map
 * that moved on while the primary still serves the epoch before is not whole yet).
 */
function whole(c: LocalCluster, map: readonly RegionConfig[]): boolean {
  return map.every(
    (r) =>
      r.backups.length === 2 &&
      (r.joining ?? []).length === 0 &&
      c.session(r.primary, r.regionId)?.epoch === r.epoch &&
      c.session(r.primary, r.regionId)?.isServing === true,
  );
}

/** One key's operations as register operations: failed ones and reads of unknown outcome left out. */
export function registerOps(history: readonly HistoryEntry[], key: string): RegisterOp[] {
  return history
    .filter((e) => e.key === key && e.outcome !== 'fail' && !(e.op === 'get' && e.outcome !== 'ok'))
    .map((e) => ({
      kind: e.op === 'get' ? ('read' as const) : ('write' as const),
      value: e.op === 'delete' ? undefined : e.value,
      call: e.call,
      ret: e.outcome === 'info' ? Number.POSITIVE_INFINITY : e.ret,
    }));
}

/** Every key's final read is its last acknowledged write, or a write after it of unknown outcome. */
function durability(history: readonly HistoryEntry[]): string[] {
  const out: string[] = [];
  const finals = history.filter((e) => e.client === -1);
  for (const final of finals) {
    const writes = history.filter((e) => e.key === final.key && e.op !== 'get' && e.client !== -1);
    const acked = writes.filter((w) => w.outcome === 'ok');
    const lastAcked = acked.at(-1);
    const value = (w: HistoryEntry): string | undefined => (w.op === 'delete' ? undefined : w.value);
    const acceptable = new Set<string | undefined>();
    // The last acknowledged write, or any write that may have landed after it began.
    if (lastAcked === undefined) acceptable.add(undefined);
    else acceptable.add(value(lastAcked));
    for (const w of writes) {
      if (w.outcome === 'fail') continue;
      if (lastAcked === undefined || w.ret > lastAcked.call || w.outcome === 'info') acceptable.add(value(w));
    }
    if (!acceptable.has(final.value)) {
      out.push(
        `durability: key ${final.key} reads ${JSON.stringify(final.value)}, acknowledged last ${JSON.stringify(lastAcked === undefined ? null : value(lastAcked))}`,
      );
    }
  }
  return out;
}

async function replicaEquivalence(c: LocalCluster): Promise<string[]> {
  await c.flush();
  const out: string[] = [];
  for (const r of c.regions()) {
    const primary = c.session(r.primary, r.regionId)?.store;
    if (primary === undefined) {
      out.push(`replicas: region ${r.regionId} is not served after healing`);
      continue;
    }
    const expected = await dumpStore(primary);
    for (const b of r.backups) {
      const store = (await c.runtime(b).backupStoresByRegion()).get(r.regionId);
      const got = store === undefined ? 'no store' : await dumpStore(store);
      if (got !== expected) {
        out.push(
          `replicas: backup ${b} of ${r.regionId} differs from primary ${r.primary}: ${firstDifference(expected, got)}`,
        );
      }
    }
  }
  return out;
}

function firstDifference(expected: string, got: string): string {
  const a = expected.split(',');
  const b = got.split(',');
  const show = (x: string | undefined): string => {
    if (x === undefined) return 'nothing';
    const [key, value] = x.split('=');
    return `${Buffer.from(key ?? '', 'hex').toString('latin1')}=${Buffer.from(value ?? '', 'hex').toString('latin1')}`;
  };
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] !== b[i]) return `entry ${i}: primary ${show(a[i])}, backup ${show(b[i])}`;
  }
  return 'same';
}

async function dumpStore(store: { scan(): Promise<{ key: Buffer; value: Buffer }[]> }): Promise<string> {
  return (await store.scan()).map((kv) => `${kv.key.toString('hex')}=${kv.value.toString('hex')}`).join(',');
}

/** Watches the region map: per region, every configuration seen, to check epochs afterwards. */
function recordEpochs(c: LocalCluster): { check(): string[]; stop(): void } {
  const seen = new Map<string, RegionConfig[]>();
  const unwatch = c.coordinator.client().watchRegions((event) => {
    if (event.kind !== 'put') return;
    const list = seen.get(event.entry.config.regionId) ?? [];
    list.push(event.entry.config);
    seen.set(event.entry.config.regionId, list);
  });
  return {
    stop: unwatch,
    check: () => {
      const out: string[] = [];
      for (const [regionId, configs] of seen) {
        const byEpoch = new Map<number, string>();
        configs.forEach((config, i) => {
          const json = JSON.stringify(config);
          const earlier = byEpoch.get(config.epoch);
          if (earlier !== undefined && earlier !== json)
            out.push(`epochs: region ${regionId} has two configurations at epoch ${config.epoch}`);
          byEpoch.set(config.epoch, json);
          const prev = configs[i - 1];
          if (prev !== undefined && config.epoch !== prev.epoch + 1) {
            out.push(`epochs: region ${regionId} went from epoch ${prev.epoch} to ${config.epoch}`);
          }
        });
      }
      return out;
    },
  };
}

function describeKey(history: readonly HistoryEntry[], key: string): string {
  return history
    .filter((e) => e.key === key)
    .map(
      (e) =>
        `${e.op}${e.value === undefined ? '' : `(${e.value})`}@${e.call}-${e.ret === Number.POSITIVE_INFINITY ? '?' : e.ret}:${e.outcome}`,
    )
    .join(' ');
}
