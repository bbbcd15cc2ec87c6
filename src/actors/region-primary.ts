/**
 * RegionPrimary actor: one region's primary for one epoch (PROTOCOL §2–5).
 *
 *   opening ──ready──▶ serving ──STOP──▶ stopping ──▶ stopped
 *      ▲  │                  │ LINK_FAILED / WORK_FAILED
 *      │  └──error──▶ failed ◀┘ ──STOP──▶ stopping
 *      └── reopening ◀─ after a pause ─┘
 *
 * - `opening` opens the engine and a PrimarySession: a connection per backup with the epoch in the
 *   handshake, OpenBackup → BackupReady (buffer rendezvous). Only when every backup of the
 *   configuration is ready does the actor move on.
 * - `serving` turns the client path on (plain code, no event per put) and runs three children: the
 *   Flush actor (the engine's `l0Full` → flush with tail sync), the Compaction actor (after each
 *   flush: compact while a level is due; the engine ships index segments through the session's
 *   gates) and the CatchUp actor (joining backups re-synced online, then reported caught up).
 *   Leaving `serving` for any reason turns the client path off first (exit action).
 * - A failed backup link or a failed flush/compaction ends serving: nothing more is acknowledged
 *   (PROTOCOL §3.4). `failed` reports the backup as suspect to the controller, which installs a new
 *   configuration (next epoch); the node then stops this actor and starts a new one. Until then,
 *   `failed` retries the same epoch after a pause (`reopening` closes the session and the engine
 *   first): a failed open — a backup restarting, a refused handshake — is often transient, and
 *   without a suspect report nothing else would move the region on.
 * - `stopping` closes the session (tells the backups) and the engine.
 */
import { assign, fromCallback, fromPromise, sendTo, setup } from 'xstate';
import type { SuspectReport } from '../../coordination/types.js';
import type { Store } from '../engine/store.js';
import type { Connection } from '../fabric/types.js';
import type { Probe } from '../probe.js';
import type { ReplicationMode } from '../replication/messages.js';
import { type KeyRange, PrimarySession } from '../replication/primary-session.js';
import { catchUpMachine } from './catch-up.js';
import { compactionMachine } from './compaction.js';
import { flushMachine } from './flush.js';
import type { CpuAccount, StoreWorkEvent } from './work.js';

/** What a region primary needs from its node: all effects go through these. */
export interface PrimaryPorts {
  nodeId: string;
  mode: ReplicationMode;
  logBufferCount: number;
  openStore(regionId: string): Promise<Store>;
  connect(backupNodeId: string, regionId: string, epoch: number): Promise<Connection>;
  /** The node's router: the session serving a region, or undefined when none. */
  setServing(regionId: string, session: PrimarySession | undefined): void;
  reportSuspect(report: SuspectReport): Promise<void>;
  /** Whether this node's lease is still valid minus the safety margin (PROTOCOL §6 self-fencing). */
  leaseValid?: () => boolean;
  cpu?: CpuAccount;
  /** The simulator's trace and defects, for the sessions (src/probe.ts). Default none. */
  probe?: Probe;
}

export interface RegionPrimaryInput {
  regionId: string;
  epoch: number;
  range: KeyRange;
  backups: string[];
  /** Joining backups (re-synced online while serving, then reported caught up; §7). */
  joining?: string[];
  ports: PrimaryPorts;
  /** Called once when the actor reaches `stopped` (its engine is closed by then). */
  onEnded?: () => void;
}

export interface RegionPrimaryContext extends RegionPrimaryInput {
  session: PrimarySession | undefined;
  error: unknown;
  suspect: string | undefined;
}

export type RegionPrimaryEvent =
  | StoreWorkEvent
  | { type: 'L0_FULL' }
  | { type: 'LINK_FAILED'; backupNodeId: string; error: unknown }
  | { type: 'STOP' };

/** Opens the engine and the session; closes the engine again if the rendezvous fails. */
async function openSession(input: RegionPrimaryInput): Promise<PrimarySession> {
  const { ports } = input;
  const store = await ports.openStore(input.regionId);
  const session = new PrimarySession({
    regionId: input.regionId,
    epoch: input.epoch,
    nodeId: ports.nodeId,
    range: input.range,
    mode: ports.mode,
    logBufferCount: ports.logBufferCount,
    store,
    backups: input.backups,
    connect: (backupNodeId) => ports.connect(backupNodeId, input.regionId, input.epoch),
    ...(ports.leaseValid === undefined ? {} : { leaseValid: ports.leaseValid }),
    ...(ports.probe === undefined ? {} : { probe: ports.probe }),
  });
  try {
    await session.open();
  } catch (err) {
    await session.close();
    await store.close().catch(() => {});
    throw err;
  }
  return session;
}

