/**
 * LocalClient: put/get/delete/scan over a local cluster, routed by region. Each operation finds
 * the key's region in the region map, asks the region's primary node for its serving session and
 * calls it directly. When the primary is not serving (opening, failed over, the map moved on) the
 * operation retries with bounded exponential backoff on the injected clock and a fresh map, until
 * `operationTimeoutMs` — then it fails with OperationTimeoutError (the last attempt's error as its
 * `cause`). Only errors that mean "not applied" are retried (WRONG_PRIMARY and STALE_EPOCH are
 * raised before a record is appended; UNREACHABLE only when the request never left), so the
 * timeout is a definite failure; a write that left and got no answer is an OutcomeUnknownError,
 * which is never retried. Each attempt is given the operation's deadline (`RegionSession`'s
 * `deadlineMs`, on the client's clock): a remote session bounds its wait for the reply by it.
 *
 * Scans cross regions in key order (reverse order for `reverse`), each clipped to its region.
 *
 * Keys are strings (their UTF-8 bytes) or Uint8Arrays (their own bytes, which need not be UTF-8),
 * routed by region in byte order (src/keys.ts); a key longer than 65535 bytes is KeyTooLargeError
 * before any attempt.
 * A batch is atomic within its region (the engine's batch: one log group, replicated and recovered
 * as a unit); a batch whose keys lie in more than one region is refused whole, before anything is
 * written (CrossRegionBatchError): there is no cross-region atomicity. `getMany` reads key by key
 * (no common snapshot); `clear` deletes a range region by region, in atomic chunks. `snapshot` and
 * `iterator` (cluster-cursor.ts) need sessions that hand out engine cursors (in-process ones).
 */
import type { RegionConfig } from '../../coordination/types.js';
import type { Clock } from '../clock/index.js';
import type {
  BatchOperation,
  Cursor,
  CursorOptions,
  KeyValue,
  ScanOptions,
  StoreCursor,
  StoreSnapshot,
} from '../engine/store.js';
import {
  CrossRegionBatchError,
  InvalidArgumentError,
  KeyTooLargeError,
  OperationTimeoutError,
  StaleEpochError,
  TalosError,
  UnreachableError,
  WrongPrimaryError,
} from '../errors.js';
import {
  compareKeys,
  describeKeyLike,
  isKey,
  type KeyLike,
  keyByteLength,
  maxKeyOf,
  minKeyOf,
} from '../keys.js';
import {
  type AsyncCursor,
  ClusterCursor,
  type ClusterCursorOptions,
  ClusterSnapshot,
  type RegionCursor,
  type RegionCursorOptions,
  type RegionSnapshot,
} from './cluster-cursor.js';
import { regionOf } from './regions.js';

export interface LocalClientOptions {
  /** Give up retrying an operation after this long (default 10 s): OperationTimeoutError. */
  operationTimeoutMs?: number;
  /** First retry delay, doubled up to `maxBackoffMs` (defaults 2 ms and 200 ms). */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

/**
 * What the client needs of a region's serving session: a PrimarySession, or a remote proxy of one.
 * `deadlineMs` (the operation's deadline on the client's clock) is a hint a session may use to
 * bound its wait; an in-process PrimarySession ignores it.
 */
export interface RegionSession {
  readonly isServing: boolean;
  put(key: KeyLike, value: Uint8Array | string, deadlineMs?: number): Promise<void>;
  delete(key: KeyLike, deadlineMs?: number): Promise<void>;
  get(key: KeyLike, deadlineMs?: number): Promise<Buffer | undefined>;
  scan(options: ScanOptions, deadlineMs?: number): Promise<KeyValue[]>;
  /** An atomic batch within the region (sessions without it refuse batches). */
  batch?(operations: readonly BatchOperation[], deadlineMs?: number): Promise<void>;
  has?(key: KeyLike, deadlineMs?: number): Promise<boolean>;
  /** A snapshot and cursors over the region's store (engine ones in-process, remote ones over TalosClient). */
  snapshot?(): RegionSnapshot;
  iterator?(options: RegionCursorOptions): RegionCursor;
}

export interface ClientPorts {
  regions(): readonly RegionConfig[];
  session(nodeId: string, regionId: string): RegionSession | undefined;
  clock: Clock;
}

export interface ClientScanOptions {
  gte?: KeyLike;
  lt?: KeyLike;
  limit?: number;
  reverse?: boolean;
}

/**
 * Worth another try with a fresh map: the primary moved, or its node could not be reached, or its
 * store fail-stopped before the write was appended (STORE_FAILED, DISK_FULL, DEVICE_IO: definite,
 * and the node is being replaced, so a retry finds the region's next primary).
 */
function retryable(err: unknown): boolean {
  return (
    err instanceof WrongPrimaryError ||
    err instanceof StaleEpochError ||
    err instanceof UnreachableError ||
    (err instanceof TalosError && REPLACED_STORE_CODES.has(err.code))
  );
}

const REPLACED_STORE_CODES = new Set(['STORE_FAILED', 'DISK_FULL', 'DEVICE_IO']);

export class LocalClient {
  private readonly timeoutMs: number;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;

