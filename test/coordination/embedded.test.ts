/**
 * EmbeddedCoordinator: the conformance suite on a ManualClock, then what only the embedded one can
 * show — exact lease timing, the fault hooks (partition, paused keepalives, lost replies), the
 * asynchrony and determinism of deliveries.
 */
import { EmbeddedCoordinator, type EmbeddedCoordinatorClient } from '../../coordination/embedded.js';
import type { Leadership, MemberEvent, RegionConfig, RegionEvent } from '../../coordination/types.js';
import { ManualClock } from '../../src/clock/index.js';
import {
  CoordinatorUnavailableError,
  InvalidArgumentError,
  InvalidConfigurationError,
  LeaseExpiredError,
} from '../../src/errors.js';
import {
  describeCoordinatorConformance,
  listed,
  nodeInfo,
  record,
  regionConfig,
  track,
} from './conformance.js';
import { type EmbeddedTestEnv, flush, makeEmbeddedEnv } from './embedded-env.js';

describeCoordinatorConformance('EmbeddedCoordinator', () => makeEmbeddedEnv(1000));

const TTL_MS = 1000;

describe('EmbeddedCoordinator (embedded only)', () => {
  let env: EmbeddedTestEnv;
  beforeEach(() => {
    env = makeEmbeddedEnv(TTL_MS);
  });
  afterEach(async () => {
    await env.teardown();
  });

  describe('leases on the injected clock', () => {
    it('a lease ends exactly at the last keepalive + TTL, with keepalives every TTL/3', async () => {
      const a = env.newClient();
      const b = env.newClient();
      const t0 = env.clock.now();
      const m = await a.join(nodeInfo('n1'), TTL_MS);
      expect(m.lastKeepaliveSentAtMs()).toBe(t0);
      env.clock.advance(333);
      expect(m.lastKeepaliveSentAtMs()).toBe(t0 + 333);
      env.clock.advance(1000);
      expect(m.lastKeepaliveSentAtMs()).toBe(t0 + 1332);

      // The process stops just after the keepalive at t0+1332: the lease ends at t0+2332.
      a.faults.pauseKeepalives(true);
      env.clock.advance(998);
      expect(env.clock.now()).toBe(t0 + 2331);
      expect(env.coordinator.snapshot().members.map((x) => x.nodeId)).toEqual(['n1']);
      expect(m.validUntilMs(0)).toBe(t0 + 2332);
      env.clock.advance(1);
      expect(env.coordinator.snapshot().members).toEqual([]);
      expect(await b.members()).toEqual([]);
      expect(m.validUntilMs(0)).toBeLessThanOrEqual(env.clock.now());
    });

    it('paused keepalives: the lease runs out, onLost fires, resuming does not revive it', async () => {
      const a = env.newClient();
      const m = await a.join(nodeInfo('n1'), TTL_MS);
      let lost = 0;
      m.onLost(() => {
        lost += 1;
      });
      a.faults.pauseKeepalives(true);
      expect(a.faults.keepalivesPaused).toBe(true);
      await env.advance(TTL_MS);
      expect(lost).toBe(1);
      a.faults.pauseKeepalives(false);
      await env.advance(TTL_MS * 3);
      expect(await a.members()).toEqual([]);
      expect(lost).toBe(1);
      // Only the server's lease timers for leases still alive remain; this client's keepalives stopped.
      expect(env.clock.pendingTimerCount).toBe(0);
    });

    it('expireLease by node id or membership; false when there is no live lease', async () => {
      const a = env.newClient();
      const m1 = await a.join(nodeInfo('n1'), TTL_MS);
      const m2 = await a.join(nodeInfo('n2'), TTL_MS);
      expect(env.coordinator.expireLease('n1')).toBe(true);
      expect(env.coordinator.expireLease('n1')).toBe(false);
      expect(env.coordinator.expireLease(m2)).toBe(true);
      expect(env.coordinator.expireLease(m1)).toBe(false);
      expect(env.coordinator.expireLease('nobody')).toBe(false);
      expect(env.coordinator.snapshot()).toMatchObject({ members: [], liveLeaseCount: 0 });
      const foreign = await new EmbeddedCoordinator({ clock: env.clock })
        .client()
        .join(nodeInfo('x'), TTL_MS);
      expect(() => env.coordinator.expireLease(foreign)).toThrow(InvalidArgumentError);
      await foreign.leave();
    });

    it('after every client closed and the leases ran out, no timer is left', async () => {
      const a = env.newClient();
      const b = env.newClient();
      const ma = await a.join(nodeInfo('A'), TTL_MS);
      await b.join(nodeInfo('B'), TTL_MS);
      await a.campaign(ma);
      b.watchRegions(() => {});
      await a.close();
      await b.close();
      expect(env.clock.pendingTimerCount).toBe(2); // the two server-side lease deadlines
      await env.advance(TTL_MS);
      expect(env.clock.pendingTimerCount).toBe(0);
      expect(env.coordinator.snapshot()).toMatchObject({
        members: [],
        leaderNodeId: undefined,
        liveLeaseCount: 0,
      });
    });
  });

  describe('deliveries', () => {
    it('never run inside the call that caused them', async () => {
      const c = env.newClient();
      const events: RegionEvent[] = [];
      c.watchRegions((e) => events.push(e));
      const members: MemberEvent[] = [];
      c.watchMembers((e) => members.push(e));
      const pending = c.compareAndSetRegion(0, regionConfig('r1', 1, 'n1', []));
      const joining = c.join(nodeInfo('n1'), TTL_MS);
      expect(events).toEqual([]);
      expect(members).toEqual([]);
      await pending;
      await joining;
      await flush();
      expect(events).toHaveLength(1);
      expect(members).toEqual([{ kind: 'join', member: listed('n1') }]);
    });

    it('are deterministic: the same calls and clock moves give the same deliveries', async () => {
      const run = async (): Promise<string[]> => {
        const clock = new ManualClock(0);
        const coordinator = new EmbeddedCoordinator({ clock });
        const log: string[] = [];
        const clients = [0, 1, 2].map((i) => coordinator.client({ name: `c${i}` }));
        clients.forEach((c, i) => {
          c.watchMembers((e) => log.push(`${clock.now()} c${i} member ${JSON.stringify(e)}`));
          c.watchRegions((e) => log.push(`${clock.now()} c${i} region ${JSON.stringify(e)}`));
          c.observeLeader((l) => log.push(`${clock.now()} c${i} leader ${l}`));
        });
        const memberships = await Promise.all(clients.map((c, i) => c.join(nodeInfo(`n${i}`), 300)));
        const campaigns = clients.map((c, i) =>
          c.campaign(memberships[i]!).then(
            (l) => log.push(`${clock.now()} n${i} leads ${l.nodeId}`),
            (e: Error) => log.push(`${clock.now()} n${i} campaign failed ${e.name}`),
          ),
        );
        let revision = 0;
        for (let step = 0; step < 6; step++) {
          const result = await clients[step % 3]!.compareAndSetRegion(
            revision,
            regionConfig('r', step + 1, `n${step % 3}`, []),
          );
          if (result.ok) revision = result.revision;
          clients[step % 3]!.faults.pauseKeepalives(step % 2 === 0);
          clock.advance(170);
          await flush();
        }
        clock.advance(1000);
        await flush();
        await Promise.all(campaigns);
        return log;
      };
      const first = await run();
      const second = await run();
      expect(first.length).toBeGreaterThan(20);
      expect(second).toEqual(first);
    });
  });

  describe('partition', () => {
    it('every call rejects without being applied', async () => {
      const p = env.newClient();
      const m = await p.join(nodeInfo('n1'), TTL_MS);
      const leadership = await p.campaign(m);
      const revisionBefore = env.coordinator.revision;
      p.faults.partition(true);
      expect(p.faults.partitioned).toBe(true);
      const calls: Array<() => Promise<unknown>> = [
        () => p.join(nodeInfo('n2'), TTL_MS),
        () => p.members(),
        () => p.getRegions(),
        () => p.getRegion('r1'),
        () => p.compareAndSetRegion(0, regionConfig('r1', 1, 'n1', [])),
        () => p.campaign(m),
        () =>
          p.reportSuspect({ regionId: 'r1', epoch: 1, suspectNodeId: 'a', reporterNodeId: 'b', reason: '' }),
        () => p.clearSuspects('r1'),
        () => leadership.resign(),
        () => m.leave(),
      ];
      for (const call of calls) await expect(call()).rejects.toBeInstanceOf(CoordinatorUnavailableError);
      expect(env.coordinator.revision).toBe(revisionBefore);
      expect(env.coordinator.snapshot()).toMatchObject({ leaderNodeId: 'n1', regions: [], suspects: [] });
    });

    it('watches deliver nothing while partitioned and catch up, in order, after healing', async () => {
      const writer = env.newClient();
      const p = env.newClient();
      await writer.compareAndSetRegion(0, regionConfig('r1', 1, 'n1', []));
      const events: RegionEvent[] = [];
      p.watchRegions((e) => events.push(e));
      await flush();
      expect(events).toHaveLength(1);

      p.faults.partition(true);
      let revision = (await writer.getRegion('r1'))!.revision;
      const expected: number[] = [];
      for (let epoch = 2; epoch <= 4; epoch++) {
        const result = await writer.compareAndSetRegion(revision, regionConfig('r1', epoch, `n${epoch}`, []));
        if (!result.ok) throw new Error('write failed');
        revision = result.revision;
        expected.push(revision);
        await env.advance(100);
      }
      // A watch opened while partitioned delivers its snapshot after healing, too.
      const lateEvents: RegionEvent[] = [];
      p.watchRegions((e) => lateEvents.push(e));
      await env.advance(TTL_MS);
      expect(events).toHaveLength(1);
      expect(lateEvents).toEqual([]);

      const entry4 = await writer.getRegion('r1');
      // One more write whose delivery is still queued (not yet held back) when the partition heals:
      // it comes after everything held back.
      const lastWrite = writer.compareAndSetRegion(revision, regionConfig('r1', 5, 'n5', []));
      p.faults.partition(false);
      const last = await lastWrite;
      if (!last.ok) throw new Error('write failed');
      expected.push(last.revision);
      await flush();
      expect(events.slice(1).map((e) => (e.kind === 'put' ? e.entry.revision : -1))).toEqual(expected);
      expect(lateEvents).toEqual([
        { kind: 'put', entry: entry4 },
        { kind: 'put', entry: await writer.getRegion('r1') },
      ]);
    });

    it('keepalives fail: the lease runs out server-side; the node learns it from validUntilMs, the event comes after healing', async () => {
      const p = env.newClient();
      const other = env.newClient();
      const m = await p.join(nodeInfo('n1'), TTL_MS);
      let lost = 0;
      m.onLost(() => {
        lost += 1;
      });
      const watch = record<MemberEvent>((h) => other.watchMembers(h));
      await env.advance(500); // keepalive at +333
      p.faults.partition(true);
      const deadline = m.validUntilMs(0);
      expect(deadline).toBe(m.lastKeepaliveSentAtMs() + TTL_MS);

      await env.advance(deadline - env.clock.now() - 1);
      expect(await other.members()).toHaveLength(1);
      expect(m.validUntilMs(0)).toBeGreaterThan(env.clock.now());
      await env.advance(1);
      expect(await other.members()).toEqual([]);
      expect(watch.events.at(-1)).toEqual({ kind: 'leave', nodeId: 'n1' });
      // The partitioned node hears nothing, but its own arithmetic already fences it.
      expect(lost).toBe(0);
      expect(m.validUntilMs(0)).toBeLessThanOrEqual(env.clock.now());
      await env.advance(TTL_MS * 5);
      expect(lost).toBe(0);

      p.faults.partition(false);
      await flush();
      expect(lost).toBe(1);
      await env.advance(TTL_MS * 2);
      expect(await other.members()).toEqual([]);
      expect(lost).toBe(1);
    });

    it('a partition shorter than the TTL: the lease survives and keepalives resume', async () => {
      const p = env.newClient();
      const m = await p.join(nodeInfo('n1'), TTL_MS);
      p.faults.partition(true);
      await env.advance(TTL_MS - 100);
      p.faults.partition(false);
      const stale = m.lastKeepaliveSentAtMs();
      await env.advance(TTL_MS);
      expect(m.lastKeepaliveSentAtMs()).toBeGreaterThan(stale);
      expect(await p.members()).toEqual([listed('n1')]);
    });

    it('a partitioned leader: the next candidate leads only after the old one’s deadline; the old one learns after healing', async () => {
      const a = env.newClient();
      const b = env.newClient();
      const ma = await a.join(nodeInfo('A'), TTL_MS);
      const mb = await b.join(nodeInfo('B'), TTL_MS);
      const leaderA = await a.campaign(ma);
      const lostA = track(leaderA.lost);
      const campaignB = track(b.campaign(mb));
      await flush();
      a.faults.partition(true);
      const deadlineA = ma.validUntilMs(0);
      let bLedAtMs: number | undefined;
      while (campaignB.outcome.state === 'pending') {
        await env.advance(10);
        if (campaignB.outcome.state !== 'pending') bLedAtMs = env.clock.now();
        expect(env.clock.now()).toBeLessThan(deadlineA + 100);
      }
      expect(campaignB.outcome).toMatchObject({ state: 'resolved', value: { nodeId: 'B' } });
      expect(bLedAtMs).toBeGreaterThanOrEqual(deadlineA);
      // A still has no event, but is past its own deadline.
      expect(lostA.outcome.state).toBe('pending');
      expect(ma.validUntilMs(0)).toBeLessThanOrEqual(env.clock.now());
      a.faults.partition(false);
      await flush();
      expect(lostA.outcome.state).toBe('resolved');
    });

    it('elected while partitioned: the campaign resolves after healing, or fails if the lease ran out meanwhile', async () => {
      const a = env.newClient();
      const b = env.newClient();
      const c = env.newClient();
      const ma = await a.join(nodeInfo('A'), TTL_MS);
      const mb = await b.join(nodeInfo('B'), TTL_MS);
      const mc = await c.join(nodeInfo('C'), TTL_MS);
      const leaderA = await a.campaign(ma);
      const campaignB = track(b.campaign(mb));
      const campaignC = track(c.campaign(mc));
      await flush();

      b.faults.partition(true);
      await leaderA.resign();
      await env.advance(TTL_MS / 2);
      expect(env.coordinator.snapshot().leaderNodeId).toBe('B');
      expect(campaignB.outcome.state).toBe('pending');
      b.faults.partition(false);
      await flush();
      expect(campaignB.outcome).toMatchObject({ state: 'resolved', value: { nodeId: 'B' } });

      // C is partitioned when B resigns, and stays so past its TTL.
      c.faults.partition(true);
      const outcomeB = campaignB.outcome;
      if (outcomeB.state !== 'resolved') throw new Error('B should lead');
      await outcomeB.value.resign();
      await flush();
      expect(env.coordinator.snapshot().leaderNodeId).toBe('C');
      await env.advance(TTL_MS * 2);
      expect(env.coordinator.snapshot().leaderNodeId).toBeUndefined();
      c.faults.partition(false);
      await flush();
      expect(campaignC.outcome.state).toBe('rejected');
      if (campaignC.outcome.state === 'rejected')
        expect(campaignC.outcome.error).toBeInstanceOf(LeaseExpiredError);
    });
  });

  describe('lost replies', () => {
    it('a compare-and-set whose reply is lost was applied: a read-back finds it', async () => {
      const c = env.newClient();
      const watcher = record<RegionEvent>((h) => env.newClient().watchRegions(h));
      const v1 = regionConfig('r1', 1, 'n1', ['n2']);
      c.faults.loseNextReply();
      await expect(c.compareAndSetRegion(0, v1)).rejects.toBeInstanceOf(CoordinatorUnavailableError);
      // The caller's read-back logic (DESIGN §8): the entry is there, with the configuration it wrote.
      const entry = await c.getRegion('r1');
      expect(entry?.config).toEqual(v1);
      // A blind retry is a CAS failure that shows the caller's own write.
      expect(await c.compareAndSetRegion(0, v1)).toEqual({ ok: false, current: entry });
      await flush();
      expect(watcher.events).toEqual([{ kind: 'put', entry }]);
      // Only one reply is lost.
      expect(await c.compareAndSetRegion(entry!.revision, regionConfig('r1', 2, 'n2', []))).toMatchObject({
        ok: true,
      });
    });

    it('a join whose reply is lost registers a member that nobody keeps alive', async () => {
      const c = env.newClient();
      c.faults.loseNextReply();
      await expect(c.join(nodeInfo('n1'), TTL_MS)).rejects.toBeInstanceOf(CoordinatorUnavailableError);
      expect(await c.members()).toEqual([listed('n1')]);
      await env.advance(TTL_MS);
      expect(await c.members()).toEqual([]);
    });

    it('a leave whose reply is lost took effect; retrying it resolves', async () => {
      const c = env.newClient();
      const m = await c.join(nodeInfo('n1'), TTL_MS);
      c.faults.loseNextReply();
      await expect(m.leave()).rejects.toBeInstanceOf(CoordinatorUnavailableError);
      expect(await c.members()).toEqual([]);
      await m.leave();
      expect(m.validUntilMs(0)).toBeLessThanOrEqual(env.clock.now());
    });

    it('a resign whose reply is lost took effect: the leadership still ends', async () => {
      const c = env.newClient();
      const m = await c.join(nodeInfo('n1'), TTL_MS);
      const leadership: Leadership = await c.campaign(m);
      c.faults.loseNextReply();
      await expect(leadership.resign()).rejects.toBeInstanceOf(CoordinatorUnavailableError);
      await flush();
      await expect(leadership.lost).resolves.toBeUndefined();
      expect(env.coordinator.snapshot().leaderNodeId).toBeUndefined();
    });

    it('a campaign whose reply is lost leaves a candidate nobody waits for (until its lease ends)', async () => {
      const c = env.newClient();
      const m = await c.join(nodeInfo('n1'), TTL_MS);
      c.faults.loseNextReply();
      await expect(c.campaign(m)).rejects.toBeInstanceOf(CoordinatorUnavailableError);
      expect(env.coordinator.snapshot().leaderNodeId).toBe('n1');
      await expect(c.campaign(m)).rejects.toBeInstanceOf(InvalidArgumentError);
      await m.leave();
      expect(env.coordinator.snapshot().leaderNodeId).toBeUndefined();
    });
  });

  describe('arguments', () => {
    it('rejects a bad construction, a foreign membership, and a bad margin', async () => {
      expect(() => new EmbeddedCoordinator({} as never)).toThrow(InvalidArgumentError);
      expect(() => new EmbeddedCoordinator({ clock: env.clock, cluster: 'a/b' })).toThrow(
        InvalidArgumentError,
      );
      expect(() => env.coordinator.client({ name: '' })).toThrow(InvalidArgumentError);
      const named: EmbeddedCoordinatorClient = env.coordinator.client({ name: 'node-7' });
      expect(named.name).toBe('node-7');
      named.faults.partition(true);
      await expect(named.members()).rejects.toThrow(/node-7/);
      await named.close();

      const other = new EmbeddedCoordinator({ clock: env.clock });
      const foreign = await other.client().join(nodeInfo('x'), TTL_MS);
      await expect(env.newClient().campaign(foreign)).rejects.toBeInstanceOf(InvalidArgumentError);
      expect(() => foreign.validUntilMs(Number.NaN)).toThrow(InvalidArgumentError);
      await foreign.leave();
    });

    it('joining backups hold no copy yet: never among the backups or the primary', async () => {
      const c = env.newClient();
      for (const joining of [['n3'], ['n1']]) {
        const bad: RegionConfig = regionConfig('r1', 1, 'n1', ['n2', 'n3'], { joining });
        await expect(c.compareAndSetRegion(0, bad)).rejects.toBeInstanceOf(InvalidConfigurationError);
      }
      const good: RegionConfig = regionConfig('r1', 1, 'n1', ['n2'], { joining: ['n3'] });
      expect(await c.compareAndSetRegion(0, good)).toMatchObject({ ok: true });
    });
  });
});
