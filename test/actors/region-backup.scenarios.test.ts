/**
 * RegionBackup's protocol steps as data (test/actors/testdata/region-backup/*.txt, etcd/raft's
 * testdata style; test/support/datadriven.ts): each file is a script of events — the actor's
 * start, configurations, the link closing, L0 filling, flushes and compactions finishing or
 * failing — and after each, the effects the actor had on its ports (fences, store calls, its end)
 * and the state it is in. `TALOS_REWRITE=1 npx jest region-backup.scenarios` rewrites the expected
 * blocks from what the machine does (then review the diff).
 *
 * Directives: `start mode=send-index|build-index epoch=N [on-close-throws]`, `config epoch=N`,
 * `link-closes`, `stop`, `l0-full`, `due level=N` (the store reports a compaction due at level N;
 * `level=none`: none), `flush-fails` / `compaction-fails` (the next one rejects).
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Actor, createActor } from 'xstate';
import type { RegionConfig } from '../../coordination/types.js';
import { regionBackupMachine } from '../../src/actors/region-backup.js';
import { StoreHooks } from '../../src/engine/hooks.js';
import type { Store } from '../../src/engine/store.js';
import type { BackupRegion } from '../../src/replication/backup-region.js';
import { actorStepOutput, type Directive, runDataDriven } from '../support/datadriven.js';

const DIR = join(__dirname, 'testdata', 'region-backup');

class World {
  readonly log: string[] = [];
  private readonly closeListeners: (() => void)[] = [];
  private actor: Actor<typeof regionBackupMachine> | undefined;
  private dueLevel: number | undefined;
  private failNext = { flush: false, compaction: false };
  private onCloseThrows = false;
  private readonly hooks = new StoreHooks();

  private readonly store = {
    hooks: this.hooks,
    isClosed: false,
    flush: async () => {
      this.log.push('store.flush()');
      if (this.failNext.flush) {
        this.failNext.flush = false;
        throw new Error('flush: device error');
      }
    },
    dueCompaction: () => this.dueLevel,
    compactLevelNow: async (level: number) => {
      this.log.push(`store.compactLevelNow(${level})`);
      this.dueLevel = undefined;
      if (this.failNext.compaction) {
        this.failNext.compaction = false;
        throw new Error('compaction: device error');
      }
    },
  } as unknown as Store;

  private readonly region = {
    onClose: (listener: () => void) => {
      if (this.onCloseThrows) throw new Error('broken link bookkeeping');
      this.closeListeners.push(listener);
    },
    fence: (reason: string) => this.log.push(`fence: ${reason}`),
  } as unknown as BackupRegion;

  private config(epoch: number): RegionConfig {
    return { regionId: 'r0', minKey: '', primary: 'n1', backups: ['n2'], epoch, state: 'active' };
  }

  async handle(d: Directive): Promise<string> {
    const before = this.log.length;
    switch (d.name) {
      case 'start':
        this.onCloseThrows = 'on-close-throws' in d.args;
        this.actor = createActor(regionBackupMachine, {
          input: {
            nodeId: 'n2',
            regionId: 'r0',
            epoch: Number(d.args.epoch ?? 1),
            mode: d.args.mode === 'build-index' ? 'build-index' : 'send-index',
            region: this.region,
            store: this.store,
            onEnded: () => this.log.push('ended'),
          },
        });
        this.actor.start();
        break;
      case 'config':
        this.actor!.send({ type: 'CONFIG', config: this.config(Number(d.args.epoch)) });
        break;
      case 'link-closes':
        for (const listener of this.closeListeners) listener();
        break;
      case 'stop':
        this.actor!.send({ type: 'STOP' });
        break;
      case 'l0-full':
        this.hooks.emit('l0Full', { l0Bytes: 1024, entryCount: 10 });
        break;
      case 'due':
        this.dueLevel = d.args.level === 'none' ? undefined : Number(d.args.level);
        break;
      case 'flush-fails':
        this.failNext.flush = true;
        break;
      case 'compaction-fails':
        this.failNext.compaction = true;
        break;
      default:
        throw new Error(`${d.where}: unknown directive ${d.name}`);
    }
    return actorStepOutput(this.log, before, () => this.actor!.getSnapshot());
  }
}

const files = readdirSync(DIR).filter((f) => f.endsWith('.txt'));

test('there are scenario files', () => {
  expect(files.length).toBeGreaterThan(0);
});

test.each(files)('region-backup scenario %s', async (file) => {
  const world = new World();
  expect(await runDataDriven(join(DIR, file), (d) => world.handle(d))).toEqual([]);
});
