/**
 * EmbeddedCoordinator: the Coordinator port (types.ts) in process, with etcd's semantics, for tests
 * and the simulator. `new EmbeddedCoordinator({ clock })` is the "server"; `client()` hands out one
 * `Coordinator` per node or process, and all clients of one server share its state.
 *
 * Revisions. As in etcd's store, one global revision counts every write (join, lease end, region
 * change, campaign, resign, suspect report or clear). A region entry's `revision` is the revision of
 * the write that last changed it (etcd's mod revision), so revisions of different regions interleave
 * and are never consecutive in general. A lease ending removes every key attached to it (member key,
 * election key) in one revision, like etcd's lease revoke.
 *
 * Leases. `join` grants a lease of `leaseTtlMs` on the injected clock and puts the member's key under
 * it (a second join of the same nodeId re-attaches the key to the newer lease, like an etcd put).
 * The joining client sends a keepalive every ⌊leaseTtlMs/3⌋ ms of its own clock (the client's
 * `clock` option; the server's by default); the server acknowledges it synchronously and the
 * membership records the client clock's reading when it was sent. The server drops the lease when
 * the server's clock reaches last keepalive + TTL: the member key goes (watchers see `leave`), its
 * election key goes (the next candidate leads), and the holder's `onLost` handlers run once — a
 * voluntary `leave()` is not a loss. The holder must not wait for that event (DESIGN §8): it fences
 * itself at `validUntilMs(margin) = lastKeepaliveSentAtMs + leaseTtlMs − margin` on its own clock.
 * With one clock that is never later than the server's expiry, because a keepalive is sent no later
 * than the server sees it; with a client clock that runs slow or loses time, the margin must cover
 * what it can lose over a TTL (NodeRuntime's lease bounds, docs/failure-model.md).
 *
 * Election. etcd's election recipe: each campaign puts a key under the candidate's lease; the
 * candidate whose key is oldest leads, so candidates are served first come, first served.
 * Leadership ends with `resign()` or with the lease; the next candidate in line leads at once.
 *
 * Watches and notifications. Every watch delivers the current state first (a snapshot taken when
 * the watch is created), then every change in revision order. Deliveries — watch events, elected,
 * leadership lost, lease lost — never run inside the call that caused them: they go into one FIFO
 * drained on a microtask, so a run is deterministic for a given sequence of calls and clock moves.
 * A partitioned client's deliveries are held back in order and released when the partition heals,
 * as an etcd watch resumes from its last revision; nothing ever reaches a closed client.
 *
 * Faults (`client.faults`): `partition(on)` makes every call reject with CoordinatorUnavailableError,
 * holds back deliveries and fails keepalives (so the lease runs out server-side if the partition
 * outlasts the TTL, and the node learns it only from `validUntilMs` until it heals);
 * `pauseKeepalives(on)` models a stopped process; `stall(on)` a stalled one (deliveries held, calls
 * delayed until it ends — late, never refused); `loseNextReply()` applies the next call but rejects
 * it with CoordinatorUnavailableError, so callers' read-back logic can be exercised (DESIGN §8). On the
 * server, `expireLease` ends a lease at once (an operator revoke, or a shortcut for the simulator).
 */
import { assert } from '../src/assert.js';
import type { Clock, TimerHandle } from '../src/clock/index.js';
import {
  CoordinatorUnavailableError,
  InvalidArgumentError,
  InvalidConfigurationError,
  LeaseExpiredError,
} from '../src/errors.js';
import { NO_PROBE, type Probe } from '../src/probe.js';
import type {
  BackupProgress,
  CasResult,
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
} from './types.js';
import {
  copyConfig,
  copyEntry,
  copyNodeInfo,
  copyReport,
  nonEmptyString,
  validateNodeInfo,
  validateProgress,
  validateRegionConfig,
  validateReport,
} from './validate.js';

export interface EmbeddedCoordinatorOptions {
  clock: Clock;
  /** Cluster name (etcd keys live under `/talos/<cluster>/`); informational here. Default "default". */
  cluster?: string;
  /** Traces every lease granted and ended (`lease`); the simulator's. Default none (src/probe.ts). */
  probe?: Probe;
}

export interface EmbeddedClientOptions {
  /** Shown in error messages; default `client-<n>`. */
  name?: string;
  /**
   * The client process's own clock (default: the server's). Its keepalives are timed on it and
   * their send times, hence `lastKeepaliveSentAtMs` and `validUntilMs`, are its readings: a node
   * fences itself on its own clock while the server expires leases on the server's (the simulator's
   * per-node clocks, docs/failure-model.md).
   */
  clock?: Clock;
}