  constructor(
    private readonly ports: ClientPorts,
    options: LocalClientOptions = {},
  ) {
    this.timeoutMs = options.operationTimeoutMs ?? 10_000;
    this.initialBackoffMs = options.initialBackoffMs ?? 2;
    this.maxBackoffMs = options.maxBackoffMs ?? 200;
  }

  put(key: KeyLike, value: Uint8Array | string): Promise<void> {
    return this.onPrimary('put', key, (session, deadlineMs) => session.put(key, value, deadlineMs));
  }

  delete(key: KeyLike): Promise<void> {
    return this.onPrimary('delete', key, (session, deadlineMs) => session.delete(key, deadlineMs));
  }

  get(key: KeyLike): Promise<Buffer | undefined> {
    return this.onPrimary('get', key, (session, deadlineMs) => session.get(key, deadlineMs));
  }

  /** Whether `key` holds a value. */
  has(key: KeyLike): Promise<boolean> {
    return this.onPrimary('has', key, async (session, deadlineMs) =>
      session.has !== undefined
        ? session.has(key, deadlineMs)
        : (await session.get(key, deadlineMs)) !== undefined,
    );
  }

  /** Values of `keys` in order (undefined where absent), read one by one: no common snapshot. */
  getMany(keys: readonly KeyLike[]): Promise<(Buffer | undefined)[]> {
    return Promise.all(keys.map((key) => this.get(key)));
  }

  /**
   * Applies `operations` atomically in their region (see the header); a batch over several regions
   * is refused whole with CrossRegionBatchError, before anything is written.
   */
  async batch(operations: readonly BatchOperation[]): Promise<void> {
    if (operations.length === 0) return;
    const regionIds = new Set(
      operations.map((op) => regionOf(this.ports.regions(), this.checkKey(op.key)).regionId),
    );
    if (regionIds.size > 1) throw new CrossRegionBatchError([...regionIds]);
    const first = operations[0]!.key;
    return this.onPrimary('batch', first, (session, deadlineMs) => {
      if (session.batch === undefined)
        throw new InvalidArgumentError('this session does not support batches');
      return session.batch(operations, deadlineMs);
    });
  }

  /** Deletes every key in the range, region by region, in batches (each atomic, the whole not). */
  async clear(options: Omit<ClientScanOptions, 'limit' | 'reverse'> = {}): Promise<void> {
    for (;;) {
      const rows = await this.scan({ ...options, limit: CLEAR_BATCH_KEYS });
      if (rows.length === 0) return;
      for (const region of groupByRegion(
        this.ports.regions(),
        rows.map((r) => r.key),
      )) {
        await this.batch(region.map((key) => ({ type: 'del' as const, key })));
      }
    }
  }

  /**
   * `clear` with byte bounds, reverse, limit and a snapshot (cluster-cursor.ts): the keys a cursor
   * over the range holds are deleted in per-region batches (each atomic, the whole not).
   */
  async clearRange(options: Omit<ClusterCursorOptions, 'values'> = {}): Promise<void> {
    const cursor = this.iterator({ ...options, values: false });
    try {
      for (;;) {
        const keys = (await cursor.nextv(CLEAR_BATCH_KEYS)).map((e) => e.key);
        if (keys.length === 0) return;
        for (const group of groupByRegion(this.ports.regions(), keys)) {
          await this.batch(group.map((key) => ({ type: 'del' as const, key })));
        }
      }
    } finally {
      await cursor.close();
    }
  }

  /** One snapshot per region, taken in one step (in-process sessions); the caller releases it. */
  snapshot(): ClusterSnapshot {
    const taken = new Map<string, RegionSnapshot>();
    try {
      for (const region of this.ports.regions()) {
        const session = this.serving(region.regionId);
        if (session.snapshot === undefined) throw new InvalidArgumentError('this session has no snapshots');
        taken.set(region.regionId, session.snapshot());
      }
    } catch (err) {
      for (const s of taken.values()) s.release();
      throw err;
    }
    return new ClusterSnapshot(taken);
  }

