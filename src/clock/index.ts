/**
 * The Clock port: the only way protocol code reads time or waits. Production wires SystemClock;
 * tests and the simulator wire ManualClock, whose time moves only when told to, firing due timers
 * in deadline order (ties in scheduling order) — so runs are deterministic.
 */
import { assert } from '../assert.js';

export interface TimerHandle {
  readonly id: number;
}

export interface Clock {
  /** Milliseconds since an arbitrary origin; never decreases. */
  now(): number;
  setTimeout(callback: () => void, delayMs: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** Wall time through Node's timers. */
export class SystemClock implements Clock {
  private nextId = 1;
  private readonly timers = new Map<number, NodeJS.Timeout>();

  now(): number {
    return performance.timeOrigin + performance.now();
  }

  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    const id = this.nextId++;
    const timer = setTimeout(
      () => {
        this.timers.delete(id);
        callback();
      },
      Math.max(0, delayMs),
    );
    this.timers.set(id, timer);
    return { id };
  }

  clearTimeout(handle: TimerHandle): void {
    const timer = this.timers.get(handle.id);
    if (timer !== undefined) clearTimeout(timer);
    this.timers.delete(handle.id);
  }
}

interface ManualTimer {
  id: number;
  dueMs: number;
  callback: () => void;
}

/** Virtual time: `advance(ms)` moves it forward, running every timer that falls due on the way. */
export class ManualClock implements Clock {
  private nowMs: number;
  private nextId = 1;
  private readonly timers = new Map<number, ManualTimer>();

  constructor(startMs = 0) {
    this.nowMs = startMs;
  }

  now(): number {
    return this.nowMs;
  }

  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    const id = this.nextId++;
    this.timers.set(id, { id, dueMs: this.nowMs + Math.max(0, delayMs), callback });
    return { id };
  }

  clearTimeout(handle: TimerHandle): void {
    this.timers.delete(handle.id);
  }

  /** Number of timers not yet fired or cleared. */
  get pendingTimerCount(): number {
    return this.timers.size;
  }

  /** Deadline of the earliest pending timer, if any. */
  nextDueMs(): number | undefined {
    let due: number | undefined;
    for (const t of this.timers.values()) if (due === undefined || t.dueMs < due) due = t.dueMs;
    return due;
  }

  /** Moves time forward by `ms`, firing due timers in (deadline, creation) order. */
  advance(ms: number): void {
    assert(ms >= 0, 'a clock never moves backwards');
    const target = this.nowMs + ms;
    for (;;) {
      let next: ManualTimer | undefined;
      for (const t of this.timers.values()) {
        if (
          t.dueMs <= target &&
          (next === undefined || t.dueMs < next.dueMs || (t.dueMs === next.dueMs && t.id < next.id))
        ) {
          next = t;
        }
      }
      if (next === undefined) break;
      this.timers.delete(next.id);
      this.nowMs = next.dueMs;
      next.callback();
    }
    this.nowMs = target;
  }
}