/** Fault injection for one client (tests, simulator). */
export interface EmbeddedClientFaults {
  /**
   * Cuts the client off the coordinator (on) or heals it (off). While cut off, every call rejects with
   * CoordinatorUnavailableError, watches and other notifications are held back, keepalives fail.
   * Healing releases what was held back, in order.
   */
  partition(on: boolean): void;
  readonly partitioned: boolean;
  /** Stops (on) or resumes (off) sending keepalives, as a paused process would; calls still work. */
  pauseKeepalives(on: boolean): void;
  readonly keepalivesPaused: boolean;
  /** The next call is applied on the server but rejects with CoordinatorUnavailableError. */
  loseNextReply(): void;
  /**
   * A thread stall of the client's process (on) or its end (off): deliveries are held back as in
   * a partition, and calls wait until the stall ends before they reach the server (nothing is
   * refused: everything happens late). Keepalives stop only if the client's clock holds its timers
   * too (NodeClock.hold). With `sink`, every held delivery and every call made during the stall is
   * handed to it instead (to run when the sink runs it: the node's stall queue, in arrival order
   * with its other inputs), and the end of the stall has nothing left to release.
   */
  stall(on: boolean, sink?: (run: () => void) => void): void;
  readonly stalled: boolean;
}

/** One node's or process's connection to an EmbeddedCoordinator. */
export interface EmbeddedCoordinatorClient extends Coordinator {
  readonly name: string;
  readonly faults: EmbeddedClientFaults;
  readonly closed: boolean;
}

/** The server's state, for assertions in tests and the simulator's checkers. */
export interface EmbeddedCoordinatorSnapshot {
  revision: number;
  /** Sorted by nodeId. */
  members: NodeInfo[];
  leaderNodeId: string | undefined;
  /** Election candidates in line, the leader first. */
  candidateNodeIds: string[];
  liveLeaseCount: number;
  /** Sorted by regionId. */
  regions: RegionEntry[];
  /** Sorted by (regionId, suspectNodeId, reporterNodeId). */
  suspects: SuspectReport[];
}

// ───────────────────────────────────────── internals ─────────────────────────────────────────

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (reason: unknown) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A delivery to one client: run only while the client is reachable, dropped once it is closed. */
interface Ticket {
  client: Client;
  run: () => void;
}

interface WatchRecord<E> {
  client: Client;
  handler: (event: E) => void;
  active: boolean;
}

interface LeaseRecord {
  leaseId: number;
  nodeId: string;
  ttlMs: number;
  owner: Client;
  expiresAtMs: number;
  timer: TimerHandle | undefined;
  /** Revision of the member entry this lease created (NodeInfo.joinedRevision). */
  joinedRevision: number;
  /** Set by the membership that holds the lease; run (as a delivery to `owner`) when the lease is lost. */
  notifyLost: () => void;
}

interface MemberRecord {
  info: NodeInfo;
  leaseId: number;
}

interface CandidateRecord {
  candidateId: number;
  nodeId: string;
  leaseId: number;
  /** The client that campaigned: it is told when the candidate leads or ends. */
  client: Client;
  createRevision: number;
  state: 'waiting' | 'leader' | 'ended';
  /** The pending campaign() of `client`; undefined once answered (or when its reply was lost). */
  waiter: Deferred<Leadership> | undefined;
  leadership: EmbeddedLeadership | undefined;
}

interface SuspectRecord {
  report: SuspectReport;
  revision: number;
}

type LeaseEndReason = 'expired' | 'left';

const suspectKey = (r: SuspectReport): string =>
  `${r.regionId}\u0000${r.suspectNodeId}\u0000${r.reporterNodeId}\u0000${r.kind ?? 'suspect'}`;

/** The shared state: what an etcd cluster holds, plus the delivery FIFO. */
class Server {
  revision = 0;
  private nextLeaseId = 1;
  private nextCandidateId = 1;
  private nextClientNumber = 1;
  private readonly leases = new Map<number, LeaseRecord>();
  private readonly members = new Map<string, MemberRecord>();
  private readonly regions = new Map<string, RegionEntry>();
  private readonly suspects = new Map<string, SuspectRecord>();
  /** Latest BackupProgress per region and node. */
  private readonly progress = new Map<string, BackupProgress>();
  /** Oldest election key first: the head leads. */
  private candidates: CandidateRecord[] = [];
  private leader: CandidateRecord | undefined;
  private observedLeaderNodeId: string | undefined;

  private readonly memberWatches = new Set<WatchRecord<MemberEvent>>();
  private readonly regionWatches = new Set<WatchRecord<RegionEvent>>();
  private readonly leaderWatches = new Set<WatchRecord<string | undefined>>();
  private readonly suspectWatches = new Set<WatchRecord<SuspectReport>>();

  private outbox: Array<Ticket | undefined> = [];
  private outboxHead = 0;
  private drainScheduled = false;

  constructor(
    readonly clock: Clock,
    readonly cluster: string,
    readonly probe: Probe,
  ) {}

  clientName(requested: string | undefined): string {
    const n = this.nextClientNumber++;
    return requested ?? `client-${n}`;
  }

  private bump(): number {
    this.revision += 1;
    return this.revision;
  }

