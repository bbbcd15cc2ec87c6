/**
 * NodeClock: one node's view of a world ManualClock, for the simulator's clock and stall faults
 * (docs/failure-model.md, "Clocks and stalls"). The world clock is true time — the coordinator's;
 * each node reads and waits on its own NodeClock, which
 * - runs at its own **rate** (drift): local time = base + (world − worldBase) · rate, re-based at
 *   every change so it never jumps when the rate does;
 * - can **jump** forward (`jump(+ms)`: now() leaps ahead, timers due on the way fire at once) or
 *   **lose time** (`jump(−ms)`: the clock stands still for that many world ms). The Clock port is
 *   monotonic (production reads `performance.now()`), so a backward step of the wall clock cannot
 *   reach it; what can is a monotonic clock that counts less than real time passed (slewing, a
 *   suspended host). Standing still is that, and keeps `now()` from ever decreasing;
 * - can be **held** (a thread stall, `hold(true)`): its timers that come due are kept, in the order
 *   they came due, and `hold(false)` releases them, late and in that order — while its time runs on.
 *
 * Every local timer is one world timer (so the world's driver sees it in `nextDueMs`), whose world
 * delay is the local delay divided by the rate (rounded up to whole ms when the rate is not 1, so
 * the world's time stays integral), plus what remains of a stand-still. Any change of rate or
 * offset re-arms the pending timers in creation order (ties keep their order). At rate 1 with no
 * jump a NodeClock passes every delay through unchanged: a world of NodeClocks without clock faults
 * runs exactly as a world where every node used the ManualClock itself.
 */
import { assert } from '../assert.js';
import type { Clock, ManualClock, TimerHandle } from './index.js';

interface NodeTimer {
  id: number;
  /** Local time at which it is due. */
  dueLocal: number;
  callback: () => void;
  world: TimerHandle | undefined;
  /** Came due while held: queued for the release. */
  held: boolean;
}

export class NodeClock implements Clock {
  private rate = 1;
  /** Local time at `worldBase`. */
  private baseLocal: number;
  /** World time from which local time runs at `rate` (later than now while standing still). */
  private worldBase: number;
  private nextId = 1;
  private readonly timers = new Map<number, NodeTimer>();
  private holding = false;
  private readonly heldQueue: NodeTimer[] = [];
  /** Where held timers go instead of heldQueue (a stall queue shared with the node's other inputs). */
  private heldSink: ((run: () => void) => void) | undefined;

  constructor(
    private readonly world: ManualClock,
    readonly name = 'node',
  ) {
    this.baseLocal = world.now();
    this.worldBase = world.now();
  }

  now(): number {
    return this.baseLocal + Math.max(0, this.world.now() - this.worldBase) * this.rate;
  }

  /** The clock's rate relative to true time (1: exact; 0.9: 10 % slow). */
  get clockRate(): number {
    return this.rate;
  }

  /** Local minus world time, in ms (negative: behind). */
  offsetMs(): number {
    return this.now() - this.world.now();
  }

  /** Whether timers are held (a stall is in effect). */
  get held(): boolean {
    return this.holding;
  }

  /** Timers not yet fired or cleared (held ones included). */
  get pendingTimerCount(): number {
    return this.timers.size;
  }

  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    const id = this.nextId++;
    const delay = Math.max(0, delayMs);
    const timer: NodeTimer = { id, dueLocal: this.now() + delay, callback, world: undefined, held: false };
    this.timers.set(id, timer);
    this.arm(timer, delay);
    return { id };
  }

  clearTimeout(handle: TimerHandle): void {
    const timer = this.timers.get(handle.id);
    if (timer === undefined) return;
    this.timers.delete(handle.id);
    if (timer.world !== undefined) this.world.clearTimeout(timer.world);
    timer.world = undefined;
  }

  /** Drift: from now on the clock runs at `rate` × true time (pending timers re-armed). */
  setRate(rate: number): void {
    assert(Number.isFinite(rate) && rate > 0, () => `a clock rate is a positive number, not ${rate}`);
    this.rebase();
    this.rate = rate;
    this.rearm();
  }

  /**
   * A jump: `ms > 0` moves the clock ahead at once (timers due on the way fire now); `ms < 0` makes
   * it stand still for `−ms` world ms, so it ends that much behind (see the header).
   */
  jump(ms: number): void {
    assert(Number.isFinite(ms), 'a clock jump is a finite number of ms');
    this.rebase();
    if (ms >= 0) this.baseLocal += ms;
    else this.worldBase += -ms;
    this.rearm();
  }

  /**
   * A thread stall: while held, timers that come due are kept (in the order they came due); on
   * release they fire at once, in that order, after which timers run normally again. With `sink`,
   * each timer that comes due while held is handed to it instead (to run whenever the sink runs
   * it — a stall queue in arrival order with the node's other inputs), and the release has nothing
   * left to fire.
   */
  hold(on: boolean, sink?: (run: () => void) => void): void {
    if (on === this.holding) return;
    this.holding = on;
    this.heldSink = on ? sink : undefined;
    if (on) return;
    const released = this.heldQueue.splice(0);
    for (const timer of released) {
      timer.held = false;
      // Cleared while held: it is gone from the map and never fires.
      if (this.timers.get(timer.id) === timer) timer.world = this.world.setTimeout(() => this.fire(timer), 0);
    }
  }

  /** Freezes the current reading as the new base (world base stays ahead while standing still). */
  private rebase(): void {
    const w = this.world.now();
    this.baseLocal = this.now();
    this.worldBase = Math.max(w, this.worldBase);
  }

  private rearm(): void {
    const local = this.now();
    for (const timer of this.timers.values()) {
      if (timer.held) continue;
      if (timer.world !== undefined) this.world.clearTimeout(timer.world);
      this.arm(timer, Math.max(0, timer.dueLocal - local));
    }
  }

  /** Arms `timer`'s world timer for `localDelay` ms of this clock's time from now. */
  private arm(timer: NodeTimer, localDelay: number): void {
    const standStill = Math.max(0, this.worldBase - this.world.now());
    const worldDelay =
      this.rate === 1 && standStill === 0
        ? localDelay
        : standStill + Math.ceil(localDelay / this.rate - 1e-9);
    timer.world = this.world.setTimeout(() => this.fire(timer), Math.max(0, worldDelay));
  }

  private fire(timer: NodeTimer): void {
    timer.world = undefined;
    if (this.timers.get(timer.id) !== timer) return;
    if (this.holding) {
      timer.held = true;
      const sink = this.heldSink;
      if (sink === undefined) this.heldQueue.push(timer);
      else {
        sink(() => {
          timer.held = false;
          if (this.timers.get(timer.id) !== timer) return; // cleared while held
          this.timers.delete(timer.id);
          timer.callback();
        });
      }
      return;
    }
    this.timers.delete(timer.id);
    timer.callback();
  }
}
