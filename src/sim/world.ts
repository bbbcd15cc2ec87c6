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
        const [step] = this.steps.splice(this.prng.int(0, this.steps.length - 1), 1);
        this.stepCount++;
        step!();
        continue;
      }
      if (settled) break;
      const due = this.clock.nextDueMs();
      if (due === undefined)
        throw new SimDeadlockError('no fabric step, no timer, and the awaited work is not done');
      if (due > limit) throw new SimDeadlockError(`not done within ${maxVirtualMs} virtual ms`);
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
