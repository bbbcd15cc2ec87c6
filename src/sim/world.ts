/**
 * SimWorld: a whole cluster in one process, driven by one seed (DESIGN §6). Every timer — leases,
 * xstate delays, retries, the coordinator's expiries — runs on a ManualClock the world advances;
 * every fabric delivery step is queued here and the world picks which one runs next with its PRNG
 * (so deliveries of different connections interleave in seeded orders, while each connection's
 * order holds: a step only ever delivers the head of its own lane). Devices are SimDevices, the
 * coordinator is embedded. The same seed therefore gives the same run.
 *
 * Clocks: the world clock is true time, the coordinator's. Each node reads and waits on its own
 * NodeClock over it (`nodeClock(id)`, the same across the node's incarnations, as a host's clock
 * is), which the clock and stall faults drift, jump and hold; untouched, a NodeClock passes every
 * timer straight through, so a run without clock faults is the run a single shared clock gives.
 *
 * Driving: `run(promise)` alternates (1) letting every ready microtask and immediate run, (2) one
 * queued fabric step, chosen by the PRNG, and — when nothing is ready — (3) moving the clock to the
 * next timer. A run with no step, no timer and an unsettled promise is a deadlock (an error).
 */
import { ManualClock } from '../clock/index.js';
import { NodeClock } from '../clock/node-clock.js';
import { createLocalCluster, type LocalCluster, type LocalClusterOptions } from '../cluster/local-cluster.js';
import { createPrng, type Prng } from '../engine/prng.js';
import { TalosError } from '../errors.js';

export class SimDeadlockError extends TalosError {
  constructor(detail: string) {
    super('SIM_DEADLOCK', `simulation cannot make progress: ${detail}`);
  }
}

/**
 * Who picks at the world's choice points (`talos explore` replaces the seeded default): `n` is the
 * number of alternatives, 0 … n−1 the queued fabric steps in queue order and — when `timersCompete`
 * and a timer is due — n−1 moving the clock to that timer before any ready step (with
 * `timersCompete`, a timer firing when no step is ready asks too, with n = 1). −1: none now, run
 * what became ready and ask again (the explorer injects a fault there).
 */
export interface Chooser {
  choose(n: number): number;
  /** Whether a due timer competes with the ready steps (default false: timers wait for quiet). */
  readonly timersCompete?: boolean;
}

export interface SimWorldOptions
  extends Omit<LocalClusterOptions, 'clock' | 'nodeClock' | 'fabricScheduler' | 'dataDir'> {
  seed: number;
}

const flushReady = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class SimWorld {
  readonly prng: Prng;
  readonly clock: ManualClock;
  private readonly steps: (() => void)[] = [];
  private readonly nodeClocks = new Map<string, NodeClock>();
  private cluster: LocalCluster | undefined;
  /** Picks at each choice point (default: the seeded PRNG). */
  chooser: Chooser = { choose: (n) => this.prng.int(0, n - 1) };
  /** Fabric steps run and clock jumps made (a measure of the schedule's length). */
  stepCount = 0;

  private constructor(readonly seed: number) {
    this.prng = createPrng(seed);
    this.clock = new ManualClock(1_000_000);
  }

  /** A world with a started cluster (every region served). */
  static async create(options: SimWorldOptions): Promise<SimWorld> {
    const world = new SimWorld(options.seed);
    const { seed: _seed, ...clusterOptions } = options;
    world.cluster = await world.run(
      createLocalCluster({
        ...clusterOptions,
        clock: world.clock,
        nodeClock: (nodeId) => world.nodeClock(nodeId),
        fabricScheduler: (step) => world.steps.push(step),
        cpuMicros: () => 0,
      }),
    );
    return world;
  }

  get localCluster(): LocalCluster {
    if (this.cluster === undefined) throw new TalosError('SIM_NOT_STARTED', 'the world has no cluster yet');
    return this.cluster;
  }

  /** `nodeId`'s own clock (created on first use, kept across its incarnations). */
  nodeClock(nodeId: string): NodeClock {
    let clock = this.nodeClocks.get(nodeId);
    if (clock === undefined) {
      clock = new NodeClock(this.clock, nodeId);
      this.nodeClocks.set(nodeId, clock);
    }
    return clock;
  }

  /** Fabric steps and I/O completions queued now. */
  get pendingSteps(): number {
    return this.steps.length;
  }

  /** Virtual milliseconds since the world began. */
  nowMs(): number {
    return this.clock.now() - 1_000_000;
  }

  /** Drives the world until `promise` settles (or `maxVirtualMs` of virtual time pass). */
  async run<T>(promise: Promise<T>, maxVirtualMs = 600_000): Promise<T> {
    let settled = false;
    let value: T | undefined;
    let error: unknown;
    let failed = false;
    promise.then(
      (v) => {
        settled = true;
        value = v;
      },
      (e: unknown) => {
        settled = true;
        failed = true;
        error = e;
      },
    );
    const limit = this.clock.now() + maxVirtualMs;
    for (;;) {
      await flushReady();
      if (this.steps.length > 0) {
        const dueMs = this.chooser.timersCompete ? this.clock.nextDueMs() : undefined;
        const timer = dueMs !== undefined && dueMs <= limit;
        const pick = this.chooser.choose(this.steps.length + (timer ? 1 : 0));
        if (pick < 0) continue;
        if (pick === this.steps.length) {
          this.stepCount++;
          this.clock.advance(Math.max(0, dueMs! - this.clock.now()));
          continue;
        }
        const [step] = this.steps.splice(pick, 1);
        this.stepCount++;
        step!();
        continue;
      }
      if (settled) break;
      const due = this.clock.nextDueMs();
      if (due === undefined)
        throw new SimDeadlockError('no fabric step, no timer, and the awaited work is not done');
      if (due > limit) throw new SimDeadlockError(`not done within ${maxVirtualMs} virtual ms`);
      // A timer firing is a choice point too when timers compete (the explorer injects faults there).
      if (this.chooser.timersCompete && this.chooser.choose(1) < 0) continue;
      this.stepCount++;
      this.clock.advance(Math.max(0, due - this.clock.now()));
    }
    if (failed) throw error;
    return value as T;
  }

  /** Lets `ms` of virtual time pass, with everything it sets off. */
  async sleep(ms: number): Promise<void> {
    await this.run(new Promise<void>((resolve) => this.clock.setTimeout(resolve, ms)), ms + 1);
  }

  async close(): Promise<void> {
    if (this.cluster !== undefined) await this.run(this.cluster.close()).catch(() => {});
  }
}
