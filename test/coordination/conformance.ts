/**
 * The Coordinator conformance suite: behaviour every implementation of coordination/types.ts must
 * show — EmbeddedCoordinator (embedded.test.ts, ManualClock) and the etcd implementation (real etcd,
 * real time). Call `describeCoordinatorConformance(name, makeEnv)` from a test file.
 *
 * The suite never assumes how fast time passes: it lets time pass only through `env.advance`, waits
 * for notifications by polling (`eventually`, which settles, checks, then advances by `env.stepMs`),
 * and takes the lease TTL from the env (etcd grants no TTL below about 2 s). Assertions about "not
 * yet" are made only where the lease arithmetic guarantees them, whatever the implementation's speed.
 *
 * Contract points the suite pins down beyond the interface's doc comments:
 * - `leave()` is not a loss: onLost does not fire for it; a revoke by anyone else (or an expiry) does.
 * - `validUntilMs(m)` is `lastKeepaliveSentAtMs() + leaseTtlMs − m` while the membership lasts, never
 *   later than the moment the holder learned it ended (left or lost); a negative margin is an
 *   InvalidArgumentError.
 * - A lease never ends on the coordinator before the holder's `validUntilMs(0)`.
 * - A second join of a nodeId replaces the member entry (an etcd put): the older lease's end no
 *   longer removes it.
 * - compareAndSetRegion checks the revision first ({ok:false, current} is a normal answer), then the
 *   epoch rule and the configuration's shape (InvalidConfigurationError); revisions are global.
 * - `close()`: later calls reject with CoordinatorUnavailableError, watch registrations throw it,
 *   pending campaigns reject with it, held leaderships' `lost` resolves (the client can no longer
 *   vouch for them); the server-side lease runs out on its own.
 */

import type {
  Coordinator,
  Leadership,
  MemberEvent,
  Membership,
  NodeInfo,
  RegionConfig,
  RegionEntry,
  RegionEvent,
  SuspectReport,
  Unsubscribe,
} from '../../coordination/types.js';
import {
  CoordinatorUnavailableError,
  InvalidArgumentError,
  InvalidConfigurationError,
  LeaseExpiredError,
} from '../../src/errors.js';

export interface CoordinatorTestEnv {
  /** A new client: one per simulated node or process. The env closes leftovers in `teardown`. */
  newClient(): Coordinator;
  /** The lease TTL the suite joins with (etcd: at least 2000). */
  readonly leaseTtlMs: number;
  /** How long past a lease's deadline the coordinator may take to drop it (embedded: 0; etcd: ~1000). */
  readonly expirySlackMs: number;
  /** The time step `eventually` advances by between checks. */
  readonly stepMs: number;
  /** Clock time as the implementation reads it (lastKeepaliveSentAtMs and validUntilMs use it). */
  now(): number;
  /** Lets `ms` of time pass (embedded: ManualClock.advance and a flush; etcd: a real sleep). */
  advance(ms: number): Promise<void>;
  /** Lets issued calls and pending notifications land without letting (much) time pass. */
  settle(): Promise<void>;
  /** Ends the membership's lease from outside the holder: an operator's revoke or a forced expiry. */
  revokeLease(membership: Membership): Promise<void>;
  teardown(): Promise<void>;
}

export type MakeCoordinatorTestEnv = () => CoordinatorTestEnv | Promise<CoordinatorTestEnv>;

// ───────────────────────────────────────── helpers ─────────────────────────────────────────

export const nodeInfo = (nodeId: string, extra: Partial<NodeInfo> = {}): NodeInfo => ({
  nodeId,
  fabricAddress: `mem://${nodeId}`,
  ...extra,
});

/** A member as the coordinator lists it: what it joined with, plus the revision it joined at. */
export const listed = (nodeId: string, extra: Partial<NodeInfo> = {}): NodeInfo => ({
  ...nodeInfo(nodeId, extra),
  joinedRevision: expect.any(Number) as unknown as number,
});

export const regionConfig = (
  regionId: string,
  epoch: number,
  primary: string,
  backups: string[],
  extra: Partial<RegionConfig> = {},
): RegionConfig => ({ regionId, minKey: '', epoch, primary, backups, state: 'active', ...extra });

