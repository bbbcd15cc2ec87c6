/**
 * `talos explore`: bounded exhaustive exploration of the simulated world for small configurations
 * (stateless model checking, as CHESS or Stateright's on-the-fly DFS do). One region on 2–4 nodes,
 * RF 2–3, a fixed workload of up to six operations from two clients, up to two faults.
 *
 * A path is a sequence of choices, one per choice point: whenever the world has more than one thing
 * it could do next — deliver one of the queued fabric steps or I/O completions, move the clock to
 * the next due timer before them, or (while faults remain) inject a fault from the menu (crash,
 * kill for a while, or partition one node) — it asks the PathChooser. A path replays its prefix
 * of choices from a fresh world and then takes choice 0 (the oldest queued step) at every later
 * point, so each run is deterministic and replayable (`talos check --replay SEED --choices …`).
 * Within the depth bound (choice points per path) the explorer records each point's state
 * fingerprint (fingerprint.ts); a point whose fingerprint is new is a unique state and every other
 * choice at it becomes a path to explore (DFS); a point whose fingerprint was seen at the same depth or
 * shallower ends the path's branching (its subtree is explored from there; seen only deeper, with
 * less of the bound left, it is explored again). Every run — settled, then
 * healed and read back — goes through the checkers of `talos check`: linearizability per key,
 * durability, replica equivalence, epochs, the trace checkers and the liveness bounds. Reachability
 * properties ("sometimes") are the trace's phases: a promotion, a rebase, a re-sync and a fenced
 * epoch, each in some explored run.
 */
import type { RegionConfig } from '../../coordination/types.js';
import { InvalidArgumentError, OutcomeUnknownError } from '../errors.js';
import type { Mutant, Probe } from '../probe.js';
import type { ReplicationMode } from '../replication/messages.js';
import type { TraceEvent } from '../trace.js';
import {
  durability,
  type HistoryEntry,
  invoked,
  livenessBounds,
  recordEpochs,
  registerOps,
  replicaEquivalence,
} from './check.js';
import { TraceChecker } from './events.js';
import { CLOCK_DRIFT_BOUND, CLOCK_JUMP_BOUND_MS } from './faults.js';
import { fingerprint, TraceDigest } from './fingerprint.js';
import { checkRegister } from './linearizability.js';
import { scheduleProbe } from './probe.js';
import { type Chooser, SimWorld } from './world.js';

export const PROPERTIES = ['promotion', 'rebase', 'resync', 'fenced'] as const;
export type Property = (typeof PROPERTIES)[number];

/** The fault menu's kinds (named as talos check's): a stall lasts a lease TTL, the others FAULT_MS. */
export const EXPLORE_FAULT_KINDS = ['crash', 'kill', 'partition-all', 'stall'] as const;
export type ExploreFaultKind = (typeof EXPLORE_FAULT_KINDS)[number];
const DEFAULT_FAULT_KINDS: readonly ExploreFaultKind[] = ['crash', 'kill', 'partition-all'];

export interface ExploreConfig {
  nodes: number;
  replicas: number;
  /** Client operations, the first `ops` of WORKLOAD. */
  ops: number;
  /** Faults the chooser may inject (at most). */
  faults: number;
  /** The kinds of the fault menu (each on every node it may strike). */
  faultKinds: readonly ExploreFaultKind[];
  /** Choice points per path the explorer branches at (later ones take choice 0). */
  depth: number;
  mode: ReplicationMode;
  /** Log buffers per backup (K). */
  logBufferCount: number;
  /**
   * Every node's clock at the edge of the drift bound for the whole run (the first node — the
   * first primary — slow, the others alternately fast and slow), as `talos check` does.
   */
  clockDrift: boolean;
  /** The world's seed: only the cluster's start-up, before the first choice point, uses it. */
  seed: number;
  mutant?: Mutant | undefined;
}

export const DEFAULT_CONFIG: ExploreConfig = {
  nodes: 3,
  replicas: 3,
  ops: 3,
  faults: 1,
  faultKinds: DEFAULT_FAULT_KINDS,
  depth: 7,
  mode: 'send-index',
  logBufferCount: 1,
  clockDrift: true,
  seed: 1,
};

