/**
 * CatchUp actor (PROTOCOL §7, online re-sync): while its parent RegionPrimary serves, brings each
 * joining backup of the configuration up to date without pausing the region, then reports it
 * caught up so the controller makes it a member of the acknowledging set at the next epoch.
 *
 *   syncing ──done──▶ reporting ──▶ (next joiner) … ──▶ done
 *      │ error
 *      ▼
 *   pausing ──after retryDelay──▶ syncing        (after `maxAttempts` failures: suspecting)
 *
 * - `syncing` runs PrimarySession.catchUp for the current joiner: rounds of re-sync over a link of
 *   its own (sealed segments from where the joiner is, the active prefix, the live levels) until a
 *   round finds nothing new. Acknowledgements never wait on it.
 * - `reporting` sends a caught-up report (coordinator) for this epoch; the join epoch's open then
 *   re-syncs only what arrived since the last round.
 * - A joiner that keeps failing (refused, unreachable while still holding its lease) is reported
 *   as a suspect after `maxAttempts` tries, so the controller replaces it; one whose lease runs out
 *   leaves the configuration anyway.
 * - Joiners are handled one at a time: a catch-up is I/O-bound on the primary's disk and link.
 */
import { assign, fromPromise, setup } from 'xstate';
import type { SuspectReport } from '../../coordination/types.js';
import type { PrimarySession } from '../replication/primary-session.js';

export interface CatchUpInput {
  session: PrimarySession;
  regionId: string;
  epoch: number;
  nodeId: string;
  joining: readonly string[];
  report(report: SuspectReport): Promise<void>;
  retryDelayMs?: number;
  maxAttempts?: number;
}

export interface CatchUpContext extends CatchUpInput {
  index: number;
  attempts: number;
  error: unknown;
}

export const catchUpMachine = setup({
  types: {
    context: {} as CatchUpContext,
    input: {} as CatchUpInput,
  },
  actors: {
    sync: fromPromise<void, { session: PrimarySession; joiner: string }>(({ input }) =>
      input.session.catchUp(input.joiner),
    ),
    report: fromPromise<void, { context: CatchUpContext; kind: 'caught-up' | 'suspect' }>(({ input }) => {
      const c = input.context;
      return c.report({
        kind: input.kind,
        regionId: c.regionId,
        epoch: c.epoch,
        suspectNodeId: c.joining[c.index]!,
        reporterNodeId: c.nodeId,
        reason:
          input.kind === 'caught-up'
            ? 'caught up'
            : `catch-up failed ${c.attempts} times: ${c.error instanceof Error ? c.error.message : String(c.error)}`,
      });
    }),
  },
  guards: {
    allDone: ({ context }) => context.index >= context.joining.length,
    givingUp: ({ context }) => context.attempts >= (context.maxAttempts ?? 5),
  },
  delays: {
    retryDelay: ({ context }) => context.retryDelayMs ?? 200,
  },
}).createMachine({
  id: 'catchUp',
  context: ({ input }) => ({ ...input, index: 0, attempts: 0, error: undefined }),
  initial: 'next',
  states: {
    next: { always: [{ guard: 'allDone', target: 'done' }, { target: 'syncing' }] },
    syncing: {
      invoke: {
        src: 'sync',
        input: ({ context }) => ({ session: context.session, joiner: context.joining[context.index]! }),
        onDone: 'reporting',
        onError: {
          target: 'pausing',
          actions: assign({
            attempts: ({ context }) => context.attempts + 1,
            error: ({ event }) => event.error,
          }),
        },
      },
    },
    pausing: {
      always: { guard: 'givingUp', target: 'suspecting' },
      after: { retryDelay: 'syncing' },
    },
    reporting: {
      invoke: {
        src: 'report',
        input: ({ context }) => ({ context, kind: 'caught-up' as const }),
        onDone: {
          target: 'next',
          actions: assign({ index: ({ context }) => context.index + 1, attempts: 0 }),
        },
        // The coordinator is unreachable: try the whole catch-up again later (it is idempotent).
        onError: { target: 'pausing', actions: assign({ error: ({ event }) => event.error }) },
      },
    },
    suspecting: {
      invoke: {
        src: 'report',
        input: ({ context }) => ({ context, kind: 'suspect' as const }),
        onDone: {
          target: 'next',
          actions: assign({ index: ({ context }) => context.index + 1, attempts: 0 }),
        },
        onError: {
          target: 'next',
          actions: assign({ index: ({ context }) => context.index + 1, attempts: 0 }),
        },
      },
    },
    done: { type: 'final' },
  },
});