/** Polls `check` (after settling) until it holds, advancing time by `env.stepMs` in between. */
export async function eventually(
  env: CoordinatorTestEnv,
  check: () => boolean | Promise<boolean>,
  withinMs: number,
  what: string,
): Promise<void> {
  let waitedMs = 0;
  for (;;) {
    await env.settle();
    if (await check()) return;
    if (waitedMs >= withinMs) throw new Error(`still waiting for ${what} after ${waitedMs} ms`);
    const stepMs = Math.min(env.stepMs, withinMs - waitedMs);
    await env.advance(stepMs);
    waitedMs += stepMs;
  }
}

type Settled<T> =
  | { state: 'pending' }
  | { state: 'resolved'; value: T }
  | { state: 'rejected'; error: unknown };

/** Tracks a promise's outcome without awaiting it (and without leaving a rejection unhandled). */
export function track<T>(promise: Promise<T>): { readonly outcome: Settled<T> } {
  const tracker: { outcome: Settled<T> } = { outcome: { state: 'pending' } };
  promise.then(
    (value) => {
      tracker.outcome = { state: 'resolved', value };
    },
    (error: unknown) => {
      tracker.outcome = { state: 'rejected', error };
    },
  );
  return tracker;
}

async function resolvedWithin<T>(
  env: CoordinatorTestEnv,
  promise: Promise<T>,
  withinMs: number,
  what: string,
) {
  const tracked = track(promise);
  await eventually(env, () => tracked.outcome.state !== 'pending', withinMs, what);
  const outcome = tracked.outcome;
  if (outcome.state === 'rejected') throw outcome.error;
  if (outcome.state !== 'resolved') throw new Error(`${what}: still pending`);
  return outcome.value;
}

export function record<E>(subscribe: (handler: (event: E) => void) => Unsubscribe): {
  events: E[];
  unsubscribe: Unsubscribe;
} {
  const events: E[] = [];
  const unsubscribe = subscribe((event) => events.push(event));
  return { events, unsubscribe };
}

const byNodeId = (a: NodeInfo, b: NodeInfo): number =>
  a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0;
const sortedMembers = (members: NodeInfo[]): NodeInfo[] => [...members].sort(byNodeId);
const memberIds = async (c: Coordinator): Promise<string[]> =>
  (await c.members()).map((m) => m.nodeId).sort();
const suspectKey = (r: SuspectReport): string => `${r.regionId}/${r.suspectNodeId}/${r.reporterNodeId}`;

// ───────────────────────────────────────── the suite ─────────────────────────────────────────