  /** A streaming cursor across regions in key order (cluster-cursor.ts). */
  iterator(options: ClusterCursorOptions = {}): AsyncCursor {
    return new ClusterCursor(
      this.ports.regions(),
      (regionId, regionOptions) => {
        const session = this.serving(regionId);
        if (session.iterator === undefined) throw new InvalidArgumentError('this session has no cursors');
        return session.iterator(regionOptions);
      },
      options,
    );
  }

  async scan(options: ClientScanOptions = {}): Promise<KeyValue[]> {
    const limit = options.limit ?? Number.POSITIVE_INFINITY;
    const out: KeyValue[] = [];
    const regions = [...this.ports.regions()];
    if (options.reverse) regions.reverse();
    for (const region of regions) {
      if (out.length >= limit) break;
      // Clipped to the region in key order, so the regions' rows concatenate in key order too.
      const gte = options.gte === undefined ? region.minKey : maxKeyOf(options.gte, region.minKey);
      const lt = clipUpper(options.lt, region.maxKey);
      if (lt !== undefined && compareKeys(gte, lt) >= 0) continue;
      const scan: ScanOptions = { gte, limit: limit - out.length, reverse: options.reverse ?? false };
      if (lt !== undefined) scan.lt = lt;
      const rows = await this.withRetry(
        `scan of region ${region.regionId}`,
        () => this.serving(region.regionId),
        (s, deadlineMs) => s.scan(scan, deadlineMs),
      );
      out.push(...rows);
    }
    return out;
  }

  private onPrimary<T>(
    op: 'put' | 'delete' | 'get' | 'has' | 'batch',
    key: KeyLike,
    attempt: (session: RegionSession, deadlineMs: number) => Promise<T>,
  ): Promise<T> {
    try {
      this.checkKey(key);
    } catch (err) {
      return Promise.reject(err);
    }
    const find = (): RegionSession => this.serving(regionOf(this.ports.regions(), key).regionId);
    return this.withRetry(`${op} of ${describeKeyLike(key)}`, find, attempt);
  }

  /** A key is a string (stored as UTF-8) or bytes, of at most 65535 bytes (the record format). */
  private checkKey(key: KeyLike): KeyLike {
    if (!isKey(key)) throw new InvalidArgumentError('keys are strings (UTF-8) or Uint8Arrays');
    const keyBytes = keyByteLength(key);
    if (keyBytes > 65535) throw new KeyTooLargeError(keyBytes, 65535);
    return key;
  }

  /** The session serving `regionId` on its current primary, or WrongPrimaryError. */
  private serving(regionId: string): RegionSession {
    const config = this.ports.regions().find((c) => c.regionId === regionId);
    const session = config === undefined ? undefined : this.ports.session(config.primary, regionId);
    if (config === undefined || session === undefined || !session.isServing) {
      throw new WrongPrimaryError(regionId, config?.primary ?? '?', config?.primary);
    }
    return session;
  }

  /**
   * Runs `attempt` on the serving session until it succeeds, fails for good, or the budget is
   * spent: then OperationTimeoutError, never the last attempt's retryable error.
   */
  private async withRetry<T>(
    what: string,
    find: () => RegionSession,
    attempt: (session: RegionSession, deadlineMs: number) => Promise<T>,
  ): Promise<T> {
    const clock = this.ports.clock;
    const deadlineMs = clock.now() + this.timeoutMs;
    let backoff = this.initialBackoffMs;
    for (let attemptCount = 1; ; attemptCount++) {
      try {
        return await attempt(find(), deadlineMs);
      } catch (err) {
        if (!retryable(err)) throw err;
        if (clock.now() + backoff > deadlineMs) {
          throw new OperationTimeoutError(what, this.timeoutMs, attemptCount, { cause: err });
        }
      }
      await new Promise<void>((resolve) => clock.setTimeout(resolve, backoff));
      backoff = Math.min(backoff * 2, this.maxBackoffMs);
    }
  }
}

/** Keys deleted per batch by clear(). */
const CLEAR_BATCH_KEYS = 32;

/** `keys` grouped by region, in order. */
function groupByRegion(regions: readonly RegionConfig[], keys: Buffer[]): Buffer[][] {
  const groups = new Map<string, Buffer[]>();
  for (const key of keys) {
    const id = regionOf(regions, key).regionId;
    const group = groups.get(id) ?? [];
    group.push(key);
    groups.set(id, group);
  }
  return [...groups.values()];
}

/** The lower of two exclusive upper bounds (undefined = unbounded). */
function clipUpper(a: KeyLike | undefined, b: string | undefined): KeyLike | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return minKeyOf(a, b);
}