  // ── deliveries ──

  post(client: Client, run: () => void): void {
    this.outbox.push({ client, run });
    if (!this.drainScheduled) {
      this.drainScheduled = true;
      queueMicrotask(() => this.drain());
    }
  }

  private drain(): void {
    const errors: unknown[] = [];
    while (this.outboxHead < this.outbox.length) {
      const ticket = this.outbox[this.outboxHead];
      this.outbox[this.outboxHead] = undefined;
      this.outboxHead += 1;
      assert(ticket !== undefined, 'a delivery is taken from the outbox once');
      if (ticket.client.closed) continue;
      const sink = ticket.client.stallSink;
      if (sink !== undefined && !ticket.client.partitioned) {
        // Runs when the stalled process gets to it; parked if it is cut off by then.
        sink(() => {
          if (ticket.client.closed) return;
          if (ticket.client.partitioned) ticket.client.parked.push(ticket);
          else ticket.run();
        });
        continue;
      }
      if (ticket.client.partitioned || ticket.client.stalled) {
        ticket.client.parked.push(ticket);
        continue;
      }
      try {
        ticket.run();
      } catch (err) {
        errors.push(err);
      }
    }
    this.outbox = [];
    this.outboxHead = 0;
    this.drainScheduled = false;
    // A throwing handler is a bug in the caller: surface it, after every other delivery ran.
    for (const err of errors) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }

  /** Releases a healed client's held-back deliveries ahead of everything queued after them. */
  release(client: Client): void {
    if (client.parked.length === 0) return;
    const pending = this.outbox.slice(this.outboxHead).filter((t): t is Ticket => t !== undefined);
    this.outbox = [...client.parked, ...pending];
    this.outboxHead = 0;
    client.parked = [];
    if (!this.drainScheduled) {
      this.drainScheduled = true;
      queueMicrotask(() => this.drain());
    }
  }

  private emit<E>(watches: Set<WatchRecord<E>>, makeEvent: () => E): void {
    for (const watch of watches) {
      const event = makeEvent();
      this.post(watch.client, () => {
        if (watch.active) watch.handler(event);
      });
    }
  }

  private addWatch<E>(watches: Set<WatchRecord<E>>, watch: WatchRecord<E>, initial: E[]): Unsubscribe {
    for (const event of initial) {
      this.post(watch.client, () => {
        if (watch.active) watch.handler(event);
      });
    }
    watches.add(watch);
    return () => {
      watch.active = false;
      watches.delete(watch);
    };
  }

  watchMembers(watch: WatchRecord<MemberEvent>): Unsubscribe {
    const initial = this.sortedMembers().map((member): MemberEvent => ({ kind: 'join', member }));
    return this.addWatch(this.memberWatches, watch, initial);
  }

  watchRegions(watch: WatchRecord<RegionEvent>): Unsubscribe {
    const initial = this.sortedRegions().map((entry): RegionEvent => ({ kind: 'put', entry }));
    return this.addWatch(this.regionWatches, watch, initial);
  }

  observeLeader(watch: WatchRecord<string | undefined>): Unsubscribe {
    return this.addWatch(this.leaderWatches, watch, [this.observedLeaderNodeId]);
  }

  watchSuspects(watch: WatchRecord<SuspectReport>): Unsubscribe {
    return this.addWatch(this.suspectWatches, watch, this.sortedSuspects());
  }

  // ── leases and members ──

  grantLease(owner: Client, member: NodeInfo, ttlMs: number): LeaseRecord {
    const now = this.clock.now();
    const lease: LeaseRecord = {
      leaseId: this.nextLeaseId++,
      nodeId: member.nodeId,
      ttlMs,
      owner,
      expiresAtMs: now + ttlMs,
      timer: undefined,
      joinedRevision: 0,
      notifyLost: () => {},
    };
    this.leases.set(lease.leaseId, lease);
    this.probe.trace?.({ kind: 'lease', node: member.nodeId, leaseId: lease.leaseId, live: true });
    this.armLeaseTimer(lease);
    const { joinedRevision: _ignored, ...given } = member;
    lease.joinedRevision = this.bump();
    const info = copyNodeInfo({ ...given, joinedRevision: lease.joinedRevision });
    this.members.set(member.nodeId, { info, leaseId: lease.leaseId });
    this.emit(this.memberWatches, (): MemberEvent => ({ kind: 'join', member: copyNodeInfo(info) }));
    return lease;
  }

  private armLeaseTimer(lease: LeaseRecord): void {
    lease.timer = this.clock.setTimeout(() => this.onLeaseTimer(lease), lease.expiresAtMs - this.clock.now());
  }

  private onLeaseTimer(lease: LeaseRecord): void {
    lease.timer = undefined;
    if (this.leases.get(lease.leaseId) !== lease) return;
    // Keepalives move the deadline without rescheduling: re-arm lazily when it moved.
    if (this.clock.now() < lease.expiresAtMs) {
      this.armLeaseTimer(lease);
      return;
    }
    this.endLease(lease, 'expired');
  }