/**
 * The smallest configuration at which `explore` catches each mutant (docs/explore.md): what
 * `talos explore --mutant M` uses when no other option is given.
 */
export const MUTANT_CONFIGS: Record<Mutant, Partial<ExploreConfig>> = {
  'ack-before-replicate': { nodes: 2, replicas: 2, ops: 1, faults: 1, depth: 1 },
  'no-l0-replay': { nodes: 2, replicas: 2, ops: 1, faults: 1, depth: 2 },
  'no-revoke': { nodes: 3, replicas: 3, ops: 1, faults: 1, depth: 2 },
  'stale-map': { nodes: 3, replicas: 3, ops: 1, faults: 1, depth: 1 },
  // Shown by the first path (every choice 0): its third put seals the second segment into buffer 0.
  'early-buffer-reuse': { nodes: 2, replicas: 2, ops: 4, faults: 0, depth: 0 },
  // Shown by the first path: the fourth write (operation 5, the delete) is reported failed.
  'failed-after-append': { nodes: 2, replicas: 2, ops: 5, faults: 0, depth: 0 },
  'no-lease-margin': { nodes: 2, replicas: 2, ops: 1, faults: 1, depth: 2, faultKinds: ['stall'] },
};

/** The fixed workload: client, operation and key (values are `v<i>` padded to VALUE_BYTES). */
export const WORKLOAD: readonly { client: number; op: 'put' | 'get' | 'delete'; key: string }[] = [
  { client: 0, op: 'put', key: 'a' },
  { client: 1, op: 'put', key: 'a' },
  { client: 0, op: 'get', key: 'a' },
  { client: 1, op: 'put', key: 'b' },
  { client: 0, op: 'delete', key: 'a' },
  { client: 1, op: 'get', key: 'b' },
];
const KEYS = ['a', 'b'];
/** Large enough that two puts fill a 4 KiB log segment (seals, buffer reuse, shipping). */
const VALUE_BYTES = 1800;
const LEASE_TTL_MS = 300;
const FAULT_MS = 400;
const SETTLE_MS = 2 * LEASE_TTL_MS;

export function validateConfig(config: ExploreConfig): void {
  const int = (name: string, v: number, lo: number, hi: number): void => {
    if (!Number.isInteger(v) || v < lo || v > hi)
      throw new InvalidArgumentError(`${name}: an integer from ${lo} to ${hi}, not ${v}`);
  };
  int('nodes', config.nodes, 2, 4);
  int('replicas', config.replicas, 2, Math.min(3, config.nodes));
  int('ops', config.ops, 1, WORKLOAD.length);
  int('faults', config.faults, 0, 2);
  int('depth', config.depth, 0, 200);
  const unknown = config.faultKinds.filter((k) => !(EXPLORE_FAULT_KINDS as readonly string[]).includes(k));
  if (unknown.length > 0 || config.faultKinds.length === 0)
    throw new InvalidArgumentError(
      `fault kinds: some of ${EXPLORE_FAULT_KINDS.join(', ')}, not ${config.faultKinds.join(', ')}`,
    );
}

/** One choice point a run passed: how many alternatives, the state's fingerprint, what was taken. */
export interface ChoicePoint {
  n: number;
  fingerprint: string;
  choice: number;
}

export interface PathResult {
  /** Choice points within the depth bound (the prefix first). */
  points: ChoicePoint[];
  violations: string[];
  /** Reachability properties this run showed. */
  reached: Property[];
  history: HistoryEntry[];
  /** The faults injected, as `kind node`. */
  faults: string[];
  steps: number;
  virtualMs: number;
}

/**
 * Takes the prefix's choices, then choice 0; records every choice point within `depth` with its
 * fingerprint. At a point where faults remain, choices n … n+menu−1 inject a fault of the menu (the
 * chooser answers −1 so the world lets the fault start, then asks again).
 */
class PathChooser implements Chooser {
  readonly timersCompete = true;
  readonly points: ChoicePoint[] = [];

  constructor(
    private readonly prefix: readonly number[],
    private readonly depth: number,
    private readonly state: () => string,
    private readonly menu: () => (() => void)[],
  ) {}

