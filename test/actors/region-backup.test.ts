/**
 * RegionBackup on its own, with stub ports: a newer epoch fences before anything else, the link
 * closing ends it, and an invoked effect that throws fail-stops it (every invoke has onError).
 */
import { createActor } from 'xstate';
import type { RegionConfig } from '../../coordination/types.js';
import { regionBackupMachine } from '../../src/actors/region-backup.js';
import { StoreHooks } from '../../src/engine/hooks.js';
import type { Store } from '../../src/engine/store.js';
import type { BackupRegion } from '../../src/replication/backup-region.js';

function stubs(options: { onCloseThrows?: boolean } = {}) {
  const log: string[] = [];
  const closeListeners: (() => void)[] = [];
  const region = {
    onClose(listener: () => void) {
      if (options.onCloseThrows) throw new Error('broken link bookkeeping');
      closeListeners.push(listener);
    },
    fence(reason: string) {
      log.push(`fence: ${reason}`);
    },
  } as unknown as BackupRegion;
  const store = { hooks: new StoreHooks() } as unknown as Store;
  const close = () => {
    for (const l of closeListeners) l();
  };
  return { log, region, store, close };
}

function start(s: ReturnType<typeof stubs>) {
  const actor = createActor(regionBackupMachine, {
    input: {
      nodeId: 'n2',
      regionId: 'r0',
      epoch: 3,
      mode: 'send-index',
      region: s.region,
      store: s.store,
      onEnded: () => s.log.push('ended'),
    },
  });
  actor.start();
  return actor;
}

const config = (epoch: number): RegionConfig => ({
  regionId: 'r0',
  minKey: '',
  primary: 'n1',
  backups: ['n2'],
  epoch,
  state: 'active',
});

test('a configuration with a newer epoch fences the buffers, then the actor ends', () => {
  const s = stubs();
  const actor = start(s);
  expect(actor.getSnapshot().value).toBe('following');
  actor.send({ type: 'CONFIG', config: config(3) }); // same epoch: nothing happens
  expect(actor.getSnapshot().value).toBe('following');
  actor.send({ type: 'CONFIG', config: config(4) });
  expect(actor.getSnapshot().value).toBe('fenced');
  expect(actor.getSnapshot().status).toBe('done');
  expect(s.log).toEqual(['fence: region r0: a newer epoch began', 'ended']);
});

test('the link closing ends the actor without fencing', () => {
  const s = stubs();
  const actor = start(s);
  s.close();
  expect(actor.getSnapshot().value).toBe('closed');
  expect(s.log).toEqual(['ended']);
});

test('an invoked effect that throws fail-stops the region: fenced, ended, error kept', () => {
  const s = stubs({ onCloseThrows: true });
  const actor = start(s);
  expect(actor.getSnapshot().value).toBe('failed');
  expect(String(actor.getSnapshot().context.error)).toMatch(/broken link bookkeeping/);
  expect(s.log).toEqual(['fence: region r0: backup store failed', 'ended']);
});
