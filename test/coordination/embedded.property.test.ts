/**
 * Property tests of EmbeddedCoordinator under random schedules with faults.
 *
 * 1. Region map: several controllers race compare-and-sets (with stale cached revisions, wrong
 *    epochs and lost replies) while watchers are partitioned and healed. Every answer is the one a
 *    model predicts; per region the epochs of successful writes go 1, 2, 3…; every watcher sees
 *    exactly the successful writes, in revision order, the same sequence.
 * 2. Election: random joins, campaigns, resigns, leaves, partitions, paused keepalives, forced
 *    expiries and clock moves. At every point at most one node believes it leads — counting only
 *    leaderships not ended, not resigned, under a membership still valid by its own arithmetic
 *    (`validUntilMs(0) > now`, DESIGN §8) — and that node is the coordinator's leader.
 */
import * as fc from 'fast-check';
import { EmbeddedCoordinator, type EmbeddedCoordinatorClient } from '../../coordination/embedded.js';
import type {
  CasResult,
  Leadership,
  Membership,
  RegionEntry,
  RegionEvent,
} from '../../coordination/types.js';
import { ManualClock } from '../../src/clock/index.js';
import {
  CoordinatorUnavailableError,
  InvalidConfigurationError,
  LeaseExpiredError,
} from '../../src/errors.js';
import { propertyParams } from '../support/property.js';
import { nodeInfo, regionConfig } from './conformance.js';
import { flush } from './embedded-env.js';

