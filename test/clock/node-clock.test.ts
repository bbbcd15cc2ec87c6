/**
 * NodeClock (src/clock/node-clock.ts): a node's view of the world clock — identity when untouched,
 * drift (rate), jumps ahead, lost time (standing still, never backwards), and a stall holding its
 * timers and releasing them late in the order they came due, or handing them to a stall queue.
 */
import { ManualClock } from '../../src/clock/index.js';
import { NodeClock } from '../../src/clock/node-clock.js';

function setup(): {
  world: ManualClock;
  clock: NodeClock;
  fired: string[];
  at: (name: string) => () => void;
} {
  const world = new ManualClock(1000);
  const clock = new NodeClock(world, 'n1');
  const fired: string[] = [];
  const at = (name: string) => () => fired.push(`${name}@${world.now()}`);
  return { world, clock, fired, at };
}

test('untouched, it is the world clock: same readings, same delays, same order', () => {
  const { world, clock, fired, at } = setup();
  clock.setTimeout(at('b'), 20);
  world.setTimeout(at('w'), 10);
  clock.setTimeout(at('a'), 10);
  expect(clock.now()).toBe(world.now());
  world.advance(25);
  expect(fired).toEqual(['w@1010', 'a@1010', 'b@1020']);
  expect(clock.now()).toBe(world.now());
});

test('drift: a slow clock reads less and its timers fire later in true time; a fast one the reverse', () => {
  const { world, clock, fired, at } = setup();
  clock.setRate(0.8);
  clock.setTimeout(at('slow'), 80);
  world.advance(50);
  expect(clock.now()).toBeCloseTo(1040, 9);
  world.advance(60);
  expect(fired).toEqual(['slow@1100']); // 80 local ms = 100 true ms
  clock.setRate(1.25);
  const before = clock.now();
  clock.setTimeout(at('fast'), 100);
  world.advance(100);
  expect(fired).toEqual(['slow@1100', 'fast@1190']); // set at 1110: 100 local ms = 80 true ms
  expect(clock.now() - before).toBeCloseTo(125, 9);
  expect(clock.clockRate).toBe(1.25);
});

test('a rate change re-arms pending timers from what is left of their local delay', () => {
  const { world, clock, fired, at } = setup();
  clock.setTimeout(at('t'), 100);
  world.advance(50); // 50 local ms left
  clock.setRate(0.5);
  world.advance(99);
  expect(fired).toEqual([]);
  world.advance(1);
  expect(fired).toEqual(['t@1150']);
});

test('a jump ahead fires what falls due on the way at once; lost time makes the clock stand still', () => {
  const { world, clock, fired, at } = setup();
  clock.setTimeout(at('soon'), 30);
  clock.setTimeout(at('later'), 300);
  clock.jump(100);
  expect(clock.now()).toBe(1100);
  world.advance(0);
  expect(fired).toEqual(['soon@1000']);
  // Lost time: 40 ms standing still, then on at its rate, 40 ms behind where it was.
  const { world: w2, clock: c2, fired: f2, at: at2 } = setup();
  c2.setTimeout(at2('t'), 50);
  c2.jump(-40);
  w2.advance(30);
  expect(c2.now()).toBe(1000); // still standing
  w2.advance(20);
  expect(c2.now()).toBe(1010);
  expect(c2.offsetMs()).toBe(-40);
  w2.advance(39);
  expect(f2).toEqual([]);
  w2.advance(1);
  expect(f2).toEqual(['t@1090']);
  // Never backwards.
  let last = c2.now();
  for (let i = 0; i < 5; i++) {
    c2.jump(-7);
    w2.advance(3);
    expect(c2.now()).toBeGreaterThanOrEqual(last);
    last = c2.now();
  }
});

test('a stall holds timers while time runs on, then releases them late, in the order they came due', () => {
  const { world, clock, fired, at } = setup();
  clock.setTimeout(at('c'), 30);
  clock.setTimeout(at('a'), 10);
  const cleared = clock.setTimeout(at('cleared'), 15);
  clock.setTimeout(at('b'), 20);
  clock.hold(true);
  world.advance(50);
  expect(fired).toEqual([]);
  expect(clock.now()).toBe(1050); // the clock itself runs on
  clock.clearTimeout(cleared); // cleared while held: never fires
  clock.setTimeout(at('new'), 5); // set by someone else meanwhile: held too when due
  world.advance(10);
  expect(fired).toEqual([]);
  clock.hold(false);
  world.advance(0);
  expect(fired).toEqual(['a@1060', 'b@1060', 'c@1060', 'new@1060']);
  clock.setTimeout(at('after'), 5);
  world.advance(5);
  expect(fired.at(-1)).toBe('after@1065');
});

test('a stall with a sink hands each timer over as it comes due, to run when the sink runs it', () => {
  const { world, clock, fired, at } = setup();
  const queue: (() => void)[] = [];
  clock.setTimeout(at('b'), 20);
  clock.setTimeout(at('a'), 10);
  clock.hold(true, (run) => queue.push(run));
  world.advance(30);
  expect(queue).toHaveLength(2);
  expect(fired).toEqual([]);
  for (const run of queue.splice(0)) run();
  expect(fired).toEqual(['a@1030', 'b@1030']);
  clock.hold(false);
  world.advance(100);
  expect(fired).toHaveLength(2);
  expect(clock.pendingTimerCount).toBe(0);
});