  /** A keepalive sent now; false when the lease is gone (or ran out before this keepalive arrived). */
  keepAlive(leaseId: number): boolean {
    const lease = this.leases.get(leaseId);
    if (lease === undefined) return false;
    const now = this.clock.now();
    if (now >= lease.expiresAtMs) {
      // A late timer (SystemClock): the lease is already over.
      this.endLease(lease, 'expired');
      return false;
    }
    lease.expiresAtMs = now + lease.ttlMs;
    return true;
  }

  /** Ends a lease; its keys go in one revision. 'left' is the holder's own revoke (no onLost). */
  endLease(lease: LeaseRecord, reason: LeaseEndReason): void {
    assert(this.leases.get(lease.leaseId) === lease, () => `lease ${lease.leaseId} ends once`);
    this.leases.delete(lease.leaseId);
    this.probe.trace?.({ kind: 'lease', node: lease.nodeId, leaseId: lease.leaseId, live: false });
    if (lease.timer !== undefined) this.clock.clearTimeout(lease.timer);
    lease.timer = undefined;
    // Every key attached to the lease goes in one revision (none when nothing was attached).
    let bumped = false;
    const bumpOnce = (): void => {
      if (!bumped) this.bump();
      bumped = true;
    };
    const member = this.members.get(lease.nodeId);
    if (member !== undefined && member.leaseId === lease.leaseId) {
      bumpOnce();
      this.members.delete(lease.nodeId);
      this.emit(this.memberWatches, (): MemberEvent => ({ kind: 'leave', nodeId: lease.nodeId }));
    }
    const attached = this.candidates.filter((c) => c.leaseId === lease.leaseId);
    if (attached.length > 0) {
      bumpOnce();
      this.removeCandidates(attached);
    }
    if (reason === 'expired') this.post(lease.owner, lease.notifyLost);
  }

  revokeLease(leaseId: number): void {
    const lease = this.leases.get(leaseId);
    if (lease !== undefined) this.endLease(lease, 'left');
  }

  /** Ends the lease of a membership, or the one holding `nodeId`'s member key, as if it expired. */
  expireLease(target: Membership | string): boolean {
    let leaseId: number | undefined;
    if (typeof target === 'string') leaseId = this.members.get(target)?.leaseId;
    else if (target instanceof EmbeddedMembership && target.server === this) leaseId = target.leaseId;
    else throw new InvalidArgumentError('expireLease: not a membership of this coordinator');
    const lease = leaseId === undefined ? undefined : this.leases.get(leaseId);
    if (lease === undefined) return false;
    this.endLease(lease, 'expired');
    return true;
  }

  sortedMembers(): NodeInfo[] {
    return [...this.members.keys()].sort().map((id) => copyNodeInfo(this.members.get(id)!.info));
  }

  // ── region map ──

  sortedRegions(): RegionEntry[] {
    return [...this.regions.keys()].sort().map((id) => copyEntry(this.regions.get(id)!));
  }

  getRegion(regionId: string): RegionEntry | undefined {
    const entry = this.regions.get(regionId);
    return entry === undefined ? undefined : copyEntry(entry);
  }

  compareAndSetRegion(expectedRevision: number, next: RegionConfig): CasResult {
    if (!Number.isSafeInteger(expectedRevision) || expectedRevision < 0) {
      throw new InvalidArgumentError(
        `expectedRevision must be a non-negative integer, got ${expectedRevision}`,
      );
    }
    validateRegionConfig(next);
    const current = this.regions.get(next.regionId);
    // A stale revision is a normal answer, checked before the epoch rule: the caller's epoch was
    // computed from the entry it read, so it is only meaningful against that same entry.
    if (current === undefined ? expectedRevision !== 0 : current.revision !== expectedRevision) {
      return { ok: false, current: current === undefined ? undefined : copyEntry(current) };
    }
    const requiredEpoch = current === undefined ? 1 : current.config.epoch + 1;
    if (next.epoch !== requiredEpoch) {
      throw new InvalidConfigurationError(
        `region ${next.regionId}: epoch must be ${requiredEpoch} (${current === undefined ? 'a creation' : `current epoch ${current.config.epoch} + 1`}), got ${next.epoch}`,
      );
    }
    const revision = this.bump();
    const entry: RegionEntry = { config: copyConfig(next), revision };
    assert(current === undefined || entry.config.epoch === current.config.epoch + 1, 'epochs advance by one');
    assert(current === undefined || revision > current.revision, 'revisions only grow');
    this.regions.set(next.regionId, entry);
    this.emit(this.regionWatches, (): RegionEvent => ({ kind: 'put', entry: copyEntry(entry) }));
    return { ok: true, revision };
  }

  // ── election ──

