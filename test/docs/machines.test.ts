/**
 * docs/machines/ is generated from the machines: it must be current, and the drawing must show
 * what a machine does (initial and final states, nesting, events, guards, delays, invocations).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { assign, fromPromise, setup } from 'xstate';
import { type DrawableMachine, machineToMermaid } from '../../src/tools/machine-diagram.js';
import { headerParagraph, MACHINES, renderMachineDocs } from '../../src/tools/machine-docs.js';

test('every committed page of docs/machines is current (run `npm run docs:machines` if not)', () => {
  const root = process.cwd();
  const pages = renderMachineDocs(root);
  expect([...pages.keys()].sort()).toEqual([...MACHINES.map((m) => `${m.page}.md`), 'README.md'].sort());
  for (const [file, text] of pages) {
    const committed = readFileSync(join(root, 'docs', 'machines', file), 'utf8');
    expect({ file, text: committed }).toEqual({ file, text });
  }
});

test('a machine is drawn with its initial state, nesting, guards, delays, invocations and finals', () => {
  const machine = setup({
    types: { context: {} as { ok: boolean }, events: {} as { type: 'GO' } | { type: 'STOP' } },
    actors: { work: fromPromise(async () => 1) },
    guards: { isOk: ({ context }) => context.ok },
    delays: { pause: 50 },
  }).createMachine({
    id: 'demo',
    context: { ok: true },
    initial: 'idle',
    on: { STOP: '.done' },
    states: {
      idle: { on: { GO: { guard: 'isOk', target: 'busy' } } },
      busy: {
        initial: 'working',
        states: {
          working: {
            invoke: { src: 'work', onDone: 'resting', onError: '#demo.done' },
          },
          resting: { after: { pause: 'working' }, always: { guard: 'isOk', actions: assign({ ok: false }) } },
        },
      },
      done: { type: 'final' },
    },
  });
  const text = machineToMermaid(machine as unknown as DrawableMachine);
  const lines = text
    .trim()
    .split('\n')
    .map((l) => l.trim());
  expect(lines[0]).toBe('stateDiagram-v2');
  for (const line of [
    '[*] --> demo_idle',
    'state demo_busy {',
    '[*] --> demo_busy_working',
    'note right of demo_busy_working : invokes work',
    'demo_done --> [*]',
    'demo_idle --> demo_busy : GO (isOk)',
    'demo_busy_working --> demo_busy_resting : done work',
    'demo_busy_working --> demo_done : error work',
    'demo_busy_resting --> demo_busy_working : after pause',
    'state "any state" as demo',
    'demo --> demo_done : STOP',
  ]) {
    expect(lines).toContain(line);
  }
});

test('the header paragraph is the first paragraph of the file comment, with markdown emphasis', () => {
  expect(headerParagraph('/**\n * One *two*\n * three.\n *\n * Later.\n */\ncode')).toBe('One _two_ three.');
  expect(headerParagraph('no comment')).toBe('');
});
