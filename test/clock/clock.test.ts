import { ManualClock, SystemClock } from '../../src/clock/index.js';

describe('ManualClock', () => {
  it('fires due timers in deadline order, ties in creation order, with now() at each deadline', () => {
    const clock = new ManualClock(1000);
    const fired: string[] = [];
    clock.setTimeout(() => fired.push(`b@${clock.now()}`), 20);
    clock.setTimeout(() => fired.push(`a@${clock.now()}`), 10);
    clock.setTimeout(() => fired.push(`c@${clock.now()}`), 20);
    const cancelled = clock.setTimeout(() => fired.push('never'), 5);
    clock.clearTimeout(cancelled);
    clock.advance(15);
    expect(fired).toEqual(['a@1010']);
    expect(clock.now()).toBe(1015);
    clock.advance(100);
    expect(fired).toEqual(['a@1010', 'b@1020', 'c@1020']);
    expect(clock.now()).toBe(1115);
    expect(clock.pendingTimerCount).toBe(0);
  });

  it('runs timers scheduled by timers within the same advance when they fall due', () => {
    const clock = new ManualClock();
    const fired: number[] = [];
    const tick = () => {
      fired.push(clock.now());
      if (fired.length < 3) clock.setTimeout(tick, 10);
    };
    clock.setTimeout(tick, 10);
    clock.advance(25);
    expect(fired).toEqual([10, 20]);
    expect(clock.nextDueMs()).toBe(30);
    expect(() => clock.advance(-1)).toThrow(/backwards/);
  });
});

describe('SystemClock', () => {
  it('fires a timer after its delay and can cancel one', async () => {
    const clock = new SystemClock();
    const start = clock.now();
    let cancelledFired = false;
    clock.clearTimeout(clock.setTimeout(() => (cancelledFired = true), 1));
    await new Promise<void>((resolve) => clock.setTimeout(resolve, 20));
    expect(clock.now() - start).toBeGreaterThanOrEqual(15);
    expect(cancelledFired).toBe(false);
  });
});