export const regionPrimaryMachine = setup({
  types: {
    context: {} as RegionPrimaryContext,
    input: {} as RegionPrimaryInput,
    events: {} as RegionPrimaryEvent,
  },
  actors: {
    openSession: fromPromise<PrimarySession, RegionPrimaryInput>(({ input }) => openSession(input)),
    /** Turns engine and link signals into events: l0Full → L0_FULL, a link failure → LINK_FAILED. */
    watchSession: fromCallback<RegionPrimaryEvent, PrimarySession>(({ sendBack, input }) => {
      let active = true;
      const off = input.store.hooks.on('l0Full', () => {
        if (active) sendBack({ type: 'L0_FULL' });
      });
      input.onLinkFailure((backupNodeId, error) => {
        if (active) sendBack({ type: 'LINK_FAILED', backupNodeId, error });
      });
      return () => {
        active = false;
        off();
      };
    }),
    flush: flushMachine,
    compaction: compactionMachine,
    catchUp: catchUpMachine,
    reportSuspect: fromPromise<void, { ports: PrimaryPorts; report: SuspectReport }>(({ input }) =>
      input.ports.reportSuspect(input.report),
    ),
    closeSession: fromPromise<void, { session: PrimarySession | undefined }>(async ({ input }) => {
      if (input.session === undefined) return;
      await input.session.close();
      await input.session.store.close();
    }),
  },
  actions: {
    keepError: assign({ error: ({ event }) => (event as { error?: unknown }).error }),
    startServing: ({ context }) => {
      context.session!.startServing();
      context.ports.setServing(context.regionId, context.session);
    },
    stopServing: ({ context }) => {
      context.session?.stopServing();
      context.ports.setServing(context.regionId, undefined);
    },
  },
  guards: {
    hasSuspect: ({ context }) => context.suspect !== undefined,
  },
  delays: {
    reopenDelay: 200,
  },
}).createMachine({
  id: 'regionPrimary',
  context: ({ input }) => ({ ...input, session: undefined, error: undefined, suspect: undefined }),
  initial: 'opening',
  states: {
    opening: {
      invoke: {
        src: 'openSession',
        input: ({ context }) => context,
        onDone: { target: 'serving', actions: assign({ session: ({ event }) => event.output }) },
        onError: { target: 'failed', actions: assign({ error: ({ event }) => event.error }) },
      },
      on: { STOP: 'stopping' },
    },
    serving: {
      entry: 'startServing',
      exit: 'stopServing',
      invoke: [
        // An invoked effect throwing is a defect, not a protocol outcome: the region fail-stops.
        {
          src: 'watchSession',
          input: ({ context }) => context.session!,
          onError: { target: 'failed', actions: 'keepError' },
        },
        {
          src: 'flush',
          id: 'flush',
          input: ({ context }) => ({
            store: context.session!.store,
            role: 'primary' as const,
            cpu: context.ports.cpu,
          }),
          onError: { target: 'failed', actions: 'keepError' },
        },
        {
          src: 'compaction',
          id: 'compaction',
          input: ({ context }) => ({
            store: context.session!.store,
            role: 'primary' as const,
            cpu: context.ports.cpu,
          }),
          onError: { target: 'failed', actions: 'keepError' },
        },
        {
          src: 'catchUp',
          id: 'catchUp',
          input: ({ context }) => ({
            session: context.session!,
            regionId: context.regionId,
            epoch: context.epoch,
            nodeId: context.ports.nodeId,
            joining: context.joining ?? [],
            report: (report: SuspectReport) => context.ports.reportSuspect(report),
          }),
          onError: { target: 'failed', actions: 'keepError' },
        },
      ],
      on: {
        L0_FULL: { actions: sendTo('flush', { type: 'L0_FULL' }) },
        FLUSHED: { actions: sendTo('compaction', { type: 'CHECK' }) },
        LINK_FAILED: {
          target: 'failed',
          actions: assign({ error: ({ event }) => event.error, suspect: ({ event }) => event.backupNodeId }),
        },
        WORK_FAILED: { target: 'failed', actions: assign({ error: ({ event }) => event.error }) },
        STOP: 'stopping',
      },
    },
    failed: {
      initial: 'deciding',
      states: {
        deciding: { always: [{ guard: 'hasSuspect', target: 'reporting' }, { target: 'reported' }] },
        reporting: {
          invoke: {
            src: 'reportSuspect',
            input: ({ context }) => ({
              ports: context.ports,
              report: {
                regionId: context.regionId,
                epoch: context.epoch,
                suspectNodeId: context.suspect!,
                reporterNodeId: context.ports.nodeId,
                reason: context.error instanceof Error ? context.error.message : String(context.error),
              },
            }),
            onDone: 'reported',
            // The coordinator is unreachable: the controller learns of the failure from leases.
            onError: 'reported',
          },
        },
        // Until the controller installs a new configuration (STOP comes then), try this epoch again
        // after a pause: a failed open (a backup restarting, a refused handshake) may be transient,
        // and a backup that is truly gone loses its lease and leaves the configuration.
        reported: { after: { reopenDelay: '#regionPrimary.reopening' } },
      },
      on: { STOP: 'stopping' },
    },
    reopening: {
      invoke: {
        src: 'closeSession',
        input: ({ context }) => ({ session: context.session }),
        onDone: {
          target: 'opening',
          actions: assign({ session: undefined, suspect: undefined, error: undefined }),
        },
        onError: {
          target: 'opening',
          actions: assign({ session: undefined, suspect: undefined, error: undefined }),
        },
      },
      on: { STOP: 'stopping' },
    },
    stopping: {
      invoke: {
        src: 'closeSession',
        input: ({ context }) => ({ session: context.session }),
        onDone: 'stopped',
        onError: 'stopped',
      },
    },
    stopped: { type: 'final', entry: ({ context }) => context.onEnded?.() },
  },
});
