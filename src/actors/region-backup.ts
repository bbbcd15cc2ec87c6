/**
 * RegionBackup actor: one region's backup on this node, for the connection its primary opened
 * (PROTOCOL §2, §4, §5). The data path — persisting sealed segments, translating and installing
 * shipped index segments — is plain code in BackupRegion, driven by the primary's messages; this
 * actor owns the lifecycle around it.
 *
 *   route ─▶ following   (Send-Index: the backup never compacts)
 *         └▶ indexing    (Build-Index: Flush and Compaction children, like a primary's)
 *   following/indexing ──CONFIG with a newer epoch──▶ fenced   (revoke the buffers, PROTOCOL §1)
 *                      ──CLOSED (primary closed / link broke) or STOP──▶ closed
 *
 * A CONFIG with a higher epoch fences this actor's buffers before anything else happens (PROTOCOL
 * §1): the old epoch's primary can no longer place a byte here, so it can never acknowledge a write
 * after the new epoch began. If this node is still a backup in the new configuration, the new
 * epoch's primary opens a fresh connection with fresh buffers (a new RegionBackup actor).
 */
import { assign, fromCallback, sendTo, setup } from 'xstate';
import type { RegionConfig } from '../../coordination/types.js';
import type { Store } from '../engine/store.js';
import type { BackupRegion } from '../replication/backup-region.js';
import type { ReplicationMode } from '../replication/messages.js';
import { compactionMachine } from './compaction.js';
import { flushMachine } from './flush.js';
import type { CpuAccount, StoreWorkEvent } from './work.js';

export interface RegionBackupInput {
  nodeId: string;
  regionId: string;
  epoch: number;
  mode: ReplicationMode;
  region: BackupRegion;
  store: Store;
  cpu?: CpuAccount;
  /** Called once when the actor ends (fenced, closed or failed). */
  onEnded?: () => void;
}

export type RegionBackupEvent =
  | StoreWorkEvent
  | { type: 'L0_FULL' }
  | { type: 'CLOSED' }
  | { type: 'CONFIG'; config: RegionConfig }
  | { type: 'STOP' };

export interface RegionBackupContext extends RegionBackupInput {
  error: unknown;
}

export const regionBackupMachine = setup({
  types: {
    context: {} as RegionBackupContext,
    input: {} as RegionBackupInput,
    events: {} as RegionBackupEvent,
  },
  actors: {
    /** The link closing → CLOSED; in Build-Index mode the engine's l0Full → L0_FULL. */
    watchRegion: fromCallback<RegionBackupEvent, RegionBackupInput>(({ sendBack, input }) => {
      let active = true;
      input.region.onClose(() => {
        if (active) sendBack({ type: 'CLOSED' });
      });
      const off = input.store.hooks.on('l0Full', () => {
        if (active) sendBack({ type: 'L0_FULL' });
      });
      return () => {
        active = false;
        off();
      };
    }),
    flush: flushMachine,
    compaction: compactionMachine,
  },
  guards: {
    buildsIndex: ({ context }) => context.mode === 'build-index',
    newerEpoch: ({ context, event }) => event.type === 'CONFIG' && event.config.epoch > context.epoch,
  },
  actions: {
    ended: ({ context }) => context.onEnded?.(),
    /** An invoked effect threw (a defect, not a protocol outcome): fail-stop with its error. */
    keepError: assign({ error: ({ event }) => (event as { error?: unknown }).error }),
    fence: ({ context }) => context.region.fence(`region ${context.regionId}: a newer epoch began`),
  },
}).createMachine({
  id: 'regionBackup',
  context: ({ input }) => ({ ...input, error: undefined }),
  initial: 'route',
  on: {
    CONFIG: { guard: 'newerEpoch', target: '.fenced' },
    CLOSED: '.closed',
    STOP: '.closed',
  },
  states: {
    route: {
      always: [{ guard: 'buildsIndex', target: 'indexing' }, { target: 'following' }],
    },
    following: {
      invoke: {
        src: 'watchRegion',
        input: ({ context }) => context,
        onError: { target: 'failed', actions: 'keepError' },
      },
    },
    indexing: {
      invoke: [
        {
          src: 'watchRegion',
          input: ({ context }) => context,
          onError: { target: 'failed', actions: 'keepError' },
        },
        {
          src: 'flush',
          id: 'flush',
          input: ({ context }) => ({ store: context.store, role: 'backup' as const, cpu: context.cpu }),
          onError: { target: 'failed', actions: 'keepError' },
        },
        {
          src: 'compaction',
          id: 'compaction',
          input: ({ context }) => ({ store: context.store, role: 'backup' as const, cpu: context.cpu }),
          onError: { target: 'failed', actions: 'keepError' },
        },
      ],
      on: {
        L0_FULL: { actions: sendTo('flush', { type: 'L0_FULL' }) },
        FLUSHED: { actions: sendTo('compaction', { type: 'CHECK' }) },
        WORK_FAILED: { target: 'failed', actions: assign({ error: ({ event }) => event.error }) },
      },
    },
    failed: {
      // The backup's own store failed: refuse everything so the primary reports this node.
      entry: [
        ({ context }) => context.region.fence(`region ${context.regionId}: backup store failed`),
        'ended',
      ],
      type: 'final',
    },
    fenced: { entry: ['fence', 'ended'], type: 'final' },
    closed: { entry: 'ended', type: 'final' },
  },
});
