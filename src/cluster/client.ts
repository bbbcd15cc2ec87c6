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
 */
import type { RegionConfig } from '../../coordination/types.js';
import type { Clock } from '../clock/index.js';
import type { KeyValue, ScanOptions } from '../engine/store.js';
import {
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
    op: 'put' | 'delete' | 'get',
    key: KeyLike,
    attempt: (session: RegionSession, deadlineMs: number) => Promise<T>,
  ): Promise<T> {
    if (!isKey(key)) throw new TypeError('keys are strings (UTF-8) or Uint8Arrays');
    const keyBytes = keyByteLength(key);
    if (keyBytes > 65535) return Promise.reject(new KeyTooLargeError(keyBytes, 65535));
    const find = (): RegionSession => this.serving(regionOf(this.ports.regions(), key).regionId);
    return this.withRetry(`${op} of ${describeKeyLike(key)}`, find, attempt);
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

/** The lower of two exclusive upper bounds (undefined = unbounded). */
function clipUpper(a: KeyLike | undefined, b: string | undefined): KeyLike | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return minKeyOf(a, b);
}
