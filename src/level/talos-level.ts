/**
 * TalosLevel: an abstract-level database over an embedded Talos `Store` — `new TalosLevel(location,
 * options?)` as classic-level, for the whole Level ecosystem (sublevels, encodings, hooks...).
 *
 * The mapping is thin, one engine operation per abstract-level one: keys and values cross as bytes
 * (the store encoding is 'buffer'; abstract-level transcodes every other encoding), `batch` is
 * `Store.batch` (atomic: all or nothing, one log group — see src/engine/write-batch.ts),
 * iterators are engine cursors with real seeks over a snapshot (iterators.ts), `snapshot()` is
 * `Store.snapshot()`, and get/getMany/has/hasMany read the snapshot they are given, if any.
 * `clear` deletes what a snapshot of the range holds, in atomic chunks (not one batch).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type AbstractDatabaseOptions, AbstractLevel } from 'abstract-level';
import { DATA_FILE } from '../engine/file-device.js';
import { type BatchOperation, Store, type StoreOptions, type StoreSnapshot } from '../engine/store.js';
import { InvalidArgumentError } from '../errors.js';
import {
  cursorOptions,
  LevelEntryIterator,
  LevelKeyIterator,
  type LevelRangeOptions,
  LevelSnapshot,
  LevelValueIterator,
  snapshotHandleOf,
} from './iterators.js';

/** Store options a TalosLevel passes through (the location gives `dir`; a device replaces it). */
export type TalosLevelStoreOptions = Omit<StoreOptions, 'dir' | 'role' | 'rebuildL0'>;

export interface TalosLevelOptions<K, V> extends AbstractDatabaseOptions<K, V> {
  /** Engine options (segment and L0 sizes, sync policy, limits, or a device instead of files). */
  store?: TalosLevelStoreOptions;
}

interface ReadOptions {
  snapshot?: unknown;
}

/** What every Talos level adapter declares (abstract-level's manifest). */
export const TALOS_LEVEL_MANIFEST = {
  seek: true,
  implicitSnapshots: true,
  explicitSnapshots: true,
  permanence: true,
  createIfMissing: false,
  errorIfExists: false,
  has: true,
  getSync: true,
  encodings: { buffer: true },
} as const;

interface OpenOptions {
  createIfMissing?: boolean;
  errorIfExists?: boolean;
}

export class TalosLevel<K = string, V = string> extends AbstractLevel<Buffer, K, V> {
  readonly location: string;
  private readonly storeOptions: TalosLevelStoreOptions;
  private opened: Store | undefined;

  constructor(location: string, options: TalosLevelOptions<K, V> = {}) {
    const { store, ...forward } = options;
    super(
      { ...TALOS_LEVEL_MANIFEST, createIfMissing: true, errorIfExists: true, encodings: { buffer: true } },
      forward,
    );
    if (typeof location !== 'string' || location === '') {
      throw new InvalidArgumentError('TalosLevel needs a location (a directory)');
    }
    this.location = location;
    this.storeOptions = store ?? {};
  }

  /** The open engine store (for stats, flush and compaction control); throws while closed. */
  get store(): Store {
    if (this.opened === undefined) throw new InvalidArgumentError('the database is not open');
    return this.opened;
  }

  /**
   * Opens the store; as classic-level, `createIfMissing: false` refuses a location holding no
   * store and `errorIfExists: true` one that holds one (abstract-level wraps either as
   * LEVEL_DATABASE_NOT_OPEN). With a `device` there is no location to look at: both are refused.
   */
  async _open(options: OpenOptions = {}): Promise<void> {
    const { device, ...rest } = this.storeOptions;
    const createIfMissing = options.createIfMissing ?? true;
    const errorIfExists = options.errorIfExists ?? false;
    if (device !== undefined && (!createIfMissing || errorIfExists)) {
      throw new InvalidArgumentError(
        'createIfMissing: false and errorIfExists need a location, not a device',
      );
    }
    if (device === undefined) {
      const exists = existsSync(join(this.location, DATA_FILE));
      if (!exists && !createIfMissing) {
        throw new InvalidArgumentError(
          `${this.location} does not exist (no Talos store there; createIfMissing is false)`,
        );
      }
      if (exists && errorIfExists)
        throw new InvalidArgumentError(`${this.location} exists (errorIfExists is true)`);
    }
    this.opened = await Store.open(
      device === undefined ? { ...rest, dir: this.location } : { ...rest, device },
    );
  }

  async _close(): Promise<void> {
    const store = this.opened;
    this.opened = undefined;
    await store?.close();
  }

  async _get(key: Buffer, options: ReadOptions): Promise<Buffer | undefined> {
    return this._getSync(key, options);
  }

  _getSync(key: Buffer, options: ReadOptions): Buffer | undefined {
    return this.store.getSync(key, readOptions(options));
  }

  async _getMany(keys: Buffer[], options: ReadOptions): Promise<(Buffer | undefined)[]> {
    return this.store.getMany(keys, readOptions(options));
  }

  async _has(key: Buffer, options: ReadOptions): Promise<boolean> {
    return this.store.has(key, readOptions(options));
  }

  async _hasMany(keys: Buffer[], options: ReadOptions): Promise<boolean[]> {
    const store = this.store;
    const read = readOptions(options);
    return Promise.all(keys.map((key) => store.has(key, read)));
  }

  async _put(key: Buffer, value: Buffer): Promise<void> {
    await this.store.put(key, value);
  }

  async _del(key: Buffer): Promise<void> {
    await this.store.delete(key);
  }

  async _batch(operations: BatchOperation[]): Promise<void> {
    await this.store.batch(operations);
  }

  async _clear(options: LevelRangeOptions): Promise<void> {
    const { values: _values, ...range } = cursorOptions<StoreSnapshot>(options, false);
    await this.store.clear(range);
  }

  _iterator(options: LevelRangeOptions): LevelEntryIterator<StoreSnapshot> {
    return new LevelEntryIterator<StoreSnapshot>(this, this.store, options);
  }

  _keys(options: LevelRangeOptions): LevelKeyIterator<StoreSnapshot> {
    return new LevelKeyIterator<StoreSnapshot>(this, this.store, options);
  }

  _values(options: LevelRangeOptions): LevelValueIterator<StoreSnapshot> {
    return new LevelValueIterator<StoreSnapshot>(this, this.store, options);
  }

  _snapshot(options: { owner: unknown }): LevelSnapshot {
    return new LevelSnapshot(this.store.snapshot(), options);
  }
}

function readOptions(options: ReadOptions | undefined): { snapshot?: StoreSnapshot } {
  const snapshot = snapshotHandleOf<StoreSnapshot>(options?.snapshot);
  return snapshot === undefined ? {} : { snapshot };
}
