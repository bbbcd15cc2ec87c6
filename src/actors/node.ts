/**
 * Node actor: the one root of a node's actor tree (DESIGN §8: one system per root). It starts the
 * node (fabric listener, lease-backed membership), runs the Controller child (which leads only if
 * elected), and keeps the region actors in line with the region map:
 *
 *   starting ──▶ running ──STOP──▶ stopping ──▶ stopped
 *       └─error──▶ failed
 *
 * In `running`, every region-map change (REGION) is reconciled:
 * - this node is the region's primary and no primary actor runs for that epoch → start one; if an
 *   older epoch's actor still runs, stop it first and start the new one when it has ended (both
 *   would open the same engine);
 * - this node is no longer the primary → stop its primary actor;
 * - a backup actor of the region gets the new configuration (CONFIG), which raises its epoch or
 *   fences it.
 * An incoming primary connection that opened a backup region (BACKUP_OPENED) gets a RegionBackup
 * actor; a newer one for the same region replaces the older.
 */
import { type ActorRefFrom, assign, enqueueActions, fromCallback, fromPromise, setup } from 'xstate';
import type { RegionConfig, RegionEvent } from '../../coordination/types.js';
import { TalosError } from '../errors.js';
import { type ClusterLayout, controllerMachine } from './controller.js';
import type { BackupOpened, NodeRuntime } from './node-runtime.js';
import { regionBackupMachine } from './region-backup.js';
import { regionPrimaryMachine } from './region-primary.js';

export interface NodeInput {
  runtime: NodeRuntime;
  layout: ClusterLayout;
  controllerRetryMs: number;
}

type PrimaryRef = ActorRefFrom<typeof regionPrimaryMachine>;
type BackupRef = ActorRefFrom<typeof regionBackupMachine>;

export interface NodeContext extends NodeInput {
  primaries: Record<string, { ref: PrimaryRef; epoch: number }>;
  backups: Record<string, { ref: BackupRef; epoch: number }>;
  /** Configurations waiting for an older primary actor of the region to end. */
  pendingPrimary: Record<string, RegionConfig>;
  configs: Record<string, RegionConfig>;
  /** RegionBackup actors spawned so far (part of their ids). */
  spawnedBackups: number;
  error: unknown;
}

export type NodeEvent =
  | { type: 'REGION'; event: RegionEvent }
  | { type: 'BACKUP_OPENED'; opened: BackupOpened }
  | { type: 'PRIMARY_ENDED'; regionId: string; epoch: number }
  | { type: 'BACKUP_ENDED'; regionId: string; epoch: number; region: BackupOpened['region'] }
  | { type: 'LEASE_LOST' }
  | { type: 'STOP' };

/** The node's lease is gone: it is no member any more and must not act as one (PROTOCOL §6). */
export class LeaseLostError extends TalosError {
  constructor(nodeId: string) {
    super('LEASE_LOST', `node ${nodeId} lost its lease; it stops and must rejoin as a new incarnation`);
  }
}

function isDone(ref: { getSnapshot(): { status: string } }): boolean {
  return ref.getSnapshot().status !== 'active';
}

/** Resolves once `actor` has stopped (done, stopped or failed); at once if it already has. */
export function whenStopped(actor: {
  getSnapshot(): { status: string };
  subscribe(observer: { next(): void; error(): void; complete(): void }): { unsubscribe(): void };
}): Promise<void> {
  if (isDone(actor)) return Promise.resolve();
  return new Promise((resolve) => {
    const sub = actor.subscribe({
      next: () => {
        if (isDone(actor)) {
          sub.unsubscribe();
          resolve();
        }
      },
      error: () => resolve(),
      complete: () => resolve(),
    });
  });
}

