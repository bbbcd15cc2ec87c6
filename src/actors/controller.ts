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
 * Watching (PROTOCOL §6): suspect reports and membership changes (a lease ran out, a node left or
 * joined) mark the map dirty; reconciling then walks every region and writes the next
 * configuration where one is due (`planReconfiguration`): a backup that is gone or suspected at the
 * current epoch is removed at epoch + 1, so its primary resumes acknowledging with the copies that
 * remain; a region short of copies gains a live member holding none as a joining backup, which its
 * primary re-syncs online. Reconciling is
 * level-triggered and idempotent — it reads the members and the map afresh each time, writes with
 * compare-and-set, and runs again when something changed meanwhile — so a lost event or a racing
 * controller costs a retry, never a wrong map.
 *
 * A region whose primary's lease is gone gets its furthest live backup as primary at epoch + 1
 * (promotion: the node rebuilds its store from its buffers and rebases the other backups).
 *
 * Promotion ranks the live backups by the persisted position each last reported
 * (`Coordinator.reportProgress`, sent by backups as they persist seals): any of them is safe, the
 * furthest has the least to rebuild and keeps the most unacknowledged writes.
 *
 * Joining (§7, online re-sync): a replacement enters as a joining backup, outside the acknowledging
 * set; its primary re-syncs it while serving and reports it caught up; the next configuration
 * makes it a backup.
 */
import { assign, fromCallback, fromPromise, setup } from 'xstate';
import type {
  BackupProgress,
  Coordinator,
  Leadership,
  Membership,
  RegionConfig,
  SuspectReport,
} from '../../coordination/types.js';
import type { Clock } from '../clock/index.js';
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
  /** Time source for how long a suspect stays distrusted (defaults: no expiry). */
  clock?: Clock;
  /**
   * How long a suspected node is not re-added to the region it was reported on (unless it rejoins
   * sooner). A partition may make a healthy backup look failed; after this it may join again (and
   * is reported again if it really is broken).
   */
  distrustMs?: number;
}

export interface ControllerContext extends ControllerInput {
  leadership: Leadership | undefined;
  /** Every suspect report seen, in arrival order. */
  suspects: SuspectReport[];
  /** Clock time each report arrived (same order). */
  suspectArrivals: number[];
  /** Some node was distrusted when the controller last went idle. */
  distrustPending: boolean;
  /** Per node: how many reports had arrived when it last joined (older ones no longer count against it). */
  trustedFrom: Record<string, number>;
  created: number;
  /** Something changed since the running reconciliation read the map: run it again. */
  dirty: boolean;
  /** Configurations written by this controller (for tests and status). */
  reconfigurations: number;
}

type ControllerEvent =
  | { type: 'LOST' }
  | { type: 'SUSPECT'; report: SuspectReport }
  | { type: 'MEMBERS_CHANGED'; joined?: string };

/**
 * The next configuration of a region, or undefined when none is due. Backups that are not live
 * members, or that a report at the current epoch suspects, are removed (epoch + 1); so are joining
 * backups. A joining backup its primary reported caught up at the current epoch becomes a backup
 * (it joins the acknowledging set). A region with fewer than `replicas` copies gains live members
 * that hold none (a returning node, a new one) and are not `distrusted` (by default: every node a
 * suspect report on this region names; the controller trusts a node again once it rejoined after
 * its last report) — as **joining** backups, which the primary re-syncs online while it keeps
 * serving with the backups it has (§7). A suspect report at the current epoch always yields a new
 * epoch — even when the suspect, trusted again, is put straight back — because the reporting
 * primary stopped and waits for one. Reports of an older epoch are stale.
 *
 * `voided`: nodes that rejoined as a new incarnation after this configuration was written (their
 * buffers and unsynced log tail are gone): treated as gone — a voided primary is replaced by a
 * backup (it never resumes its epoch with a log that may have lost acknowledged writes), voided
 * backups and joiners leave; all of them may come straight back as joining backups. A voided
 * primary with no live backup keeps the region at the next epoch (its disk is all that is left).
 *
 * Promotion, when the primary's lease is gone: the live backup with the highest persisted position
 * in `progress` (ties and unknown positions: configuration order). Joining backups are never
 * promoted: they may lack acknowledged writes.
 */