  choose(n: number): number {
    if (this.points.length >= this.depth) return 0;
    const menu = this.menu();
    const total = n + menu.length;
    if (total <= 1) return 0;
    const i = this.points.length;
    const choice = i < this.prefix.length ? this.prefix[i]! : 0;
    if (choice >= total) throw new InvalidArgumentError(`choice ${i}: ${choice} of ${total} alternatives`);
    this.points.push({ n: total, fingerprint: this.state(), choice });
    if (choice < n) return choice;
    menu[choice - n]!();
    return -1;
  }
}

/** Runs one path: the world, the workload, the faults the choices inject, healing and the checkers. */
export async function runPath(config: ExploreConfig, prefix: readonly number[]): Promise<PathResult> {
  validateConfig(config);
  const trace = new TraceChecker();
  const digest = new TraceDigest();
  const reached = new Set<Property>();
  let recording = false;
  // The path's own probe (sim/probe.ts): its world traces here and runs the config's mutant.
  const probe = scheduleProbe({
    trace: (event: TraceEvent) => {
      trace.record(event);
      if (!recording) return;
      digest.add(event);
      if (event.kind === 'fenced') reached.add('fenced');
      if (event.kind === 'phase' && (PROPERTIES as readonly string[]).includes(event.phase))
        reached.add(event.phase as Property);
    },
    mutant: config.mutant,
  });
  return runPathWith(config, prefix, probe, trace, digest, reached, () => {
    recording = true;
  });
}