  campaign(client: Client, membership: EmbeddedMembership): CandidateRecord {
    if (!this.leases.has(membership.leaseId)) throw new LeaseExpiredError(membership.nodeId);
    if (this.candidates.some((c) => c.leaseId === membership.leaseId)) {
      throw new InvalidArgumentError(`node ${membership.nodeId} is already campaigning under this lease`);
    }
    const candidate: CandidateRecord = {
      candidateId: this.nextCandidateId++,
      nodeId: membership.nodeId,
      leaseId: membership.leaseId,
      client,
      createRevision: this.bump(),
      state: 'waiting',
      waiter: undefined,
      leadership: undefined,
    };
    this.candidates.push(candidate);
    this.electHead();
    return candidate;
  }

  resign(candidate: CandidateRecord): void {
    if (candidate.state === 'ended') return;
    this.bump();
    this.removeCandidates([candidate]);
  }

  private removeCandidates(gone: CandidateRecord[]): void {
    const goneSet = new Set(gone);
    this.candidates = this.candidates.filter((c) => !goneSet.has(c));
    for (const candidate of gone) {
      assert(candidate.state !== 'ended', 'a candidate ends once');
      candidate.state = 'ended';
      this.post(candidate.client, () => candidate.client.candidateEnded(candidate));
    }
    this.electHead();
  }

  /** The oldest candidate leads; called after every change to the line. */
  private electHead(): void {
    const head = this.candidates[0];
    if (head !== this.leader) {
      assert(this.leader === undefined || this.leader.state === 'ended', 'a leader leaves only by ending');
      this.leader = head;
      if (head !== undefined) {
        assert(head.state === 'waiting', 'a new leader was waiting in line');
        head.state = 'leader';
        this.post(head.client, () => head.client.candidateElected(head));
      }
      const leaderNodeId = head?.nodeId;
      if (leaderNodeId !== this.observedLeaderNodeId) {
        this.observedLeaderNodeId = leaderNodeId;
        this.emit(this.leaderWatches, () => leaderNodeId);
      }
    }
    assert(
      this.candidates.every((c, i) => (i === 0 ? c.state === 'leader' : c.state === 'waiting')),
      'exactly the head of the line leads',
    );
    assert(
      this.candidates.every((c, i) => i === 0 || this.candidates[i - 1]!.createRevision < c.createRevision),
      'candidates are in campaign order',
    );
    assert(
      this.candidates.every((c) => this.leases.has(c.leaseId)),
      'every candidate holds a live lease',
    );
  }

  // ── suspects ──

  reportSuspect(report: SuspectReport): void {
    validateReport(report);
    const stored = copyReport(report);
    const revision = this.bump();
    this.suspects.set(suspectKey(stored), { report: stored, revision });
    this.emit(this.suspectWatches, () => copyReport(stored));
  }

  clearSuspects(regionId: string): void {
    if (!nonEmptyString(regionId)) throw new InvalidArgumentError('regionId must be a non-empty string');
    const cleared = [...this.suspects].filter(([, record]) => record.report.regionId === regionId);
    if (cleared.length === 0) return;
    this.bump();
    for (const [key] of cleared) this.suspects.delete(key);
  }

  reportProgress(progress: BackupProgress): void {
    validateProgress(progress);
    this.progress.set(`${progress.regionId}\u0000${progress.nodeId}`, { ...progress });
  }

  regionProgress(regionId: string): BackupProgress[] {
    if (!nonEmptyString(regionId)) throw new InvalidArgumentError('regionId must be a non-empty string');
    return [...this.progress.values()]
      .filter((p) => p.regionId === regionId)
      .sort((a, b) => (a.nodeId < b.nodeId ? -1 : 1))
      .map((p) => ({ ...p }));
  }

  sortedSuspects(): SuspectReport[] {
    return [...this.suspects.keys()].sort().map((key) => copyReport(this.suspects.get(key)!.report));
  }

  snapshot(): EmbeddedCoordinatorSnapshot {
    return {
      revision: this.revision,
      members: this.sortedMembers(),
      leaderNodeId: this.leader?.nodeId,
      candidateNodeIds: this.candidates.map((c) => c.nodeId),
      liveLeaseCount: this.leases.size,
      regions: this.sortedRegions(),
      suspects: this.sortedSuspects(),
    };
  }
}

class EmbeddedMembership implements Membership {
  readonly nodeId: string;
  readonly leaseTtlMs: number;
  readonly joinedRevision: number;
  readonly leaseId: number;
  private readonly keepaliveIntervalMs: number;
  private lastAckedSentAtMs: number;
  /** When this client learned the membership is over (left or lost); caps validUntilMs. */
  private endedAtMs: number | undefined;
  private left = false;
  private revokeConfirmed = false;
  private lost = false;
  private lostHandlers: Array<() => void> = [];
  private keepaliveTimer: TimerHandle | undefined;
  private keepalivesStopped = false;

