/**
 * Controller actor (PROTOCOL §1): every node runs one; the coordinator's election makes exactly one
 * of them the leader, and only the leader changes the region map.
 *
 *   campaigning ──elected──▶ leading { assigning ──▶ watching }
 *        ▲                       │ leadership lost (resigned, lease gone)
 *        └───────────────────────┘
 *
 * Assigning: once `expectedNodes` members are listed, every region of the layout that has no entry
 * yet is created at epoch 1 with compare-and-set on "absent" (a racing or earlier controller's entry
 * wins; it is never overwritten). Placement is round-robin over the sorted members, so with as many
 * regions as nodes every node is primary for one region and a backup for `replicas − 1` others.
 * Watching: suspect reports are collected for failure handling (PROTOCOL §6), which acts on them.
 */
import { assign, fromCallback, fromPromise, setup } from 'xstate';
import type {
  Coordinator,
  Leadership,
  Membership,
  RegionConfig,
  SuspectReport,
} from '../../coordination/types.js';
import { InvalidConfigurationError } from '../errors.js';

export interface RegionSpec {
  regionId: string;
  minKey: string;
  maxKey?: string;
}

export interface ClusterLayout {
  regions: RegionSpec[];
  /** Copies of each region: one primary and `replicas − 1` backups. */
  replicas: number;
  /** Members to wait for before the first assignment. */
  expectedNodes: number;
}

export interface ControllerInput {
  coordinator: Coordinator;
  membership: Membership;
  layout: ClusterLayout;
  retryDelayMs: number;
}

export interface ControllerContext extends ControllerInput {
  leadership: Leadership | undefined;
  suspects: SuspectReport[];
  created: number;
}

type ControllerEvent = { type: 'LOST' } | { type: 'SUSPECT'; report: SuspectReport };

/** Initial placement: region i's primary is node i mod n, its backups the next replicas − 1 nodes. */
export function initialPlacement(layout: ClusterLayout, nodeIds: readonly string[]): RegionConfig[] {
  const nodes = [...nodeIds].sort();
  if (layout.replicas < 1 || layout.replicas > nodes.length) {
    throw new InvalidConfigurationError(
      `replicas (${layout.replicas}) must be between 1 and the node count (${nodes.length})`,
    );
  }
  return layout.regions.map((spec, i) => ({
    regionId: spec.regionId,
    minKey: spec.minKey,
    ...(spec.maxKey === undefined ? {} : { maxKey: spec.maxKey }),
    epoch: 1,
    primary: nodes[i % nodes.length]!,
    backups: Array.from({ length: layout.replicas - 1 }, (_, j) => nodes[(i + 1 + j) % nodes.length]!),
    state: 'active' as const,
  }));
}

/** Resolves with the member ids once at least `count` are listed. */
function membersAtLeast(coordinator: Coordinator, count: number, signal: AbortSignal): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const ids = new Set<string>();
    let unsubscribe: (() => void) | undefined;
    const done = (): void => {
      unsubscribe?.();
      resolve([...ids]);
    };
    unsubscribe = coordinator.watchMembers((event) => {
      if (event.kind === 'join') ids.add(event.member.nodeId);
      else ids.delete(event.nodeId);
      if (ids.size >= count) queueMicrotask(done);
    });
    signal.addEventListener('abort', () => {
      unsubscribe?.();
      reject(signal.reason);
    });
  });
}

export const controllerMachine = setup({
  types: {
    context: {} as ControllerContext,
    input: {} as ControllerInput,
    events: {} as ControllerEvent,
  },
  actors: {
    campaign: fromPromise<Leadership, ControllerInput>(({ input }) =>
      input.coordinator.campaign(input.membership),
    ),
    assignRegions: fromPromise<number, ControllerInput>(async ({ input, signal }) => {
      const ids = await membersAtLeast(input.coordinator, input.layout.expectedNodes, signal);
      let created = 0;
      for (const config of initialPlacement(input.layout, ids)) {
        if ((await input.coordinator.getRegion(config.regionId)) !== undefined) continue;
        const result = await input.coordinator.compareAndSetRegion(0, config);
        if (result.ok) created++;
      }
      return created;
    }),
    watchLeadership: fromCallback<ControllerEvent, Leadership>(({ sendBack, input }) => {
      let active = true;
      void input.lost.then(() => {
        if (active) sendBack({ type: 'LOST' });
      });
      return () => {
        active = false;
      };
    }),
    watchSuspects: fromCallback<ControllerEvent, Coordinator>(({ sendBack, input }) =>
      input.watchSuspects((report) => sendBack({ type: 'SUSPECT', report })),
    ),
  },
  delays: {
    retry: ({ context }) => context.retryDelayMs,
  },
}).createMachine({
  id: 'controller',
  context: ({ input }) => ({ ...input, leadership: undefined, suspects: [], created: 0 }),
  initial: 'campaigning',
  states: {
    campaigning: {
      invoke: {
        src: 'campaign',
        input: ({ context }) => context,
        onDone: { target: 'leading', actions: assign({ leadership: ({ event }) => event.output }) },
        onError: 'backingOff',
      },
    },
    backingOff: {
      after: { retry: 'campaigning' },
    },
    leading: {
      invoke: { src: 'watchLeadership', input: ({ context }) => context.leadership! },
      on: { LOST: { target: 'campaigning', actions: assign({ leadership: undefined }) } },
      initial: 'assigning',
      states: {
        assigning: {
          invoke: {
            src: 'assignRegions',
            input: ({ context }) => context,
            onDone: { target: 'watching', actions: assign({ created: ({ event }) => event.output }) },
            onError: 'retrying',
          },
        },
        retrying: { after: { retry: 'assigning' } },
        watching: {
          invoke: { src: 'watchSuspects', input: ({ context }) => context.coordinator },
          on: {
            SUSPECT: {
              actions: assign({ suspects: ({ context, event }) => [...context.suspects, event.report] }),
            },
          },
        },
      },
    },
  },
});
