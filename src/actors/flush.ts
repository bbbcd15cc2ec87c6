/**
 * Flush actor (PROTOCOL §5.1): turns the engine's `l0Full` announcement into a flush. `idle` waits
 * for L0_FULL (or FLUSH_NOW); `flushing` runs `store.flush()` — freeze L0, tail-sync the active
 * segment (on a primary this seals it partially on every backup first), write L1 — and reports
 * FLUSHED so the parent asks the Compaction actor whether a level is now over its limit.
 * Announcements while a flush runs are absorbed: the engine announces again once the next L0 fills.
 * A failed flush is fatal for the region (the engine fail-stops): WORK_FAILED goes to the parent.
 */
import { assign, fromPromise, sendParent, setup } from 'xstate';
import { measured, type StoreWorkInput } from './work.js';

export const flushMachine = setup({
  types: {
    context: {} as StoreWorkInput & { flushCount: number },
    input: {} as StoreWorkInput,
    events: {} as { type: 'L0_FULL' } | { type: 'FLUSH_NOW' },
  },
  actors: {
    flushL0: fromPromise<void, StoreWorkInput>(({ input }) =>
      measured(input.cpu, input.role, () => input.store.flush()),
    ),
  },
}).createMachine({
  id: 'flush',
  context: ({ input }) => ({ ...input, flushCount: 0 }),
  initial: 'idle',
  states: {
    idle: {
      on: { L0_FULL: 'flushing', FLUSH_NOW: 'flushing' },
    },
    flushing: {
      invoke: {
        src: 'flushL0',
        input: ({ context }) => ({ store: context.store, role: context.role, cpu: context.cpu }),
        onDone: {
          target: 'idle',
          actions: [
            assign({ flushCount: ({ context }) => context.flushCount + 1 }),
            sendParent({ type: 'FLUSHED' }),
          ],
        },
        onError: {
          target: 'failed',
          actions: sendParent(({ event }) => ({ type: 'WORK_FAILED', what: 'flush', error: event.error })),
        },
      },
    },
    failed: { type: 'final' },
  },
});