  constructor(
    private readonly client: Client,
    readonly server: Server,
    lease: LeaseRecord,
    grantedAtMs: number,
  ) {
    this.nodeId = lease.nodeId;
    this.leaseTtlMs = lease.ttlMs;
    this.leaseId = lease.leaseId;
    this.joinedRevision = lease.joinedRevision;
    this.keepaliveIntervalMs = Math.max(1, Math.floor(lease.ttlMs / 3));
    this.lastAckedSentAtMs = grantedAtMs;
  }

  lastKeepaliveSentAtMs(): number {
    return this.lastAckedSentAtMs;
  }

  validUntilMs(marginMs: number): number {
    if (!Number.isFinite(marginMs) || marginMs < 0) {
      throw new InvalidArgumentError(`marginMs must be a finite number ≥ 0, got ${marginMs}`);
    }
    const leaseEndMs = this.lastAckedSentAtMs + this.leaseTtlMs;
    return Math.min(leaseEndMs, this.endedAtMs ?? Number.POSITIVE_INFINITY) - marginMs;
  }

  onLost(handler: () => void): void {
    if (typeof handler !== 'function') throw new InvalidArgumentError('onLost needs a function');
    if (this.lost) this.server.post(this.client, handler);
    else this.lostHandlers.push(handler);
  }

  async leave(): Promise<void> {
    this.stopKeepalives();
    if (this.revokeConfirmed || this.lost) return;
    this.left = true;
    this.endedAtMs ??= this.client.clock.now();
    await this.client.call(
      'leave',
      () => this.server.revokeLease(this.leaseId),
      () => {
        this.revokeConfirmed = true;
      },
    );
  }

  /** Delivered by the server when the lease expired or was revoked by someone else. */
  markLost(): void {
    if (this.lost || this.left) return;
    this.lost = true;
    this.endedAtMs = this.client.clock.now();
    this.stopKeepalives();
    const handlers = this.lostHandlers;
    this.lostHandlers = [];
    for (const handler of handlers) this.server.post(this.client, handler);
  }

  startKeepalives(): void {
    assert(this.keepaliveTimer === undefined && !this.keepalivesStopped, 'keepalives start once');
    this.scheduleKeepalive();
  }

  stopKeepalives(): void {
    this.keepalivesStopped = true;
    if (this.keepaliveTimer !== undefined) this.client.clock.clearTimeout(this.keepaliveTimer);
    this.keepaliveTimer = undefined;
  }

  private scheduleKeepalive(): void {
    this.keepaliveTimer = this.client.clock.setTimeout(() => this.keepaliveTick(), this.keepaliveIntervalMs);
  }

  private keepaliveTick(): void {
    this.keepaliveTimer = undefined;
    if (this.keepalivesStopped) return;
    if (!this.client.partitioned && !this.client.keepalivesPaused) {
      const sentAtMs = this.client.clock.now();
      if (!this.server.keepAlive(this.leaseId)) {
        // The lease is gone; the server's lost notification is already on its way.
        this.stopKeepalives();
        return;
      }
      assert(sentAtMs >= this.lastAckedSentAtMs, 'keepalive times never go back');
      this.lastAckedSentAtMs = sentAtMs;
    }
    this.scheduleKeepalive();
  }
}

class EmbeddedLeadership implements Leadership {
  readonly nodeId: string;
  readonly lost: Promise<void>;
  private readonly lostDeferred = deferred<void>();
  private ended = false;

  constructor(
    private readonly client: Client,
    private readonly candidate: CandidateRecord,
  ) {
    this.nodeId = candidate.nodeId;
    this.lost = this.lostDeferred.promise;
  }

  markLost(): void {
    this.ended = true;
    this.lostDeferred.resolve();
  }

  async resign(): Promise<void> {
    if (this.ended) return;
    await this.client.call(
      'resign',
      () => this.client.server.resign(this.candidate),
      () => this.markLost(),
    );
  }
}

class Client implements EmbeddedCoordinatorClient {
  readonly faults: EmbeddedClientFaults;
  closed = false;
  partitioned = false;
  keepalivesPaused = false;
  stalled = false;
  /** Where held deliveries and calls go during a stall with a sink. */
  stallSink: ((run: () => void) => void) | undefined;
  /** Resolves when the current stall ends (calls made during it wait for it). */
  private stallEnded: Promise<void> | undefined;
  private endStall: (() => void) | undefined;
  /** Deliveries held back while partitioned, in order. */
  parked: Ticket[] = [];
  private loseReplyArmed = false;
  private readonly unsubscribes = new Set<Unsubscribe>();
  private readonly memberships = new Set<EmbeddedMembership>();
  private readonly candidates = new Set<CandidateRecord>();