export function describeCoordinatorConformance(name: string, makeEnv: MakeCoordinatorTestEnv): void {
  describe(`Coordinator conformance: ${name}`, () => {
    let env: CoordinatorTestEnv;
    let ttlMs: number;
    /** Long enough for any notification that needs no lease to run out. */
    let quickMs: number;
    /** Long enough for a lease nobody keeps alive to be dropped, from now. */
    let expiryMs: number;

    beforeEach(async () => {
      env = await makeEnv();
      ttlMs = env.leaseTtlMs;
      quickMs = ttlMs;
      expiryMs = ttlMs + env.expirySlackMs + ttlMs / 2;
    });

    afterEach(async () => {
      await env.teardown();
    });

    describe('membership', () => {
      it('join registers a member; members() and watchMembers see current members, joins and leaves', async () => {
        const a = env.newClient();
        const b = env.newClient();
        const ma = await a.join(nodeInfo('n1', { clientAddress: 'tcp://n1' }), ttlMs);
        expect(ma.nodeId).toBe('n1');
        expect(ma.leaseTtlMs).toBe(ttlMs);
        const watch = record<MemberEvent>((h) => b.watchMembers(h));
        await eventually(env, () => watch.events.length >= 1, quickMs, 'the current member');
        expect(watch.events).toEqual([{ kind: 'join', member: listed('n1', { clientAddress: 'tcp://n1' }) }]);

        await b.join(nodeInfo('n2'), ttlMs);
        expect(sortedMembers(await a.members())).toEqual([
          listed('n1', { clientAddress: 'tcp://n1' }),
          listed('n2'),
        ]);
        await eventually(env, () => watch.events.length >= 2, quickMs, 'the join of n2');

        await ma.leave();
        expect(await memberIds(b)).toEqual(['n2']);
        await eventually(env, () => watch.events.length >= 3, quickMs, 'the leave of n1');
        expect(watch.events.slice(1)).toEqual([
          { kind: 'join', member: listed('n2') },
          { kind: 'leave', nodeId: 'n1' },
        ]);

        watch.unsubscribe();
        await a.join(nodeInfo('n3'), ttlMs);
        await env.settle();
        await env.advance(env.stepMs);
        expect(watch.events).toHaveLength(3);
      });

      it('join rejects bad arguments with InvalidArgumentError', async () => {
        const c = env.newClient();
        for (const bad of [0, -1000, Number.NaN, Number.POSITIVE_INFINITY]) {
          await expect(c.join(nodeInfo('n1'), bad)).rejects.toBeInstanceOf(InvalidArgumentError);
        }
        await expect(c.join(nodeInfo(''), ttlMs)).rejects.toBeInstanceOf(InvalidArgumentError);
        expect(await c.members()).toEqual([]);
      });

      it('keepalives hold a lease across many TTLs; validUntilMs = lastKeepaliveSentAtMs + TTL − margin', async () => {
        const c = env.newClient();
        const before = env.now();
        const m = await c.join(nodeInfo('n1'), ttlMs);
        const first = m.lastKeepaliveSentAtMs();
        expect(first).toBeGreaterThanOrEqual(before);
        expect(first).toBeLessThanOrEqual(env.now());
        expect(m.validUntilMs(0)).toBe(first + ttlMs);

        for (let i = 0; i < 3; i++) await env.advance(ttlMs);
        await env.settle();
        expect(await memberIds(c)).toEqual(['n1']);
        const last = m.lastKeepaliveSentAtMs();
        expect(last).toBeGreaterThan(first);
        expect(last).toBeLessThanOrEqual(env.now());
        expect(m.validUntilMs(0)).toBe(last + ttlMs);
        expect(m.validUntilMs(ttlMs / 4)).toBe(last + ttlMs - ttlMs / 4);
        expect(m.validUntilMs(0)).toBeGreaterThan(env.now());
        expect(() => m.validUntilMs(-1)).toThrow(InvalidArgumentError);
      });

      it('a lease nobody keeps alive runs out: the member leaves, not before the holder’s deadline', async () => {
        const a = env.newClient();
        const b = env.newClient();
        const m = await a.join(nodeInfo('n1'), ttlMs);
        const watch = record<MemberEvent>((h) => b.watchMembers(h));
        await a.close();
        const deadlineMs = m.validUntilMs(0);

        await env.advance(ttlMs / 2);
        // At most ttl/3 + ttl/2 since the last keepalive: the lease is still there.
        expect(await memberIds(b)).toEqual(['n1']);

        await eventually(
          env,
          async () => (await memberIds(b)).length === 0,
          expiryMs,
          'the lease of n1 to run out',
        );
        expect(env.now()).toBeGreaterThanOrEqual(deadlineMs);
        await eventually(env, () => watch.events.length >= 2, quickMs, 'the leave event');
        expect(watch.events).toEqual([
          { kind: 'join', member: listed('n1') },
          { kind: 'leave', nodeId: 'n1' },
        ]);
      });

      it('a lease revoked from outside: onLost fires once, the member leaves, the holder is fenced', async () => {
        const a = env.newClient();
        const b = env.newClient();
        const m = await a.join(nodeInfo('n1'), ttlMs);
        let lostCount = 0;
        m.onLost(() => {
          lostCount += 1;
        });
        await env.revokeLease(m);
        await eventually(env, () => lostCount > 0, expiryMs, 'onLost');
        expect(await memberIds(b)).toEqual([]);
        expect(m.validUntilMs(0)).toBeLessThanOrEqual(env.now());

        let lateCount = 0;
        m.onLost(() => {
          lateCount += 1;
        });
        await eventually(env, () => lateCount > 0, quickMs, 'an onLost handler registered after the loss');
        await env.advance(ttlMs);
        await env.settle();
        expect(lostCount).toBe(1);
        expect(lateCount).toBe(1);
      });

      it('leave() removes the member at once, is idempotent, fences the holder and is not a loss', async () => {
        const c = env.newClient();
        const m = await c.join(nodeInfo('n1'), ttlMs);
        let lostCount = 0;
        m.onLost(() => {
          lostCount += 1;
        });
        await m.leave();
        expect(await memberIds(c)).toEqual([]);
        expect(m.validUntilMs(0)).toBeLessThanOrEqual(env.now());
        await m.leave();
        await env.advance(ttlMs + env.expirySlackMs);
        await env.settle();
        expect(lostCount).toBe(0);
      });

      it('a second join of a nodeId replaces the entry; the older lease no longer owns it', async () => {
        const a = env.newClient();
        const b = env.newClient();
        const older = await a.join(nodeInfo('n1', { fabricAddress: 'mem://old' }), ttlMs);
        const newer = await b.join(nodeInfo('n1', { fabricAddress: 'mem://new' }), ttlMs);
        expect(await a.members()).toEqual([listed('n1', { fabricAddress: 'mem://new' })]);
        // A new incarnation joins at a higher revision (its earlier roles are void, PROTOCOL §6).
        expect(newer.joinedRevision).toBeGreaterThan(older.joinedRevision);
        expect((await a.members())[0]!.joinedRevision).toBe(newer.joinedRevision);
        await older.leave();
        expect(await a.members()).toEqual([listed('n1', { fabricAddress: 'mem://new' })]);
        await newer.leave();
        expect(await a.members()).toEqual([]);
      });
    });

    describe('region map', () => {
      it('creates with expected revision 0 and epoch 1; getRegion and getRegions return it', async () => {
        const c = env.newClient();
        const config = regionConfig('r1', 1, 'n1', ['n2', 'n3'], { minKey: 'a', maxKey: 'm' });
        const created = await c.compareAndSetRegion(0, config);
        if (!created.ok) throw new Error('creation failed');
        expect(created.revision).toBeGreaterThan(0);
        const entry: RegionEntry = { config, revision: created.revision };
        expect(await c.getRegion('r1')).toEqual(entry);
        expect(await c.getRegions()).toEqual([entry]);
        expect(await c.getRegion('nope')).toBeUndefined();
        // Creating again is a compare-and-set failure, with the current entry.
        expect(await c.compareAndSetRegion(0, config)).toEqual({ ok: false, current: entry });
      });

      it('updates with the current revision and epoch + 1; a stale revision answers {ok: false, current}', async () => {
        const a = env.newClient();
        const b = env.newClient();
        const created = await a.compareAndSetRegion(0, regionConfig('r1', 1, 'n1', ['n2']));
        if (!created.ok) throw new Error('creation failed');
        const v2 = regionConfig('r1', 2, 'n2', [], { state: 'reconfiguring' });
        const updated = await b.compareAndSetRegion(created.revision, v2);
        if (!updated.ok) throw new Error('update failed');
        expect(updated.revision).toBeGreaterThan(created.revision);

        // A second controller still holding the first revision loses, and learns the current entry.
        const stale = await a.compareAndSetRegion(created.revision, regionConfig('r1', 2, 'n1', ['n3']));
        expect(stale).toEqual({ ok: false, current: { config: v2, revision: updated.revision } });
        expect(await a.compareAndSetRegion(updated.revision + 1000, regionConfig('r1', 3, 'n1', []))).toEqual(
          {
            ok: false,
            current: { config: v2, revision: updated.revision },
          },
        );
        // An update of a region that does not exist.
        expect(await a.compareAndSetRegion(created.revision, regionConfig('r9', 2, 'n1', []))).toEqual({
          ok: false,
          current: undefined,
        });
        expect(await a.getRegion('r1')).toEqual({ config: v2, revision: updated.revision });
      });

      it('enforces the epoch rule with InvalidConfigurationError (after the revision check)', async () => {
        const c = env.newClient();
        await expect(c.compareAndSetRegion(0, regionConfig('r1', 2, 'n1', []))).rejects.toBeInstanceOf(
          InvalidConfigurationError,
        );
        expect(await c.getRegion('r1')).toBeUndefined();

        const created = await c.compareAndSetRegion(0, regionConfig('r1', 1, 'n1', []));
        if (!created.ok) throw new Error('creation failed');
        for (const epoch of [1, 3, 0]) {
          await expect(
            c.compareAndSetRegion(created.revision, regionConfig('r1', epoch, 'n1', [])),
          ).rejects.toBeInstanceOf(InvalidConfigurationError);
        }
        expect((await c.getRegion('r1'))?.revision).toBe(created.revision);
        // With a stale revision the answer is the compare-and-set failure, whatever the epoch.
        expect(await c.compareAndSetRegion(0, regionConfig('r1', 5, 'n1', []))).toMatchObject({ ok: false });
      });

      it('rejects malformed configurations with InvalidConfigurationError and bad revisions with InvalidArgumentError', async () => {
        const c = env.newClient();
        const malformed: RegionConfig[] = [
          regionConfig('r1', 1, 'n1', ['n2', 'n1']),
          regionConfig('r1', 1, 'n1', ['n2', 'n2']),
          regionConfig('r1', 1, 'n1', [], { minKey: 'b', maxKey: 'a' }),
          regionConfig('r1', 1, 'n1', [], { minKey: 'a', maxKey: 'a' }),
          regionConfig('r1', 1, '', []),
          regionConfig('', 1, 'n1', []),
        ];
        for (const config of malformed) {
          await expect(c.compareAndSetRegion(0, config)).rejects.toBeInstanceOf(InvalidConfigurationError);
        }
        await expect(c.compareAndSetRegion(-1, regionConfig('r1', 1, 'n1', []))).rejects.toBeInstanceOf(
          InvalidArgumentError,
        );
        expect(await c.getRegions()).toEqual([]);
        // Unbounded and empty-start ranges are fine.
        expect(
          await c.compareAndSetRegion(0, regionConfig('r1', 1, 'n1', ['n2'], { minKey: '' })),
        ).toMatchObject({
          ok: true,
        });
      });

      it('stores a copy: changing the caller’s object afterwards changes nothing', async () => {
        const c = env.newClient();
        const config = regionConfig('r1', 1, 'n1', ['n2']);
        await c.compareAndSetRegion(0, config);
        config.backups.push('n3');
        config.primary = 'nX';
        const entry = await c.getRegion('r1');
        expect(entry?.config).toEqual(regionConfig('r1', 1, 'n1', ['n2']));
        entry?.config.backups.push('n4');
        expect((await c.getRegion('r1'))?.config.backups).toEqual(['n2']);
      });

      it('revisions are global: every write, to any region, gets a higher revision', async () => {
        const c = env.newClient();
        const ra = await c.compareAndSetRegion(0, regionConfig('ra', 1, 'n1', []));
        const rb = await c.compareAndSetRegion(0, regionConfig('rb', 1, 'n1', []));
        if (!ra.ok || !rb.ok) throw new Error('creation failed');
        expect(rb.revision).toBeGreaterThan(ra.revision);
        const ra2 = await c.compareAndSetRegion(ra.revision, regionConfig('ra', 2, 'n2', []));
        if (!ra2.ok) throw new Error('update failed');
        expect(ra2.revision).toBeGreaterThan(rb.revision);
        expect((await c.getRegions()).map((e) => [e.config.regionId, e.revision])).toEqual([
          ['ra', ra2.revision],
          ['rb', rb.revision],
        ]);
      });

      it('watchRegions: current entries first, then every change in revision order; watchers agree', async () => {
        const writer = env.newClient();
        const revisions = new Map<string, number>();
        const write = async (config: RegionConfig): Promise<number> => {
          const result = await writer.compareAndSetRegion(revisions.get(config.regionId) ?? 0, config);
          if (!result.ok) throw new Error(`write of ${config.regionId}@${config.epoch} failed`);
          revisions.set(config.regionId, result.revision);
          return result.revision;
        };
        await write(regionConfig('ra', 1, 'n1', ['n2']));
        await write(regionConfig('rb', 1, 'n2', ['n3']));

        const w1 = record<RegionEvent>((h) => env.newClient().watchRegions(h));
        const w2 = record<RegionEvent>((h) => env.newClient().watchRegions(h));
        await eventually(
          env,
          () => w1.events.length >= 2 && w2.events.length >= 2,
          quickMs,
          'the current entries',
        );
        const initial = (events: RegionEvent[]) =>
          events
            .slice(0, 2)
            .map((e) => (e.kind === 'put' ? `${e.entry.config.regionId}@${e.entry.revision}` : 'delete'))
            .sort();
        expect(initial(w1.events)).toEqual([`ra@${revisions.get('ra')}`, `rb@${revisions.get('rb')}`]);
        expect(initial(w2.events)).toEqual(initial(w1.events));

        const changes = [
          regionConfig('ra', 2, 'n2', []),
          regionConfig('rc', 1, 'n3', ['n1'], { minKey: 'x' }),
          regionConfig('rb', 2, 'n3', ['n2']),
          regionConfig('ra', 3, 'n2', ['n1'], { joining: ['n3'], state: 'reconfiguring' }),
        ];
        const expected: RegionEvent[] = [];
        for (const config of changes) {
          const revision = await write(config);
          expected.push({ kind: 'put', entry: { config, revision } });
        }
        await eventually(env, () => w1.events.length >= 6 && w2.events.length >= 6, quickMs, 'the changes');
        expect(w1.events.slice(2)).toEqual(expected);
        expect(w2.events).toEqual(w1.events);

        // A late watcher sees only the current state.
        const late = record<RegionEvent>((h) => env.newClient().watchRegions(h));
        await eventually(env, () => late.events.length >= 3, quickMs, 'the late watcher');
        await env.settle();
        expect(
          late.events
            .map((e) => (e.kind === 'put' ? `${e.entry.config.regionId}@${e.entry.config.epoch}` : 'delete'))
            .sort(),
        ).toEqual(['ra@3', 'rb@2', 'rc@1']);

        w2.unsubscribe();
        await write(regionConfig('rc', 2, 'n1', []));
        await eventually(env, () => w1.events.length >= 7, quickMs, 'the last change');
        await env.settle();
        expect(w2.events).toHaveLength(6);
      });
    });

    describe('election', () => {
      it('one leader at a time; resign hands over to the next candidate; observeLeader follows', async () => {
        const a = env.newClient();
        const b = env.newClient();
        const observer = record<string | undefined>((h) => env.newClient().observeLeader(h));
        await eventually(env, () => observer.events.length >= 1, quickMs, 'the current (no) leader');
        expect(observer.events).toEqual([undefined]);

        const ma = await a.join(nodeInfo('A'), ttlMs);
        const mb = await b.join(nodeInfo('B'), ttlMs);
        const leaderA = await resolvedWithin(env, a.campaign(ma), quickMs, 'A to lead');
        expect(leaderA.nodeId).toBe('A');
        const campaignB = track(b.campaign(mb));
        await env.advance(ttlMs * 2);
        await env.settle();
        expect(campaignB.outcome.state).toBe('pending');
        await eventually(env, () => observer.events.length >= 2, quickMs, 'the leader A');
        expect(observer.events).toEqual([undefined, 'A']);

        const lostA = track(leaderA.lost);
        await env.settle();
        expect(lostA.outcome.state).toBe('pending');
        await leaderA.resign();
        await eventually(env, () => lostA.outcome.state === 'resolved', quickMs, 'A’s leadership to end');
        await eventually(env, () => campaignB.outcome.state !== 'pending', quickMs, 'B to lead');
        const outcome = campaignB.outcome;
        if (outcome.state !== 'resolved') throw new Error('B’s campaign failed');
        expect(outcome.value.nodeId).toBe('B');
        await eventually(env, () => observer.events.length >= 3, quickMs, 'the leader B');
        expect(observer.events).toEqual([undefined, 'A', 'B']);
        await leaderA.resign(); // idempotent

        // A late observer gets the current leader first.
        const late = record<string | undefined>((h) => env.newClient().observeLeader(h));
        await eventually(env, () => late.events.length >= 1, quickMs, 'the late observer');
        expect(late.events).toEqual(['B']);

        await outcome.value.resign();
        await eventually(env, () => observer.events.length >= 4, quickMs, 'no leader');
        expect(observer.events).toEqual([undefined, 'A', 'B', undefined]);
      });

      it('candidates are served first come, first served, also when the leader’s lease runs out', async () => {
        const [a, b, c] = [env.newClient(), env.newClient(), env.newClient()];
        const ma = await a.join(nodeInfo('A'), ttlMs);
        const mb = await b.join(nodeInfo('B'), ttlMs);
        const mc = await c.join(nodeInfo('C'), ttlMs);
        const leaderA = await resolvedWithin(env, a.campaign(ma), quickMs, 'A to lead');
        const campaignB = track(b.campaign(mb));
        await env.settle();
        const campaignC = track(c.campaign(mc));
        await env.settle();

        // A's process stops: its lease runs out and B, first in line, leads — not before A's deadline.
        await a.close();
        const deadlineA = ma.validUntilMs(0);
        await eventually(env, () => campaignB.outcome.state !== 'pending', expiryMs, 'B to lead');
        expect(env.now()).toBeGreaterThanOrEqual(deadlineA);
        const outcomeB = campaignB.outcome;
        if (outcomeB.state !== 'resolved') throw new Error('B’s campaign failed');
        expect(outcomeB.value.nodeId).toBe('B');
        await expect(leaderA.lost).resolves.toBeUndefined();
        expect(campaignC.outcome.state).toBe('pending');

        await outcomeB.value.resign();
        await eventually(env, () => campaignC.outcome.state !== 'pending', quickMs, 'C to lead');
        expect(campaignC.outcome).toMatchObject({ state: 'resolved', value: { nodeId: 'C' } });
      });

      it('a leader whose lease is revoked loses leadership and the next candidate leads', async () => {
        const a = env.newClient();
        const b = env.newClient();
        const ma = await a.join(nodeInfo('A'), ttlMs);
        const mb = await b.join(nodeInfo('B'), ttlMs);
        const leaderA = await resolvedWithin(env, a.campaign(ma), quickMs, 'A to lead');
        const lostA = track(leaderA.lost);
        const campaignB = track(b.campaign(mb));
        await env.settle();
        await env.revokeLease(ma);
        await eventually(env, () => lostA.outcome.state === 'resolved', expiryMs, 'A’s leadership to end');
        await eventually(env, () => campaignB.outcome.state !== 'pending', expiryMs, 'B to lead');
        expect(campaignB.outcome).toMatchObject({ state: 'resolved', value: { nodeId: 'B' } });
      });

      it('campaigning with a membership whose lease is gone rejects with LeaseExpiredError', async () => {
        const c = env.newClient();
        const m = await c.join(nodeInfo('A'), ttlMs);
        await m.leave();
        await expect(c.campaign(m)).rejects.toBeInstanceOf(LeaseExpiredError);
      });

      it('a waiting candidate whose lease ends never leads', async () => {
        const a = env.newClient();
        const b = env.newClient();
        const ma = await a.join(nodeInfo('A'), ttlMs);
        const mb = await b.join(nodeInfo('B'), ttlMs);
        const leaderA = await resolvedWithin(env, a.campaign(ma), quickMs, 'A to lead');
        const campaignB = track(b.campaign(mb));
        await env.settle();
        await env.revokeLease(mb);
        await eventually(env, () => campaignB.outcome.state !== 'pending', expiryMs, 'B’s campaign to fail');
        expect(campaignB.outcome).toMatchObject({ state: 'rejected' });
        const outcome = campaignB.outcome;
        if (outcome.state === 'rejected') expect(outcome.error).toBeInstanceOf(LeaseExpiredError);
        await leaderA.resign();
        const observer = record<string | undefined>((h) => env.newClient().observeLeader(h));
        await eventually(env, () => observer.events.length >= 1, quickMs, 'the leader');
        expect(observer.events).toEqual([undefined]);
      });
    });

    describe('suspect reports', () => {
      it('watchSuspects delivers current reports, then new ones; clearSuspects clears one region', async () => {
        const c = env.newClient();
        const report = (regionId: string, suspect: string, reporter: string): SuspectReport => ({
          regionId,
          epoch: 3,
          suspectNodeId: suspect,
          reporterNodeId: reporter,
          reason: 'replication write failed',
        });
        await c.reportSuspect(report('r1', 'n2', 'n1'));
        await c.reportSuspect(report('r2', 'n3', 'n1'));
        const watch = record<SuspectReport>((h) => env.newClient().watchSuspects(h));
        await eventually(env, () => watch.events.length >= 2, quickMs, 'the current reports');
        expect(watch.events.map(suspectKey).sort()).toEqual(['r1/n2/n1', 'r2/n3/n1']);
        expect(watch.events.find((r) => r.regionId === 'r1')).toEqual(report('r1', 'n2', 'n1'));

        await c.reportSuspect(report('r1', 'n2', 'n4'));
        await eventually(env, () => watch.events.length >= 3, quickMs, 'a new report');
        expect(watch.events[2]).toEqual(report('r1', 'n2', 'n4'));

        await c.clearSuspects('r1');
        const after = record<SuspectReport>((h) => env.newClient().watchSuspects(h));
        await eventually(env, () => after.events.length >= 1, quickMs, 'the reports left');
        await env.settle();
        expect(after.events).toEqual([report('r2', 'n3', 'n1')]);
        await expect(c.reportSuspect({ ...report('r1', 'n2', 'n1'), regionId: '' })).rejects.toBeInstanceOf(
          InvalidArgumentError,
        );
      });

      it('a caught-up report is a report of its own kind: it neither replaces nor is replaced by a suspect one', async () => {
        const c = env.newClient();
        const base: SuspectReport = {
          regionId: 'r9',
          epoch: 2,
          suspectNodeId: 'n4',
          reporterNodeId: 'n1',
          reason: 'x',
        };
        await c.reportSuspect(base);
        await c.reportSuspect({ ...base, kind: 'caught-up', reason: 'caught up' });
        const watch = record<SuspectReport>((h) => env.newClient().watchSuspects(h));
        await eventually(env, () => watch.events.length >= 2, quickMs, 'both reports');
        expect(watch.events.map((r) => r.kind ?? 'suspect').sort()).toEqual(['caught-up', 'suspect']);
        await expect(c.reportSuspect({ ...base, kind: 'bogus' as 'suspect' })).rejects.toBeInstanceOf(
          InvalidArgumentError,
        );
      });
    });

    describe('backup progress', () => {
      it('keeps the latest position per region and node; rejects malformed reports', async () => {
        const c = env.newClient();
        const at = (nodeId: string, seq: number, usedBytes: number, regionId = 'r1') => ({
          regionId,
          nodeId,
          epoch: 2,
          seq,
          usedBytes,
        });
        expect(await c.regionProgress('r1')).toEqual([]);
        await c.reportProgress(at('n3', 4, 100));
        await c.reportProgress(at('n2', 5, 10));
        await c.reportProgress(at('n3', 6, 0));
        await c.reportProgress(at('n2', 9, 9, 'r2'));
        expect(await env.newClient().regionProgress('r1')).toEqual([at('n2', 5, 10), at('n3', 6, 0)]);
        await expect(c.reportProgress({ ...at('n2', 1, 1), nodeId: '' })).rejects.toBeInstanceOf(
          InvalidArgumentError,
        );
        await expect(c.reportProgress({ ...at('n2', 1, 1), usedBytes: -1 })).rejects.toBeInstanceOf(
          InvalidArgumentError,
        );
        await expect(c.regionProgress('')).rejects.toBeInstanceOf(InvalidArgumentError);
      });
    });

    describe('close', () => {
      it('after close calls reject, watches stop, campaigns fail, leaderships end; others carry on', async () => {
        const leaderClient = env.newClient();
        const c = env.newClient();
        const other = env.newClient();
        const mLeader = await leaderClient.join(nodeInfo('L'), ttlMs);
        const m = await c.join(nodeInfo('n1'), ttlMs);
        const leadership: Leadership = await resolvedWithin(
          env,
          leaderClient.campaign(mLeader),
          quickMs,
          'L to lead',
        );
        const campaign = track(c.campaign(m));
        const regions = record<RegionEvent>((h) => c.watchRegions(h));
        await env.settle();

        await c.close();
        await c.close();
        await eventually(env, () => campaign.outcome.state === 'rejected', quickMs, 'the campaign to fail');
        const outcome = campaign.outcome;
        if (outcome.state === 'rejected') expect(outcome.error).toBeInstanceOf(CoordinatorUnavailableError);

        const calls: Array<[string, () => Promise<unknown>]> = [
          ['join', () => c.join(nodeInfo('n9'), ttlMs)],
          ['members', () => c.members()],
          ['getRegions', () => c.getRegions()],
          ['getRegion', () => c.getRegion('r1')],
          ['compareAndSetRegion', () => c.compareAndSetRegion(0, regionConfig('r1', 1, 'n1', []))],
          ['campaign', () => c.campaign(m)],
          [
            'reportSuspect',
            () =>
              c.reportSuspect({
                regionId: 'r1',
                epoch: 1,
                suspectNodeId: 'a',
                reporterNodeId: 'b',
                reason: '',
              }),
          ],
          ['clearSuspects', () => c.clearSuspects('r1')],
        ];
        for (const [what, call] of calls) {
          await expect(call().then(() => what)).rejects.toBeInstanceOf(CoordinatorUnavailableError);
        }
        expect(() => c.watchMembers(() => {})).toThrow(CoordinatorUnavailableError);
        expect(() => c.watchRegions(() => {})).toThrow(CoordinatorUnavailableError);
        expect(() => c.observeLeader(() => {})).toThrow(CoordinatorUnavailableError);
        expect(() => c.watchSuspects(() => {})).toThrow(CoordinatorUnavailableError);

        // Other clients carry on; the closed client's watch hears nothing more.
        expect(await other.compareAndSetRegion(0, regionConfig('r1', 1, 'n1', []))).toMatchObject({
          ok: true,
        });
        await env.settle();
        await env.advance(env.stepMs);
        expect(regions.events).toEqual([]);

        // Closing the leader's client ends its leadership locally at once.
        await leaderClient.close();
        await expect(leadership.lost).resolves.toBeUndefined();
      });
    });
  });
}
