/**
 * TalosClusterLevel: an abstract-level database over a Talos cluster's client — a TalosClient
 * (a deployed cluster: `{ talos: TalosClientOptions }` connects one at open, or `{ client }`), or
 * a LocalClient (the in-process cluster).
 *
 * Writes route by key to their region's primary; a batch is atomic within its region and a batch
 * over several regions is refused whole (CROSS_REGION_BATCH) — there is no cross-region atomicity.
 * Iterators are cluster cursors (src/cluster/cluster-cursor.ts): one cursor per region — an engine
 * cursor in-process, a server-side cursor paged over the client protocol through TalosClient
 * (src/client/remote-cursor.ts) — read in key order, each opened on an implicit snapshot at the
 * iterator's creation. `snapshot()` takes one snapshot per region the same way; reads through it
 * (get, getMany, has, iterators) go through cursors over it. Snapshots and cursors are of the
 * stores that were primary when they were taken: after a failover they fail (take new ones).
 * Over TalosClient the regions' snapshots are taken one after another, not in one step.
 *
 * `{ cluster: LocalClusterOptions }` makes the adapter own an in-process cluster: created at the
 * first open, kept across close and reopen (as memory-level keeps its data), ended by `destroy()`
 * — it is not permanent. `{ client }` uses a client whose cluster the caller owns; `{ talos }`
 * connects a TalosClient at each open and closes it at close.
 */
import { type AbstractDatabaseOptions, AbstractLevel } from 'abstract-level';
import { TalosClient, type TalosClientOptions } from '../client/talos-client.js';
import type { LocalClient } from '../cluster/client.js';
import type { ClusterCursorOptions, ClusterSnapshot } from '../cluster/cluster-cursor.js';
import { createLocalCluster, type LocalCluster, type LocalClusterOptions } from '../cluster/local-cluster.js';
import type { BatchOperation } from '../engine/store.js';
import { InvalidArgumentError } from '../errors.js';
import {
  type CursorSource,
  cursorOptions,
  LevelEntryIterator,
  LevelKeyIterator,
  type LevelRangeOptions,
  LevelSnapshot,
  LevelValueIterator,
  snapshotHandleOf,
} from './iterators.js';
import { TALOS_LEVEL_MANIFEST } from './talos-level.js';

/** What the adapter reads and writes through: LocalClient and TalosClient both are one. */
export type ClusterLevelClient = Pick<
  LocalClient,
  'get' | 'getMany' | 'put' | 'delete' | 'batch' | 'clearRange' | 'iterator' | 'snapshot'
>;

export interface TalosClusterLevelOptions<K, V> extends AbstractDatabaseOptions<K, V> {
  /** A client of a cluster the caller owns (exactly one of `client`, `cluster` and `talos`). */
  client?: ClusterLevelClient;
  /** Options of an in-process cluster this database owns (first open to `destroy()`). */
  cluster?: LocalClusterOptions;
  /** A deployed cluster: a TalosClient with these options is connected at open, closed at close. */
  talos?: TalosClientOptions;
}

/** As TalosLevel's, less permanence (an owned cluster ends at close) and getSync (reads route). */
const CLUSTER_LEVEL_MANIFEST = {
  ...TALOS_LEVEL_MANIFEST,
  permanence: false,
  getSync: false,
  encodings: { buffer: true },
};

interface ReadOptions {
  snapshot?: unknown;
}

export class TalosClusterLevel<K = string, V = string> extends AbstractLevel<Buffer, K, V> {
  private readonly given: ClusterLevelClient | undefined;
  private readonly clusterOptions: LocalClusterOptions | undefined;
  private readonly talosOptions: TalosClientOptions | undefined;
  private owned: LocalCluster | undefined;
  private connected: TalosClient | undefined;
  private active: ClusterLevelClient | undefined;
  private readonly source: CursorSource<ClusterSnapshot> = {
    iterator: (options: ClusterCursorOptions) => this.client.iterator(options),
  };