  constructor(
    readonly server: Server,
    readonly name: string,
    readonly clock: Clock,
  ) {
    const client = this;
    this.faults = {
      partition(on: boolean): void {
        client.partitioned = on;
        if (!on && !client.stalled) client.server.release(client);
      },
      get partitioned(): boolean {
        return client.partitioned;
      },
      pauseKeepalives(on: boolean): void {
        client.keepalivesPaused = on;
      },
      get keepalivesPaused(): boolean {
        return client.keepalivesPaused;
      },
      loseNextReply(): void {
        client.loseReplyArmed = true;
      },
      stall(on: boolean, sink?: (run: () => void) => void): void {
        if (on === client.stalled) return;
        client.stalled = on;
        client.stallSink = on ? sink : undefined;
        if (on && sink !== undefined) return;
        if (on) {
          client.stallEnded = new Promise<void>((resolve) => {
            client.endStall = resolve;
          });
          return;
        }
        client.endStall?.();
        client.endStall = undefined;
        client.stallEnded = undefined;
        if (!client.partitioned) client.server.release(client);
      },
      get stalled(): boolean {
        return client.stalled;
      },
    };
  }

  /**
   * One request: `apply` runs on the server at once (the in-process round trip), then `reply` runs
   * with its result unless the reply is lost. Rejects when closed or partitioned without applying.
   */
  async call<T, R>(operation: string, apply: () => T, reply: (result: T) => R): Promise<Awaited<R>> {
    // A stalled process sends its request only when the stall ends (no await otherwise: a call
    // reaches the server synchronously, as before).
    // (With a sink, the request goes when the stalled process gets to it in its queue.)
    const sink = this.stallSink;
    if (sink !== undefined) await new Promise<void>((resolve) => sink(resolve));
    else while (this.stallEnded !== undefined) await this.stallEnded;
    this.checkReachable(operation);
    const result = apply();
    if (this.loseReplyArmed) {
      this.loseReplyArmed = false;
      throw new CoordinatorUnavailableError(
        `${this.name}: the reply to ${operation} was lost (it was applied)`,
      );
    }
    return await reply(result);
  }

  private checkReachable(operation: string): void {
    if (this.closed)
      throw new CoordinatorUnavailableError(`${this.name} is closed (${operation} after close())`);
    if (this.partitioned) {
      throw new CoordinatorUnavailableError(
        `${this.name} is partitioned from the coordinator (${operation})`,
      );
    }
  }

  private watch<E>(
    operation: string,
    handler: (event: E) => void,
    register: (watch: WatchRecord<E>) => Unsubscribe,
  ): Unsubscribe {
    if (this.closed)
      throw new CoordinatorUnavailableError(`${this.name} is closed (${operation} after close())`);
    if (typeof handler !== 'function')
      throw new InvalidArgumentError(`${operation} needs a handler function`);
    const unregister = register({ client: this, handler, active: true });
    const unsubscribe = (): void => {
      unregister();
      this.unsubscribes.delete(unsubscribe);
    };
    this.unsubscribes.add(unsubscribe);
    return unsubscribe;
  }

  join(member: NodeInfo, leaseTtlMs: number): Promise<Membership> {
    return this.call(
      'join',
      () => {
        validateNodeInfo(member);
        if (!Number.isSafeInteger(leaseTtlMs) || leaseTtlMs <= 0) {
          throw new InvalidArgumentError(`leaseTtlMs must be a positive integer, got ${leaseTtlMs}`);
        }
        const grantedAtMs = this.clock.now();
        const lease = this.server.grantLease(this, member, leaseTtlMs);
        const membership = new EmbeddedMembership(this, this.server, lease, grantedAtMs);
        lease.notifyLost = () => membership.markLost();
        return membership;
      },
      // A lost reply leaves the lease without a holder: nobody keeps it alive, it runs out.
      (membership): Membership => {
        this.memberships.add(membership);
        membership.startKeepalives();
        return membership;
      },
    );
  }

  members(): Promise<NodeInfo[]> {
    return this.call(
      'members',
      () => this.server.sortedMembers(),
      (m) => m,
    );
  }

  watchMembers(handler: (event: MemberEvent) => void): Unsubscribe {
    return this.watch('watchMembers', handler, (w) => this.server.watchMembers(w));
  }

  getRegions(): Promise<RegionEntry[]> {
    return this.call(
      'getRegions',
      () => this.server.sortedRegions(),
      (r) => r,
    );
  }

  getRegion(regionId: string): Promise<RegionEntry | undefined> {
    return this.call(
      'getRegion',
      () => {
        if (!nonEmptyString(regionId)) throw new InvalidArgumentError('regionId must be a non-empty string');
        return this.server.getRegion(regionId);
      },
      (r) => r,
    );
  }

  compareAndSetRegion(expectedRevision: number, next: RegionConfig): Promise<CasResult> {
    return this.call(
      'compareAndSetRegion',
      () => this.server.compareAndSetRegion(expectedRevision, next),
      (r) => r,
    );
  }

  watchRegions(handler: (event: RegionEvent) => void): Unsubscribe {
    return this.watch('watchRegions', handler, (w) => this.server.watchRegions(w));
  }