describe('EmbeddedCoordinator properties', () => {
  it('compare-and-set races: answers match the model; epochs step by one; all watchers see the same writes', async () => {
    const WRITERS = 3;
    const REGIONS = ['ra', 'rb'];
    const cmdArb = fc.oneof(
      {
        weight: 3,
        arbitrary: fc.record({
          kind: fc.constant('read' as const),
          client: fc.nat(WRITERS - 1),
          region: fc.nat(1),
        }),
      },
      {
        weight: 6,
        arbitrary: fc.record({
          kind: fc.constant('cas' as const),
          client: fc.nat(WRITERS - 1),
          region: fc.nat(1),
          epochDelta: fc.constantFrom(1, 1, 1, 0, 2),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({ kind: fc.constant('loseReply' as const), client: fc.nat(WRITERS - 1) }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant('partitionWatcher' as const),
          watcher: fc.nat(1),
          on: fc.boolean(),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 500 }) }),
      },
    );

    await fc.assert(
      fc.asyncProperty(fc.array(cmdArb, { minLength: 10, maxLength: 80, size: 'max' }), async (cmds) => {
        const clock = new ManualClock(0);
        const coordinator = new EmbeddedCoordinator({ clock });
        const writers = Array.from({ length: WRITERS }, () => coordinator.client());
        const watchers = [coordinator.client(), coordinator.client()];
        const seen: RegionEvent[][] = watchers.map(() => []);
        watchers.forEach((w, i) => {
          w.watchRegions((e) => seen[i]!.push(e));
        });

        const model = new Map<string, { revision: number; epoch: number }>();
        const caches = writers.map(() => new Map<string, { revision: number; epoch: number }>());
        const lossArmed = writers.map(() => false);
        const written: Array<{ regionId: string; revision: number; epoch: number }> = [];

        for (const cmd of cmds) {
          if (cmd.kind === 'read') {
            const regionId = REGIONS[cmd.region]!;
            const client = writers[cmd.client]!;
            if (lossArmed[cmd.client]) {
              lossArmed[cmd.client] = false;
              await expect(client.getRegion(regionId)).rejects.toBeInstanceOf(CoordinatorUnavailableError);
              continue;
            }
            const entry = await client.getRegion(regionId);
            const expected = model.get(regionId);
            expect(
              entry === undefined ? undefined : { revision: entry.revision, epoch: entry.config.epoch },
            ).toEqual(expected);
            if (entry !== undefined)
              caches[cmd.client]!.set(regionId, { revision: entry.revision, epoch: entry.config.epoch });
          } else if (cmd.kind === 'cas') {
            const regionId = REGIONS[cmd.region]!;
            const cached = caches[cmd.client]!.get(regionId) ?? { revision: 0, epoch: 0 };
            const epoch = cached.epoch + cmd.epochDelta;
            const current = model.get(regionId);
            const revisionMatches =
              current === undefined ? cached.revision === 0 : current.revision === cached.revision;
            const config = regionConfig(regionId, epoch, `n${cmd.client}`, [
              `n${(cmd.client + 1) % WRITERS}`,
            ]);
            let outcome: CasResult | Error;
            try {
              outcome = await writers[cmd.client]!.compareAndSetRegion(cached.revision, config);
            } catch (err) {
              outcome = err as Error;
            }
            if (epoch < 1) {
              // Malformed whatever the revision: rejected before anything else, the loss stays armed.
              expect(outcome).toBeInstanceOf(InvalidConfigurationError);
            } else if (!revisionMatches) {
              if (lossArmed[cmd.client]) expect(outcome).toBeInstanceOf(CoordinatorUnavailableError);
              else {
                const currentEntry =
                  current === undefined ? undefined : (await writers[cmd.client]!.getRegion(regionId))!;
                expect(outcome).toEqual({ ok: false, current: currentEntry });
                if (currentEntry !== undefined) {
                  caches[cmd.client]!.set(regionId, {
                    revision: currentEntry.revision,
                    epoch: currentEntry.config.epoch,
                  });
                }
              }
              lossArmed[cmd.client] = false;
            } else if (epoch !== (current?.epoch ?? 0) + 1) {
              expect(outcome).toBeInstanceOf(InvalidConfigurationError);
            } else {
              const revision = coordinator.revision;
              expect(revision).toBeGreaterThan(current?.revision ?? 0);
              model.set(regionId, { revision, epoch });
              written.push({ regionId, revision, epoch });
              if (lossArmed[cmd.client]) expect(outcome).toBeInstanceOf(CoordinatorUnavailableError);
              else {
                expect(outcome).toEqual({ ok: true, revision });
                caches[cmd.client]!.set(regionId, { revision, epoch });
              }
              lossArmed[cmd.client] = false;
            }
          } else if (cmd.kind === 'loseReply') {
            writers[cmd.client]!.faults.loseNextReply();
            lossArmed[cmd.client] = true;
          } else if (cmd.kind === 'partitionWatcher') {
            watchers[cmd.watcher]!.faults.partition(cmd.on);
          } else {
            clock.advance(cmd.ms);
          }
          await flush();
          watchers.forEach((w, i) => {
            // A reachable watcher is always caught up.
            if (!w.faults.partitioned) expect(seen[i]!.length).toBe(written.length);
          });
        }

        for (const w of watchers) w.faults.partition(false);
        await flush();
        const asWritten = (events: RegionEvent[]) =>
          events.map((e) => {
            if (e.kind !== 'put') throw new Error('no deletes are written');
            return {
              regionId: e.entry.config.regionId,
              revision: e.entry.revision,
              epoch: e.entry.config.epoch,
            };
          });
        expect(asWritten(seen[0]!)).toEqual(written);
        expect(seen[1]).toEqual(seen[0]);
        for (let i = 1; i < written.length; i++) {
          expect(written[i]!.revision).toBeGreaterThan(written[i - 1]!.revision);
        }
        for (const regionId of REGIONS) {
          const epochs = written.filter((w) => w.regionId === regionId).map((w) => w.epoch);
          expect(epochs).toEqual(epochs.map((_, i) => i + 1));
        }
        const final: RegionEntry[] = await coordinator.client().getRegions();
        expect(
          final.map((e) => ({ regionId: e.config.regionId, revision: e.revision, epoch: e.config.epoch })),
        ).toEqual(REGIONS.filter((r) => model.has(r)).map((r) => ({ regionId: r, ...model.get(r)! })));
      }),
      propertyParams('coordination: compare-and-set races', 150),
    );
  });

  it('election under joins, leaves, partitions, pauses and expiries: at most one node believes it leads', async () => {
    const NODES = 4;
    const TTL_MS = 300;
    const node = fc.nat(NODES - 1);
    const cmdArb = fc.oneof(
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('join' as const), node }) },
      { weight: 4, arbitrary: fc.record({ kind: fc.constant('campaign' as const), node }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('resign' as const), node }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('leave' as const), node }) },
      {
        weight: 2,
        arbitrary: fc.record({ kind: fc.constant('partition' as const), node, on: fc.boolean() }),
      },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('pause' as const), node, on: fc.boolean() }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('expire' as const), node }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('loseReply' as const), node }) },
      {
        weight: 5,
        arbitrary: fc.record({
          kind: fc.constant('advance' as const),
          ms: fc.oneof(fc.integer({ min: 1, max: 120 }), fc.integer({ min: 1, max: 700 })),
        }),
      },
    );

    interface Held {
      leadership: Leadership;
      membership: Membership;
      ended: boolean;
      steppedDown: boolean;
    }
    interface NodeState {
      id: string;
      client: EmbeddedCoordinatorClient;
      membership: Membership | undefined;
      left: boolean;
      campaignedUnder: Set<Membership>;
      held: Held[];
    }

    await fc.assert(
      fc.asyncProperty(fc.array(cmdArb, { minLength: 10, maxLength: 80, size: 'max' }), async (cmds) => {
        const clock = new ManualClock(0);
        const coordinator = new EmbeddedCoordinator({ clock });
        const observed: Array<string | undefined> = [];
        coordinator.client({ name: 'observer' }).observeLeader((l) => observed.push(l));
        const nodes: NodeState[] = Array.from({ length: NODES }, (_, i) => ({
          id: `n${i}`,
          client: coordinator.client({ name: `n${i}` }),
          membership: undefined,
          left: false,
          campaignedUnder: new Set(),
          held: [],
        }));
        // Every node starts as a member; commands make them leave, lose and rejoin.
        for (const n of nodes) n.membership = await n.client.join(nodeInfo(n.id), TTL_MS);
        let orphanCandidate = false;
        const unexpected: unknown[] = [];
        const expectedFailure = (err: unknown): void => {
          if (err instanceof CoordinatorUnavailableError) {
            if (/reply .* was lost/.test(err.message)) orphanCandidate = true;
          } else if (!(err instanceof LeaseExpiredError)) unexpected.push(err);
        };
        const valid = (m: Membership | undefined): m is Membership =>
          m !== undefined && m.validUntilMs(0) > clock.now();

        const check = (): void => {
          expect(unexpected).toEqual([]);
          const now = clock.now();
          const believers = nodes.flatMap((n) =>
            n.held
              .filter((h) => !h.ended && !h.steppedDown && h.membership.validUntilMs(0) > now)
              .map(() => n.id),
          );
          const snapshot = coordinator.snapshot();
          expect(believers.length).toBeLessThanOrEqual(1);
          if (believers.length === 1) expect(snapshot.leaderNodeId).toBe(believers[0]);
          expect(snapshot.leaderNodeId).toBe(snapshot.candidateNodeIds[0]);
          expect(observed.at(-1)).toBe(snapshot.leaderNodeId);
        };

        for (const cmd of cmds) {
          const n = cmd.kind === 'advance' ? undefined : nodes[cmd.node]!;
          switch (cmd.kind) {
            case 'join':
              if (!valid(n!.membership) || n!.left) {
                await n!.client.join(nodeInfo(n!.id), TTL_MS).then((m) => {
                  n!.membership = m;
                  n!.left = false;
                }, expectedFailure);
              }
              break;
            case 'campaign': {
              const m = n!.membership;
              if (m === undefined || n!.campaignedUnder.has(m)) break;
              n!.campaignedUnder.add(m);
              n!.client.campaign(m).then((leadership) => {
                const held: Held = { leadership, membership: m, ended: false, steppedDown: n!.left };
                leadership.lost.then(() => {
                  held.ended = true;
                });
                n!.held.push(held);
              }, expectedFailure);
              break;
            }
            case 'resign':
              for (const h of n!.held.filter((x) => !x.steppedDown)) {
                h.steppedDown = true;
                await h.leadership.resign().catch(expectedFailure);
              }
              break;
            case 'leave':
              if (n!.membership !== undefined) {
                n!.left = true;
                for (const h of n!.held) if (h.membership === n!.membership) h.steppedDown = true;
                await n!.membership.leave().catch(expectedFailure);
              }
              break;
            case 'partition':
              n!.client.faults.partition(cmd.on);
              break;
            case 'pause':
              n!.client.faults.pauseKeepalives(cmd.on);
              break;
            case 'expire':
              // An operator's revoke is not fencing-safe against a partitioned holder (it has not
              // waited out the TTL): only expire reachable nodes.
              if (n!.membership !== undefined && !n!.client.faults.partitioned)
                coordinator.expireLease(n!.membership);
              break;
            case 'loseReply':
              n!.client.faults.loseNextReply();
              break;
            case 'advance':
              clock.advance(cmd.ms);
              break;
          }
          await flush();
          check();
        }

        // Heal everything and let leases settle: whoever the coordinator elected hears of it.
        for (const n of nodes) {
          n.client.faults.partition(false);
          n.client.faults.pauseKeepalives(false);
        }
        await flush();
        check();
        clock.advance(TTL_MS * 3);
        await flush();
        check();
        const leader = coordinator.snapshot().leaderNodeId;
        if (leader !== undefined && !orphanCandidate) {
          // Counting leaderships whose step-down did not reach the coordinator (partitioned resign).
          const believers = nodes.filter((n) => n.held.some((h) => !h.ended));
          expect(believers.map((n) => n.id)).toEqual([leader]);
        }
      }),
      propertyParams('coordination: election safety', 150),
    );
  });
});