export function planReconfiguration(
  config: RegionConfig,
  live: ReadonlySet<string>,
  reports: readonly SuspectReport[],
  replicas = config.backups.length + 1,
  distrusted: ReadonlySet<string> = new Set(
    reports
      .filter((r) => r.regionId === config.regionId && (r.kind ?? 'suspect') === 'suspect')
      .map((r) => r.suspectNodeId),
  ),
  progress: ReadonlyMap<string, number> = new Map(),
  voided: ReadonlySet<string> = new Set(),
): RegionConfig | undefined {
  const current = reports.filter((r) => r.regionId === config.regionId && r.epoch === config.epoch);
  const suspected = new Set(
    current.filter((r) => (r.kind ?? 'suspect') === 'suspect').map((r) => r.suspectNodeId),
  );
  const caughtUp = new Set(current.filter((r) => r.kind === 'caught-up').map((r) => r.suspectNodeId));
  const gone = (nodeId: string): boolean => !live.has(nodeId) || suspected.has(nodeId) || voided.has(nodeId);
  let primary = config.primary;
  let backups = config.backups.filter((b) => !gone(b));
  const primaryVoided = voided.has(config.primary) && live.has(config.primary);
  if (!live.has(config.primary) || (primaryVoided && backups.length > 0)) {
    // Promotion (§6): only once the primary's lease is gone (a suspicion is not enough: a live
    // primary may still acknowledge). Every backup of the configuration holds every acknowledged
    // write, so any live one is safe; the one that persisted the most has the least to rebuild.
    const candidates = backups
      .map((nodeId, order) => ({ nodeId, order, position: progress.get(nodeId) ?? -1 }))
      .sort((a, b) => b.position - a.position || a.order - b.order);
    const next = candidates[0]?.nodeId;
    if (next === undefined) return undefined; // no copy left alive: the region waits
    primary = next;
    backups = backups.filter((b) => b !== next);
  }
  const wasJoining = config.joining ?? [];
  // Caught up at this epoch, by this primary: members from the next epoch on (a promotion voids it).
  const joined = primary === config.primary ? wasJoining.filter((b) => !gone(b) && caughtUp.has(b)) : [];
  backups = [...backups, ...joined];
  const joining = wasJoining.filter((b) => !gone(b) && !joined.includes(b));
  // Under-replicated: add live members that hold no copy, in id order, as joining backups.
  const holding = new Set([primary, ...backups, ...joining]);
  const free = [...live].filter((n) => !holding.has(n) && !distrusted.has(n)).sort();
  while (backups.length + joining.length + 1 < replicas && free.length > 0) joining.push(free.shift()!);
  // A primary that reported a backup stopped and waits for a new epoch, whatever the membership.
  const reportedBackup =
    [...config.backups, ...wasJoining].some((n) => suspected.has(n)) || voided.has(config.primary);
  const same = (a: readonly string[], b: readonly string[]): boolean =>
    a.length === b.length && a.every((x, i) => x === b[i]);
  const unchanged =
    !reportedBackup &&
    primary === config.primary &&
    same(backups, config.backups) &&
    same(joining, wasJoining);
  if (unchanged) return undefined;
  const { joining: _, ...rest } = config;
  return {
    ...rest,
    epoch: config.epoch + 1,
    primary,
    backups,
    ...(joining.length === 0 ? {} : { joining }),
  };
}

/**
 * A backup's persisted position as one comparable number: segment sequence, then bytes within it
 * (exact while seq < 2^21, i.e. a few TiB of log per region at 2 MiB segments).
 */
export function progressPosition(p: Pick<BackupProgress, 'seq' | 'usedBytes'>): number {
  return p.seq * 2 ** 32 + p.usedBytes;
}

/** One reconciliation pass; resolves with the number of configurations written. */
async function reconcileRegions(
  coordinator: Coordinator,
  suspects: readonly SuspectReport[],
  replicas: number,
  distrusted: ReadonlySet<string>,
): Promise<number> {
  const members = await coordinator.members();
  const live = new Set(members.map((m) => m.nodeId));
  const joinedAt = new Map(members.map((m) => [m.nodeId, m.joinedRevision ?? 0]));
  let written = 0;
  for (const entry of await coordinator.getRegions()) {
    // A promotion is due: rank the backups by the persisted position they last reported.
    const progress = new Map<string, number>();
    if (!live.has(entry.config.primary)) {
      for (const p of await coordinator.regionProgress(entry.config.regionId)) {
        progress.set(p.nodeId, progressPosition(p));
      }
    }
    // Roles of a node that rejoined (a new incarnation) after this entry was written are void.
    const c = entry.config;
    const voided = new Set(
      [c.primary, ...c.backups, ...(c.joining ?? [])].filter((n) => (joinedAt.get(n) ?? 0) > entry.revision),
    );
    const next = planReconfiguration(c, live, suspects, replicas, distrusted, progress, voided);
    if (next === undefined) continue;
    const result = await coordinator.compareAndSetRegion(entry.revision, next);
    if (!result.ok) throw new StaleRevisionError(entry.config.regionId);
    written++;
    await coordinator.clearSuspects(entry.config.regionId);
  }
  return written;
}

/**
 * Nodes not to re-add: named by a suspect report that arrived after the node last (re)joined and
 * less than `distrustMs` ago.
 */