  campaign(membership: Membership): Promise<Leadership> {
    return this.call(
      'campaign',
      () => {
        if (!(membership instanceof EmbeddedMembership) || membership.server !== this.server) {
          throw new InvalidArgumentError('campaign needs a membership joined through this coordinator');
        }
        return this.server.campaign(this, membership);
      },
      (candidate) => {
        // Delivered after this returns (deliveries run on a microtask), so the waiter is in place.
        candidate.waiter = deferred<Leadership>();
        this.candidates.add(candidate);
        return candidate.waiter.promise;
      },
    );
  }

  /** Delivery: `candidate` became the leader (it may have ended since, if this was held back). */
  candidateElected(candidate: CandidateRecord): void {
    const waiter = candidate.waiter;
    if (waiter === undefined) return;
    candidate.waiter = undefined;
    if (candidate.state !== 'leader') {
      this.candidates.delete(candidate);
      waiter.reject(new LeaseExpiredError(candidate.nodeId));
      return;
    }
    candidate.leadership = new EmbeddedLeadership(this, candidate);
    waiter.resolve(candidate.leadership);
  }

  /** Delivery: `candidate`'s election key is gone (resigned, lease ended). */
  candidateEnded(candidate: CandidateRecord): void {
    this.candidates.delete(candidate);
    if (candidate.waiter !== undefined) {
      const waiter = candidate.waiter;
      candidate.waiter = undefined;
      waiter.reject(new LeaseExpiredError(candidate.nodeId));
    }
    candidate.leadership?.markLost();
  }

  observeLeader(handler: (leaderNodeId: string | undefined) => void): Unsubscribe {
    return this.watch('observeLeader', handler, (w) => this.server.observeLeader(w));
  }

  reportSuspect(report: SuspectReport): Promise<void> {
    return this.call(
      'reportSuspect',
      () => this.server.reportSuspect(report),
      () => undefined,
    );
  }

  watchSuspects(handler: (report: SuspectReport) => void): Unsubscribe {
    return this.watch('watchSuspects', handler, (w) => this.server.watchSuspects(w));
  }

  clearSuspects(regionId: string): Promise<void> {
    return this.call(
      'clearSuspects',
      () => this.server.clearSuspects(regionId),
      () => undefined,
    );
  }

  reportProgress(progress: BackupProgress): Promise<void> {
    return this.call(
      'reportProgress',
      () => this.server.reportProgress(progress),
      () => undefined,
    );
  }

  regionProgress(regionId: string): Promise<BackupProgress[]> {
    return this.call(
      'regionProgress',
      () => this.server.regionProgress(regionId),
      (list) => list,
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const unsubscribe of [...this.unsubscribes]) unsubscribe();
    for (const membership of this.memberships) membership.stopKeepalives();
    // This client can no longer vouch for a leadership or wait for one: the leases run out on their own.
    for (const candidate of this.candidates) {
      const waiter = candidate.waiter;
      candidate.waiter = undefined;
      waiter?.reject(new CoordinatorUnavailableError(`${this.name} was closed while campaigning`));
      candidate.leadership?.markLost();
    }
    this.candidates.clear();
    this.parked = [];
  }
}

/** The in-process coordinator "server"; see the header comment. */
export class EmbeddedCoordinator {
  readonly clock: Clock;
  readonly cluster: string;
  private readonly server: Server;

  constructor(options: EmbeddedCoordinatorOptions) {
    if (typeof options?.clock?.now !== 'function')
      throw new InvalidArgumentError('EmbeddedCoordinator needs a clock');
    const cluster = options.cluster ?? 'default';
    if (!nonEmptyString(cluster) || cluster.includes('/')) {
      throw new InvalidArgumentError(
        `cluster must be a non-empty name without '/', got ${JSON.stringify(cluster)}`,
      );
    }
    this.clock = options.clock;
    this.cluster = cluster;
    this.server = new Server(options.clock, cluster, options.probe ?? NO_PROBE);
  }

  /** A new client (one per node or process); clients share this coordinator's state. */
  client(options: EmbeddedClientOptions = {}): EmbeddedCoordinatorClient {
    if (options.name !== undefined && !nonEmptyString(options.name)) {
      throw new InvalidArgumentError('client name must be a non-empty string');
    }
    return new Client(this.server, this.server.clientName(options.name), options.clock ?? this.clock);
  }

  /** The store revision: the number of writes so far. */
  get revision(): number {
    return this.server.revision;
  }

  snapshot(): EmbeddedCoordinatorSnapshot {
    return this.server.snapshot();
  }

  /**
   * Ends a lease now, as an expiry or an operator's revoke: its keys go and the holder's onLost runs.
   * `target` is a membership, or a nodeId (the lease holding that member's key). False when there was
   * no live lease.
   */
  expireLease(target: Membership | string): boolean {
    return this.server.expireLease(target);
  }
}
