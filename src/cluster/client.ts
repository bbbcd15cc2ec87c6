/**
 * LocalClient: put/get/delete/scan over a local cluster, routed by region. Each operation finds
 * the key's region in the region map, asks the region's primary node for its serving session and
 * calls it directly. When the primary is not serving (opening, failed over, the map moved on) the
 * operation retries with bounded exponential backoff on the injected clock and a fresh map, until
 * `operationTimeoutMs` — then it fails with the last WrongPrimaryError.
 *
 * Scans cross regions in key order (reverse order for `reverse`), each clipped to its region.
 */
import type { RegionConfig } from '../../coordination/types.js';
import type { Clock } from '../clock/index.js';
import type { KeyValue, ScanOptions } from '../engine/store.js';
import { KeyTooLargeError, StaleEpochError, UnreachableError, WrongPrimaryError } from '../errors.js';
import { compareKeys, maxKeyOf, minKeyOf } from '../keys.js';
import { regionOf } from './regions.js';

export interface LocalClientOptions {
  /** Give up retrying an operation after this long (default 10 s). */
  operationTimeoutMs?: number;
  /** First retry delay, doubled up to `maxBackoffMs` (defaults 2 ms and 200 ms). */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

/** What the client needs of a region's serving session: a PrimarySession, or a remote proxy of one. */
export interface RegionSession {
  readonly isServing: boolean;
  put(key: string, value: Uint8Array | string): Promise<void>;
  delete(key: string): Promise<void>;
  get(key: string): Promise<Buffer | undefined>;
  scan(options: ScanOptions): Promise<KeyValue[]>;
}

export interface ClientPorts {
  regions(): readonly RegionConfig[];
  session(nodeId: string, regionId: string): RegionSession | undefined;
  clock: Clock;
}

export interface ClientScanOptions {
  gte?: string;
  lt?: string;
  limit?: number;
  reverse?: boolean;
}

/** Worth another try with a fresh map: the primary moved, or its node could not be reached. */
function retryable(err: unknown): boolean {
  return (
    err instanceof WrongPrimaryError || err instanceof StaleEpochError || err instanceof UnreachableError
  );
}

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

  put(key: string, value: Uint8Array | string): Promise<void> {
    return this.onPrimary(key, (session) => session.put(key, value));
  }

  delete(key: string): Promise<void> {
    return this.onPrimary(key, (session) => session.delete(key));
  }

  get(key: string): Promise<Buffer | undefined> {
    return this.onPrimary(key, (session) => session.get(key));
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
        region.regionId,
        () => this.serving(region.regionId),
        (s) => s.scan(scan),
      );
      out.push(...rows);
    }
    return out;
  }

  private onPrimary<T>(key: string, op: (session: RegionSession) => Promise<T>): Promise<T> {
    if (typeof key !== 'string') throw new TypeError('keys are strings (latin1)');
    if (key.length > 65535) return Promise.reject(new KeyTooLargeError(key.length, 65535));
    const find = (): RegionSession => this.serving(regionOf(this.ports.regions(), key).regionId);
    return this.withRetry(key, find, op);
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

  private async withRetry<T>(
    what: string,
    find: () => RegionSession,
    op: (session: RegionSession) => Promise<T>,
  ): Promise<T> {
    const clock = this.ports.clock;
    const deadline = clock.now() + this.timeoutMs;
    let backoff = this.initialBackoffMs;
    for (;;) {
      try {
        return await op(find());
      } catch (err) {
        if (!retryable(err) || clock.now() + backoff > deadline) throw err;
      }
      await new Promise<void>((resolve) => clock.setTimeout(resolve, backoff));
      backoff = Math.min(backoff * 2, this.maxBackoffMs);
      void what;
    }
  }
}

/** The lower of two exclusive upper bounds (undefined = unbounded). */
function clipUpper(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return minKeyOf(a, b);
}