async function runPathWith(
  config: ExploreConfig,
  prefix: readonly number[],
  probe: Probe,
  trace: TraceChecker,
  digest: TraceDigest,
  reached: Set<Property>,
  startRecording: () => void,
): Promise<PathResult> {
  const world = await SimWorld.create({
    seed: config.seed,
    probe,
    nodes: config.nodes,
    regions: 1,
    replicas: config.replicas,
    mode: config.mode,
    leaseTtlMs: LEASE_TTL_MS,
    logBufferCount: config.logBufferCount,
    skewLayouts: true,
    maxClockDrift: CLOCK_DRIFT_BOUND,
    maxClockJumpMs: CLOCK_JUMP_BOUND_MS,
    store: { segmentBytes: 4096, l0Bytes: 64, growthFactor: 2, maxLevels: 3, maxKeyBytes: 64 },
  });
  const c = world.localCluster;
  if (config.clockDrift)
    for (const [i, nodeId] of c.nodeIds().entries())
      c.setClockRate(nodeId, 1 + (i % 2 === 0 ? -1 : 1) * CLOCK_DRIFT_BOUND);
  const client = c.client({ operationTimeoutMs: 20_000 });
  const startMs = world.clock.now();
  const nowMs = (): number => world.clock.now() - startMs;
  trace.nowMs = nowMs;
  const epochs = recordEpochs(c);
  const history: HistoryEntry[] = [];
  const violations: string[] = [];
  const faultsDone: string[] = [];
  const faultWork: Promise<void>[] = [];
  const faulted = new Set<string>();
  const recoveries: { endedAtMs: number; wholeAtMs: number }[] = [];
  let clock = 0;
  let injecting = true;
  const sleep = (ms: number) => new Promise<void>((resolve) => world.clock.setTimeout(resolve, ms));
  const whole = (map: readonly RegionConfig[]): boolean =>
    map.every(
      (r) =>
        r.backups.length === config.replicas - 1 &&
        (r.joining ?? []).length === 0 &&
        c.session(r.primary, r.regionId)?.epoch === r.epoch &&
        c.session(r.primary, r.regionId)?.isServing === true,
    );

  const fault = async (kind: ExploreFaultKind, nodeId: string, index: number): Promise<void> => {
    faulted.add(nodeId);
    try {
      if (kind === 'partition-all') {
        c.partition(nodeId, 'all');
        await sleep(FAULT_MS);
        c.heal(nodeId);
      } else if (kind === 'stall') {
        await c.stallNode(nodeId, LEASE_TTL_MS);
      } else {
        await c.killNode(nodeId);
        if (kind === 'kill') await sleep(FAULT_MS);
        await c.restartNode(nodeId);
      }
      const endedAtMs = nowMs();
      faultsDone[index] = `${kind} ${nodeId} done`;
      // As in talos check: the node counts as faulted until a lease later the cluster is whole.
      await sleep(LEASE_TTL_MS);
      const ok = await c.waitForRegions(whole, 120_000).then(
        () => true,
        () => false,
      );
      recoveries.push({ endedAtMs, wholeAtMs: ok ? nowMs() : Number.POSITIVE_INFINITY });
    } finally {
      faulted.delete(nodeId);
    }
  };
  const menu = (): (() => void)[] => {
    if (!injecting || faultWork.length >= config.faults) return [];
    const out: (() => void)[] = [];
    for (const nodeId of c.nodeIds()) {
      if (faulted.has(nodeId) || c.deadNodes().includes(nodeId)) continue;
      // Never every replica of the region faulted at once (that loses data by definition).
      const down = new Set([...faulted, ...c.deadNodes(), nodeId]);
      if (c.regions().some((r) => [r.primary, ...r.backups].every((n) => down.has(n)))) continue;
      for (const kind of config.faultKinds)
        out.push(() => {
          const index = faultWork.length;
          faultsDone[index] = `${kind} ${nodeId} running`;
          faultWork.push(fault(kind, nodeId, index));
        });
    }
    return out;
  };
  const chooser = new PathChooser(
    prefix,
    config.depth,
    () =>
      fingerprint({
        world,
        cluster: c,
        pendingSteps: world.pendingSteps,
        trace: digest,
        history,
        faults: faultsDone,
      }),
    menu,
  );
  world.chooser = chooser;
  startRecording();

  /** One operation, recorded (client −1: a final read after healing). */
  const operation = async (
    id: number,
    op: 'put' | 'get' | 'delete',
    key: string,
    value: string | undefined,
  ): Promise<HistoryEntry> => {
    const entry = invoked(id, op, key, value, {}, clock++, nowMs());
    history.push(entry);
    try {
      if (op === 'put') await client.put(key, value!);
      else if (op === 'delete') await client.delete(key);
      else entry.value = (await client.get(key))?.toString();
      entry.outcome = 'ok';
    } catch (err) {
      if (err instanceof OutcomeUnknownError) return entry;
      entry.outcome = 'fail';
    }
    entry.ret = clock++;
    entry.retMs = nowMs();
    return entry;
  };
  const clientLoop = async (id: number): Promise<void> => {
    for (const [i, w] of WORKLOAD.slice(0, config.ops).entries())
      if (w.client === id)
        await operation(id, w.op, w.key, w.op === 'put' ? `v${i}`.padEnd(VALUE_BYTES, '.') : undefined);
  };

  try {
    await world.run(Promise.all([clientLoop(0), clientLoop(1)]));
    // The background work after the workload (flushes, shipping, leases), where faults may strike too.
    await world.run(sleep(SETTLE_MS));
    // Faults still under way finish (one may start while the world runs the last ones); then no more.
    for (let started = -1; started !== faultWork.length; ) {
      started = faultWork.length;
      await world.run(Promise.all(faultWork));
    }
    injecting = false;
    c.heal();
    for (const nodeId of c.deadNodes()) await world.run(c.restartNode(nodeId));
    await world.run(c.waitForRegions(whole, 120_000), 180_000);
    for (const key of KEYS) {
      const final = await world.run(operation(-1, 'get', key, undefined));
      if (final.outcome !== 'ok') throw new Error(`the final read of ${key} failed after healing`);
    }
    for (const key of KEYS)
      if (checkRegister(registerOps(history, key), undefined) === 'violation')
        violations.push(`linearizability: key ${key} has no valid order`);
    violations.push(...durability(history));
    violations.push(...(await world.run(replicaEquivalence(c))));
    violations.push(...epochs.check());
    violations.push(...livenessBounds(recoveries, epochs.maxEpochs()));
  } catch (err) {
    violations.push(`liveness: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    epochs.stop();
    await world.close();
  }
  violations.push(...trace.violations());
  return {
    points: chooser.points,
    violations,
    reached: PROPERTIES.filter((p) => reached.has(p)),
    history,
    faults: faultsDone.map((f) => f.replace(/ (running|done)$/, '')),
    steps: world.stepCount,
    virtualMs: world.nowMs(),
  };
}

export interface PropertyStatus {
  name: Property;
  status: 'reached' | 'not reached';
  /** The first path that reached it (its choices). */
  choices?: number[];
}

export interface ExploreViolation {
  violations: string[];
  choices: number[];
  replay: string;
}

export interface ExploreSummary {
  config: ExploreConfig;
  /** Choice points the runs reached beyond their replayed prefix (revisits included). */
  statesExplored: number;
  uniqueStates: number;
  /** Runs (paths) executed. */
  paths: number;
  maxDepth: number;
  timeMs: number;
  /** Whether the whole bounded space was explored (false: a budget stopped it). */
  complete: boolean;
  violations: ExploreViolation[];
  properties: PropertyStatus[];
}

export interface ExploreBudget {
  /** Stop after this many unique states (default unbounded). */
  maxStates?: number;
  /** Stop after this much wall time (default unbounded). */
  timeMs?: number;
  /** Keep exploring after the first violation (default: stop there). */
  all?: boolean;
  onProgress?: (summary: ExploreSummary) => void;
}

/** The replay command of a path. */
export function replayCommand(config: ExploreConfig, choices: readonly number[]): string {
  const trimmed = [...choices];
  while (trimmed.length > 0 && trimmed.at(-1) === 0) trimmed.pop();
  return (
    `talos check --replay ${config.seed} --choices '${trimmed.join(',')}' --nodes ${config.nodes} ` +
    `--replicas ${config.replicas} --ops ${config.ops} --faults ${config.faults} --mode ${config.mode}` +
    `${config.logBufferCount === DEFAULT_CONFIG.logBufferCount ? '' : ` --log-buffers ${config.logBufferCount}`}` +
    `${config.clockDrift ? '' : ' --no-drift'}` +
    `${config.faultKinds.join(',') === DEFAULT_FAULT_KINDS.join(',') ? '' : ` --fault-kinds ${config.faultKinds.join(',')}`}` +
    `${config.mutant === undefined ? '' : ` --mutant ${config.mutant}`}`
  );
}

/** Depth-first over the choice tree, pruning seen fingerprints. */
export async function explore(config: ExploreConfig, budget: ExploreBudget = {}): Promise<ExploreSummary> {
  validateConfig(config);
  const started = Date.now();
  /** Fingerprint → the shallowest choice point it was seen at. */
  const seen = new Map<string, number>();
  const stack: number[][] = [[]];
  const found = new Map<Property, number[]>();
  const summary: ExploreSummary = {
    config,
    statesExplored: 0,
    uniqueStates: 0,
    paths: 0,
    maxDepth: 0,
    timeMs: 0,
    complete: false,
    violations: [],
    properties: [],
  };
  const finish = (): ExploreSummary => {
    summary.uniqueStates = seen.size;
    summary.timeMs = Date.now() - started;
    summary.properties = PROPERTIES.map((name) => {
      const choices = found.get(name);
      return choices === undefined ? { name, status: 'not reached' } : { name, status: 'reached', choices };
    });
    return summary;
  };
  for (;;) {
    const prefix = stack.pop();
    if (prefix === undefined) {
      summary.complete = true;
      break;
    }
    if (budget.maxStates !== undefined && seen.size >= budget.maxStates) break;
    if (budget.timeMs !== undefined && Date.now() - started > budget.timeMs) break;
    const run = await runPath(config, prefix);
    summary.paths++;
    const choices = run.points.map((p) => p.choice);
    summary.maxDepth = Math.max(summary.maxDepth, run.points.length);
    for (const p of run.reached) if (!found.has(p)) found.set(p, choices);
    for (let i = prefix.length; i < run.points.length; i++) {
      summary.statesExplored++;
      const point = run.points[i]!;
      // Seen at this depth or shallower: its subtree is explored (or queued) from there. Seen only
      // deeper, with less of the depth bound left: explored again from here.
      const at = seen.get(point.fingerprint);
      if (at !== undefined && at <= i) break;
      seen.set(point.fingerprint, i);
      for (let a = point.n - 1; a >= 1; a--) stack.push([...choices.slice(0, i), a]);
    }
    // The branch point itself (the prefix's last choice) was counted where it was first seen.
    if (run.violations.length > 0) {
      summary.violations.push({
        violations: run.violations,
        choices,
        replay: replayCommand(config, choices),
      });
      if (!budget.all) break;
    }
    budget.onProgress?.(finish());
  }
  return finish();
}