function distrustedNodes(context: ControllerContext): Set<string> {
  const now = context.clock?.now() ?? 0;
  const limit = context.distrustMs ?? Number.POSITIVE_INFINITY;
  return new Set(
    context.suspects
      .filter(
        (r, i) =>
          (r.kind ?? 'suspect') === 'suspect' &&
          i >= (context.trustedFrom[r.suspectNodeId] ?? 0) &&
          now - context.suspectArrivals[i]! < limit,
      )
      .map((r) => r.suspectNodeId),
  );
}

/** A compare-and-set lost a race: the pass is retried after the retry delay. */
class StaleRevisionError extends Error {
  constructor(regionId: string) {
    super(`region ${regionId} changed while reconfiguring`);
  }
}

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
      // A controller elected after the first one (failover) finds the map complete: nothing to
      // wait for — the cluster may well be short of members now.
      const existing = new Set((await input.coordinator.getRegions()).map((e) => e.config.regionId));
      if (input.layout.regions.every((r) => existing.has(r.regionId))) return 0;
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
    watchMembers: fromCallback<ControllerEvent, Coordinator>(({ sendBack, input }) =>
      input.watchMembers((event) =>
        sendBack(
          event.kind === 'join'
            ? { type: 'MEMBERS_CHANGED', joined: event.member.nodeId }
            : { type: 'MEMBERS_CHANGED' },
        ),
      ),
    ),
    reconcile: fromPromise<
      number,
      { coordinator: Coordinator; suspects: SuspectReport[]; replicas: number; distrusted: Set<string> }
    >(({ input }) => reconcileRegions(input.coordinator, input.suspects, input.replicas, input.distrusted)),
  },
  actions: {
    /** Gives up leadership (best effort): another node's controller may lead meanwhile. */
    resign: ({ context }) => {
      void context.leadership?.resign().catch(() => {});
    },
    forgetLeadership: assign({ leadership: undefined }),
  },
  guards: {
    /** Something changed since the last reconciliation read the map. */
    dirty: ({ context }) => context.dirty,
    distrustPending: ({ context }) => context.distrustPending,
  },
  delays: {
    retry: ({ context }) => context.retryDelayMs,
    distrustExpiry: ({ context }) => context.distrustMs ?? 2 ** 31 - 1,
  },
}).createMachine({
  id: 'controller',
  context: ({ input }) => ({
    ...input,
    leadership: undefined,
    suspects: [],
    suspectArrivals: [],
    distrustPending: false,
    trustedFrom: {},
    created: 0,
    dirty: false,
    reconfigurations: 0,
  }),
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
      // A watch that throws leaves the leader blind: step down and campaign again after a pause.
      invoke: {
        src: 'watchLeadership',
        input: ({ context }) => context.leadership!,
        onError: { target: 'backingOff', actions: ['resign', 'forgetLeadership'] },
      },
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
          invoke: [
            {
              src: 'watchSuspects',
              input: ({ context }) => context.coordinator,
              onError: { target: '#controller.backingOff', actions: ['resign', 'forgetLeadership'] },
            },
            {
              src: 'watchMembers',
              input: ({ context }) => context.coordinator,
              onError: { target: '#controller.backingOff', actions: ['resign', 'forgetLeadership'] },
            },
          ],
          on: {
            SUSPECT: {
              actions: assign({
                suspects: ({ context, event }) => [...context.suspects, event.report],
                suspectArrivals: ({ context }) => [...context.suspectArrivals, context.clock?.now() ?? 0],
                dirty: true,
              }),
            },
            MEMBERS_CHANGED: {
              actions: assign({
                dirty: true,
                // A node that joins under a new lease (a restart) is trusted again: the reports
                // about its earlier incarnation stop keeping it out (they still force a new epoch).
                trustedFrom: ({ context, event }) =>
                  event.joined === undefined
                    ? context.trustedFrom
                    : { ...context.trustedFrom, [event.joined]: context.suspects.length },
              }),
            },
          },
          // The first pass catches what happened while no controller was watching.
          initial: 'reconciling',
          states: {
            idle: {
              // Whether some distrust was in force on entry: once it runs out, look again.
              entry: assign({ distrustPending: ({ context }) => distrustedNodes(context).size > 0 }),
              always: { guard: 'dirty', target: 'reconciling' },
              // A distrust that runs out changes what a pass would do: look again then.
              after: { distrustExpiry: { guard: 'distrustPending', target: 'reconciling' } },
            },
            reconciling: {
              entry: assign({ dirty: false }),
              invoke: {
                src: 'reconcile',
                input: ({ context }) => ({
                  coordinator: context.coordinator,
                  suspects: context.suspects,
                  replicas: context.layout.replicas,
                  distrusted: distrustedNodes(context),
                }),
                onDone: {
                  target: 'idle',
                  actions: assign({
                    reconfigurations: ({ context, event }) => context.reconfigurations + event.output,
                  }),
                },
                onError: 'backingOff',
              },
            },
            backingOff: {
              after: { retry: { target: 'reconciling' } },
            },
          },
        },
      },
    },
  },
});
