/**
 * Compaction actor (PROTOCOL §5.2–5.5): on CHECK (sent by the parent after each flush) it asks the
 * engine for the shallowest level over its size limit and merges one segment of it (a bounded job:
 * the next after the level's compaction pointer, with what it overlaps) into the next level; on a
 * primary the engine's ship gate sends every finished index segment to the backups and the commit
 * hook installs the level change on them, so this actor only decides *when*. It loops until no
 * level is due, one compaction at a time. A failure is fatal for the region: WORK_FAILED.
 */
import { assign, fromPromise, sendParent, setup } from 'xstate';
import { measured, type StoreWorkInput } from './work.js';

export interface CompactInput extends StoreWorkInput {
  level: number;
}

export const compactionMachine = setup({
  types: {
    context: {} as StoreWorkInput & { compactionCount: number; level: number },
    input: {} as StoreWorkInput,
    events: {} as { type: 'CHECK' },
  },
  actors: {
    compactLevel: fromPromise<void, CompactInput>(({ input }) =>
      measured(input.cpu, input.role, () => input.store.compactLevelNow(input.level, { bounded: true })),
    ),
  },
  guards: {
    compactionDue: ({ context }) => !context.store.isClosed && context.store.dueCompaction() !== undefined,
  },
}).createMachine({
  id: 'compaction',
  context: ({ input }) => ({ ...input, compactionCount: 0, level: 0 }),
  initial: 'idle',
  states: {
    idle: {
      on: { CHECK: 'checking' },
    },
    checking: {
      always: [
        {
          guard: 'compactionDue',
          target: 'compacting',
          actions: assign({ level: ({ context }) => context.store.dueCompaction()! }),
        },
        { target: 'idle' },
      ],
    },
    compacting: {
      invoke: {
        src: 'compactLevel',
        input: ({ context }) => ({
          store: context.store,
          role: context.role,
          cpu: context.cpu,
          level: context.level,
        }),
        onDone: {
          target: 'checking',
          actions: [
            assign({ compactionCount: ({ context }) => context.compactionCount + 1 }),
            sendParent(({ context }) => ({ type: 'COMPACTED', level: context.level })),
          ],
        },
        onError: {
          target: 'failed',
          actions: sendParent(({ event }) => ({
            type: 'WORK_FAILED',
            what: 'compaction',
            error: event.error,
          })),
        },
      },
      // A CHECK while compacting is implied by the re-check after it.
    },
    failed: { type: 'final' },
  },
});
