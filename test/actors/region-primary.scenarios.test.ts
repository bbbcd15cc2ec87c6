/**
 * RegionPrimary's protocol steps as data (test/actors/testdata/region-primary/*.txt; see
 * region-backup.scenarios.test.ts and test/support/datadriven.ts): opening until every backup is
 * ready, serving with the client path on, a failed link reported as a suspect, the same epoch
 * retried after the pause, flushes and compactions, stopping. The session is a stub (the machine's
 * `openSession` is provided by the test); its open completes or fails when a directive says so, and
 * xstate's SimulatedClock moves the reopen delay. `TALOS_REWRITE=1` rewrites the expected blocks.
 *
 * Directives: `start epoch=N backups=a,b [joining=c]`, `open-succeeds`, `open-fails reason=…`,
 * `link-fails backup=…`, `l0-full`, `due level=N|none`, `flush-fails`, `advance ms=N`, `stop`.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Actor, createActor, fromPromise, SimulatedClock } from 'xstate';
import type { SuspectReport } from '../../coordination/types.js';
import { type PrimaryPorts, regionPrimaryMachine } from '../../src/actors/region-primary.js';
import { StoreHooks } from '../../src/engine/hooks.js';
import type { PrimarySession } from '../../src/replication/primary-session.js';
import { actorStepOutput, type Directive, runDataDriven } from '../support/datadriven.js';

const DIR = join(__dirname, 'testdata', 'region-primary');

class World {
  readonly log: string[] = [];
  private actor: Actor<typeof regionPrimaryMachine> | undefined;
  private readonly clock = new SimulatedClock();
  private opening: { resolve: (s: PrimarySession) => void; reject: (e: unknown) => void } | undefined;
  private linkFailure: ((backup: string, err: unknown) => void) | undefined;
  private readonly hooks = new StoreHooks();
  private dueLevel: number | undefined;
  private failFlush = false;
  private sessions = 0;

  private session(): PrimarySession {
    const id = ++this.sessions;
    const store = {
      hooks: this.hooks,
      isClosed: false,
      flush: async () => {
        this.log.push('store.flush()');
        if (this.failFlush) {
          this.failFlush = false;
          throw new Error('flush: device error');
        }
      },
      dueCompaction: () => this.dueLevel,
      compactLevelNow: async (level: number) => {
        this.log.push(`store.compactLevelNow(${level})`);
        this.dueLevel = undefined;
      },
      close: async () => this.log.push(`store#${id}.close()`),
    };
    return {
      store,
      startServing: () => this.log.push(`session#${id}.startServing()`),
      stopServing: () => this.log.push(`session#${id}.stopServing()`),
      onLinkFailure: (listener: (backup: string, err: unknown) => void) => {
        this.linkFailure = listener;
      },
      catchUp: async (backup: string) => this.log.push(`session#${id}.catchUp(${backup})`),
      close: async () => this.log.push(`session#${id}.close()`),
    } as unknown as PrimarySession;
  }

  private ports(): PrimaryPorts {
    return {
      nodeId: 'n1',
      mode: 'send-index',
      logBufferCount: 2,
      openStore: async () => {
        throw new Error('not used: openSession is provided');
      },
      connect: async () => {
        throw new Error('not used: openSession is provided');
      },
      setServing: (regionId, session) =>
        this.log.push(`setServing(${regionId}, ${session === undefined ? 'none' : 'session'})`),
      reportSuspect: async (report: SuspectReport) => {
        this.log.push(
          `report(${report.regionId} e${report.epoch}: ${report.suspectNodeId}${report.reason === undefined ? '' : ` — ${report.reason}`})`,
        );
      },
    };
  }

  async handle(d: Directive): Promise<string> {
    const before = this.log.length;
    switch (d.name) {
      case 'start': {
        const machine = regionPrimaryMachine.provide({
          actors: {
            // The stub stands in for the real open (engine + session + rendezvous).
            openSession: fromPromise<PrimarySession>(
              () =>
                new Promise<PrimarySession>((resolve, reject) => {
                  this.log.push('openSession()');
                  this.opening = { resolve, reject };
                }),
            ) as never,
          },
        });
        this.actor = createActor(machine, {
          clock: this.clock,
          input: {
            regionId: 'r0',
            epoch: Number(d.args.epoch ?? 1),
            range: { minKey: '' },
            backups: (d.args.backups ?? '').split(',').filter((b) => b !== ''),
            joining: (d.args.joining ?? '').split(',').filter((b) => b !== ''),
            ports: this.ports(),
            onEnded: () => this.log.push('ended'),
          },
        }) as unknown as Actor<typeof regionPrimaryMachine>;
        this.actor.start();
        break;
      }
      case 'open-succeeds':
        this.opening!.resolve(this.session());
        break;
      case 'open-fails':
        this.opening!.reject(new Error(d.args.reason ?? 'refused'));
        break;
      case 'link-fails':
        this.linkFailure!(d.args.backup!, new Error('connection closed'));
        break;
      case 'l0-full':
        this.hooks.emit('l0Full', { l0Bytes: 1024, entryCount: 10 });
        break;
      case 'due':
        this.dueLevel = d.args.level === 'none' ? undefined : Number(d.args.level);
        break;
      case 'flush-fails':
        this.failFlush = true;
        break;
      case 'advance':
        this.clock.increment(Number(d.args.ms));
        break;
      case 'stop':
        this.actor!.send({ type: 'STOP' });
        break;
      default:
        throw new Error(`${d.where}: unknown directive ${d.name}`);
    }
    return actorStepOutput(this.log, before, () => this.actor!.getSnapshot());
  }
}

const files = readdirSync(DIR).filter((f) => f.endsWith('.txt'));

test.each(files)('region-primary scenario %s', async (file) => {
  const world = new World();
  expect(await runDataDriven(join(DIR, file), (d) => world.handle(d))).toEqual([]);
});