export const nodeMachine = setup({
  types: {
    context: {} as NodeContext,
    input: {} as NodeInput,
    events: {} as NodeEvent,
  },
  actors: {
    startNode: fromPromise<void, NodeRuntime>(({ input }) => input.start()),
    watchRegions: fromCallback<NodeEvent, NodeRuntime>(({ sendBack, input }) =>
      input.options.coordinator.watchRegions((event) => sendBack({ type: 'REGION', event })),
    ),
    /** The coordinator ended this node's lease (it ran out during a pause or a partition). */
    watchLease: fromCallback<NodeEvent, NodeRuntime>(({ sendBack, input }) => {
      let active = true;
      input.membership?.onLost(() => {
        if (active) sendBack({ type: 'LEASE_LOST' });
      });
      return () => {
        active = false;
      };
    }),
    watchBackupOpens: fromCallback<NodeEvent, NodeRuntime>(({ sendBack, input }) => {
      input.onBackupOpened((opened) => sendBack({ type: 'BACKUP_OPENED', opened }));
      return () => input.onBackupOpened(undefined);
    }),
    controller: controllerMachine,
    regionPrimary: regionPrimaryMachine,
    regionBackup: regionBackupMachine,
    stopNode: fromPromise<void, { runtime: NodeRuntime; children: (PrimaryRef | BackupRef)[] }>(
      async ({ input }) => {
        for (const ref of input.children) ref.send({ type: 'STOP' });
        await Promise.all(input.children.map(whenStopped));
        await input.runtime.stop();
      },
    ),
  },
  actions: {
    keepError: assign({ error: ({ event }) => (event as { error?: unknown }).error }),
  },
}).createMachine({
  id: 'node',
  context: ({ input }) => ({
    ...input,
    primaries: {},
    backups: {},
    pendingPrimary: {},
    configs: {},
    spawnedBackups: 0,
    error: undefined,
  }),
  initial: 'starting',
  states: {
    starting: {
      invoke: {
        src: 'startNode',
        input: ({ context }) => context.runtime,
        onDone: 'running',
        onError: { target: 'failed', actions: assign({ error: ({ event }) => event.error }) },
      },
    },
    running: {
      invoke: [
        // A watcher or the controller throwing is a defect, not a protocol outcome: the node
        // fail-stops (stops its regions and leaves) rather than run half-blind.
        {
          src: 'watchBackupOpens',
          input: ({ context }) => context.runtime,
          onError: { target: 'stopping', actions: 'keepError' },
        },
        {
          src: 'watchLease',
          input: ({ context }) => context.runtime,
          onError: { target: 'stopping', actions: 'keepError' },
        },
        {
          src: 'watchRegions',
          input: ({ context }) => context.runtime,
          onError: { target: 'stopping', actions: 'keepError' },
        },
        {
          src: 'controller',
          id: 'controller',
          input: ({ context }) => ({
            coordinator: context.runtime.options.coordinator,
            membership: context.runtime.membership!,
            layout: context.layout,
            retryDelayMs: context.controllerRetryMs,
            clock: context.runtime.options.clock,
            // A suspect may be re-added after a few lease periods (a partition made it look failed).
            distrustMs: 3 * context.runtime.options.leaseTtlMs,
          }),
          onError: { target: 'stopping', actions: 'keepError' },
        },
      ],
      on: {
        // No member any more: stop every region at once (its primaries stop acknowledging) and
        // end; a supervisor starts a new incarnation, which rejoins under a new lease.
        LEASE_LOST: {
          target: 'stopping',
          actions: assign({ error: ({ context }) => new LeaseLostError(context.runtime.nodeId) }),
        },
        REGION: {
          actions: enqueueActions(({ context, event, enqueue, self }) => {
            if (event.event.kind !== 'put') return;
            const config = event.event.entry.config;
            const regionId = config.regionId;
            const nodeId = context.runtime.nodeId;
            enqueue.assign({ configs: { ...context.configs, [regionId]: config } });
            const current = context.primaries[regionId];
            // A configuration written before this incarnation joined names roles of an earlier one
            // (its memory is gone): act on none of them; the controller voids them (§6).
            const joinedRevision = context.runtime.membership?.joinedRevision ?? 0;
            if (event.event.entry.revision > 0 && event.event.entry.revision < joinedRevision) return;
            if (config.primary === nodeId) {
              if (current !== undefined && current.epoch >= config.epoch) return;
              if (current !== undefined && !isDone(current.ref)) {
                enqueue.sendTo(current.ref, { type: 'STOP' });
                enqueue.assign({ pendingPrimary: { ...context.pendingPrimary, [regionId]: config } });
                return;
              }
              enqueue.assign({
                primaries: ({ context: c, spawn }) => ({
                  ...c.primaries,
                  [regionId]: {
                    epoch: config.epoch,
                    ref: spawn('regionPrimary', {
                      id: `primary:${regionId}:${config.epoch}`,
                      input: {
                        regionId,
                        epoch: config.epoch,
                        range: {
                          minKey: config.minKey,
                          ...(config.maxKey === undefined ? {} : { maxKey: config.maxKey }),
                        },
                        backups: config.backups,
                        joining: config.joining ?? [],
                        ports: c.runtime,
                        onEnded: () => self.send({ type: 'PRIMARY_ENDED', regionId, epoch: config.epoch }),
                      },
                    }),
                  },
                }),
              });
            } else if (current !== undefined && !isDone(current.ref)) {
              enqueue.sendTo(current.ref, { type: 'STOP' });
            }
            const backup = context.backups[regionId];
            if (backup !== undefined && !isDone(backup.ref))
              enqueue.sendTo(backup.ref, { type: 'CONFIG', config });
          }),
        },
        PRIMARY_ENDED: {
          actions: enqueueActions(({ context, event, enqueue, self }) => {
            const pending = context.pendingPrimary[event.regionId];
            if (pending === undefined) return;
            const { [event.regionId]: _, ...rest } = context.pendingPrimary;
            enqueue.assign({ pendingPrimary: rest });
            // Re-run the reconciliation for the waiting configuration now that the old actor ended.
            enqueue.assign({
              primaries: ({ context: c }) => {
                const { [event.regionId]: __, ...others } = c.primaries;
                return others;
              },
            });
            enqueue(() =>
              self.send({ type: 'REGION', event: { kind: 'put', entry: { config: pending, revision: 0 } } }),
            );
          }),
        },
        BACKUP_OPENED: {
          actions: enqueueActions(({ context, event, enqueue, self }) => {
            const { opened } = event;
            const previous = context.backups[opened.regionId];
            if (previous !== undefined && !isDone(previous.ref))
              enqueue.sendTo(previous.ref, { type: 'STOP' });
            enqueue.assign({
              spawnedBackups: ({ context: c }) => c.spawnedBackups + 1,
              backups: ({ context: c, spawn }) => ({
                ...c.backups,
                [opened.regionId]: {
                  epoch: opened.epoch,
                  // The id names region and epoch (logs, inspection); the count keeps it unique when
                  // one epoch's primary opens the region again.
                  ref: spawn('regionBackup', {
                    id: `backup:${opened.regionId}:${opened.epoch}:${c.spawnedBackups}`,
                    input: {
                      nodeId: c.runtime.nodeId,
                      regionId: opened.regionId,
                      epoch: opened.epoch,
                      mode: c.runtime.mode,
                      region: opened.region,
                      store: opened.store,
                      cpu: c.runtime.cpu,
                      onEnded: () =>
                        self.send({
                          type: 'BACKUP_ENDED',
                          regionId: opened.regionId,
                          epoch: opened.epoch,
                          region: opened.region,
                        }),
                    },
                  }),
                },
              }),
            });
            // A configuration newer than the open (read while it was in flight) applies at once.
            const config = context.configs[opened.regionId];
            if (config !== undefined && config.epoch > opened.epoch) {
              enqueue(() => {
                const ref = self.getSnapshot().context.backups[opened.regionId]?.ref;
                ref?.send({ type: 'CONFIG', config });
              });
            }
          }),
        },
        STOP: 'stopping',
      },
    },
    stopping: {
      invoke: {
        src: 'stopNode',
        input: ({ context }) => ({
          runtime: context.runtime,
          children: [
            ...Object.values(context.primaries).map((p) => p.ref),
            ...Object.values(context.backups).map((b) => b.ref),
          ],
        }),
        onDone: 'stopped',
        onError: { target: 'stopped', actions: assign({ error: ({ event }) => event.error }) },
      },
    },
    stopped: { type: 'final' },
    failed: { type: 'final' },
  },
});
