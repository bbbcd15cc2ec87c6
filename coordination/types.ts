/**
 * The Coordinator port (DESIGN §5, PROTOCOL §1, §6): membership with leases, the region map with
 * compare-and-set on a revision, controller election, suspect reports. Implemented by
 * `EmbeddedCoordinator` (in process, leases on the injected clock) and `EtcdCoordinator` (etcd3);
 * both pass test/coordination's conformance suite.
 *
 * Every method may reject with CoordinatorUnavailableError (partitioned from the coordinator, call
 * deadline passed). A rejected compare-and-set is a normal answer, not an error.
 *
 * Epochs: the region map enforces that a change moves a region's epoch to exactly current + 1 (a
 * creation starts at epoch 1), so the epoch is a fencing token no two configurations share.
 */

export interface NodeInfo {
  nodeId: string;
  /** Where the node's fabric listener is. */
  fabricAddress: string;
  /** Where clients reach the node, when it serves a client protocol. */
  clientAddress?: string;
  /** Where the node's Prometheus /metrics answer, when it serves them (`talos status` reads its loop health there). */
  metricsAddress?: string;
  /**
   * Set by the coordinator (ignored on join): the revision at which this incarnation joined. A
   * region entry of a lower revision that names the node was written for an earlier incarnation,
   * whose memory (log buffers, unsynced log tail) is gone: its roles there are void (PROTOCOL §6).
   */
  joinedRevision?: number;
}

export type RegionState = 'active' | 'reconfiguring';

/**
 * One region's configuration: PROTOCOL §1. `maxKey` undefined = unbounded; keys order by their
 * UTF-8 bytes (compareKeys in src/keys.ts).
 */
export interface RegionConfig {
  regionId: string;
  minKey: string;
  maxKey?: string;
  epoch: number;
  primary: string;
  backups: string[];
  state: RegionState;
  /**
   * Backups being re-synced online (PROTOCOL §7): not part of the acknowledging set, never among
   * `backups` or the primary; the controller moves one into `backups` (next epoch) once its primary
   * reported it caught up.
   */
  joining?: string[];
}

export interface RegionEntry {
  config: RegionConfig;
  /** Changes on every write of this entry; compare-and-set compares it. */
  revision: number;
}

export type RegionEvent =
  | { kind: 'put'; entry: RegionEntry }
  | { kind: 'delete'; regionId: string; revision: number };

export type CasResult = { ok: true; revision: number } | { ok: false; current: RegionEntry | undefined };

export type MemberEvent = { kind: 'join'; member: NodeInfo } | { kind: 'leave'; nodeId: string };

/**
 * A primary's report about a node of its region, for the controller: a suspect (a failed link or
 * handshake; the default kind) or a joining backup the primary caught up (online re-sync, §7).
 * Reports of an older epoch than the region's are stale and ignored.
 */
export interface SuspectReport {
  regionId: string;
  epoch: number;
  suspectNodeId: string;
  reporterNodeId: string;
  reason: string;
  kind?: 'suspect' | 'caught-up';
}

/**
 * How far a backup persisted a region's log (PROTOCOL §6: a promotion picks the live backup with
 * the highest position). `seq` is the primary's log segment sequence — kept across promotions, so
 * positions of one lineage compare — and `usedBytes` how much of it the backup persisted.
 */
export interface BackupProgress {
  regionId: string;
  nodeId: string;
  epoch: number;
  seq: number;
  usedBytes: number;
}

export type Unsubscribe = () => void;

/** A node's lease-backed membership. Keepalives run until `leave()` or until the lease is lost. */
export interface Membership {
  readonly nodeId: string;
  readonly leaseTtlMs: number;
  /** The revision at which this incarnation joined (NodeInfo.joinedRevision). */
  readonly joinedRevision: number;
  /** Clock time the last keepalive was sent that the coordinator acknowledged. */
  lastKeepaliveSentAtMs(): number;
  /**
   * The self-fencing deadline: `lastKeepaliveSentAtMs + leaseTtlMs − marginMs`. A node acts as a
   * member (acknowledges, serves) only while `clock.now()` is before it (DESIGN §8: never wait for a
   * client's late "lost" event).
   */
  validUntilMs(marginMs: number): number;
  /** Called once if the coordinator reports the lease gone (expired or revoked). */
  onLost(handler: () => void): void;
  /** Revokes the lease; the member leaves at once. Idempotent. */
  leave(): Promise<void>;
}

/** Controller election: at most one leader at a time; leadership ends with the leader's lease. */
export interface Leadership {
  readonly nodeId: string;
  /** Resolves when leadership is lost (resigned, lease lost). */
  readonly lost: Promise<void>;
  resign(): Promise<void>;
}

export interface Coordinator {
  /** Registers `member` under a new lease of `leaseTtlMs` and keeps it alive. */
  join(member: NodeInfo, leaseTtlMs: number): Promise<Membership>;
  members(): Promise<NodeInfo[]>;
  /** Current members first (as joins), then changes. */
  watchMembers(handler: (event: MemberEvent) => void): Unsubscribe;

  getRegions(): Promise<RegionEntry[]>;
  getRegion(regionId: string): Promise<RegionEntry | undefined>;
  /**
   * Writes `next` for `next.regionId` if the entry's revision is still `expectedRevision`
   * (0 = the entry must not exist). Rejects with InvalidConfigurationError when `next.epoch` is not
   * current + 1 (or 1 for a creation).
   */
  compareAndSetRegion(expectedRevision: number, next: RegionConfig): Promise<CasResult>;
  /** Current entries first (as puts), then every change in revision order. */
  watchRegions(handler: (event: RegionEvent) => void): Unsubscribe;

  /** Resolves when `membership`'s node is the leader; at most one leader at a time. */
  campaign(membership: Membership): Promise<Leadership>;
  /** Current leader (undefined when none) first, then every change. */
  observeLeader(handler: (leaderNodeId: string | undefined) => void): Unsubscribe;

  reportSuspect(report: SuspectReport): Promise<void>;
  /** Current reports first, then new ones. */
  watchSuspects(handler: (report: SuspectReport) => void): Unsubscribe;
  clearSuspects(regionId: string): Promise<void>;

  /** Records a backup's persisted position (the latest report per region and node wins). */
  reportProgress(progress: BackupProgress): Promise<void>;
  /** The latest position reported by each node for `regionId`. */
  regionProgress(regionId: string): Promise<BackupProgress[]>;

  /** Stops watches and keepalives of this client (not a leave: leases run out on their own). */
  close(): Promise<void>;
}