  constructor(options: TalosClusterLevelOptions<K, V>) {
    const { client, cluster, talos, ...forward } = options;
    super(CLUSTER_LEVEL_MANIFEST, forward);
    if ([client, cluster, talos].filter((o) => o !== undefined).length !== 1) {
      throw new InvalidArgumentError(
        'TalosClusterLevel needs exactly one of `client`, `cluster` and `talos`',
      );
    }
    this.given = client;
    this.clusterOptions = cluster;
    this.talosOptions = talos;
  }

  /** The client reads and writes go through; throws while closed. */
  get client(): ClusterLevelClient {
    if (this.active === undefined) throw new InvalidArgumentError('the database is not open');
    return this.active;
  }

  /** The in-process cluster this database owns, if it owns one (while open). */
  get cluster(): LocalCluster | undefined {
    return this.owned;
  }

  async _open(): Promise<void> {
    if (this.clusterOptions !== undefined) {
      this.owned ??= await createLocalCluster(this.clusterOptions);
      this.active = this.owned.client();
    } else if (this.talosOptions !== undefined) {
      this.connected = await TalosClient.connect(this.talosOptions);
      this.active = this.connected;
    } else this.active = this.given;
  }

  async _close(): Promise<void> {
    this.active = undefined;
    const connected = this.connected;
    this.connected = undefined;
    await connected?.close();
  }

  /** Closes the database and ends the cluster it owns (if it owns one). */
  async destroy(): Promise<void> {
    await this.close();
    const owned = this.owned;
    this.owned = undefined;
    await owned?.close();
  }

  async _get(key: Buffer, options: ReadOptions): Promise<Buffer | undefined> {
    const snapshot = snapshotHandleOf<ClusterSnapshot>(options?.snapshot);
    if (snapshot === undefined) return this.client.get(key);
    return this.readThrough(snapshot, key);
  }

  async _getMany(keys: Buffer[], options: ReadOptions): Promise<(Buffer | undefined)[]> {
    const snapshot = snapshotHandleOf<ClusterSnapshot>(options?.snapshot);
    if (snapshot === undefined) return this.client.getMany(keys);
    return Promise.all(keys.map((key) => this.readThrough(snapshot, key)));
  }

  async _has(key: Buffer, options: ReadOptions): Promise<boolean> {
    return (await this._get(key, options)) !== undefined;
  }

  async _hasMany(keys: Buffer[], options: ReadOptions): Promise<boolean[]> {
    return (await this._getMany(keys, options)).map((v) => v !== undefined);
  }

  async _put(key: Buffer, value: Buffer): Promise<void> {
    await this.client.put(key, value);
  }

  async _del(key: Buffer): Promise<void> {
    await this.client.delete(key);
  }

  async _batch(operations: BatchOperation[]): Promise<void> {
    await this.client.batch(operations);
  }

  async _clear(options: LevelRangeOptions): Promise<void> {
    const { values: _values, ...range } = cursorOptions<ClusterSnapshot>(options, false);
    await this.client.clearRange(range);
  }

  _iterator(options: LevelRangeOptions): LevelEntryIterator<ClusterSnapshot> {
    return new LevelEntryIterator<ClusterSnapshot>(this, this.source, options);
  }

  _keys(options: LevelRangeOptions): LevelKeyIterator<ClusterSnapshot> {
    return new LevelKeyIterator<ClusterSnapshot>(this, this.source, options);
  }

  _values(options: LevelRangeOptions): LevelValueIterator<ClusterSnapshot> {
    return new LevelValueIterator<ClusterSnapshot>(this, this.source, options);
  }

  _snapshot(options: { owner: unknown }): LevelSnapshot {
    return new LevelSnapshot(this.client.snapshot(), options);
  }

  /** A point read through a cluster snapshot: a one-key cursor over it. */
  private async readThrough(snapshot: ClusterSnapshot, key: Buffer): Promise<Buffer | undefined> {
    const cursor = this.client.iterator({ gte: key, lte: key, snapshot });
    try {
      return (await cursor.next())?.value;
    } finally {
      await cursor.close();
    }
  }
}
