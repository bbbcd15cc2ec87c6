/**
 * The read path: a point read looks in L0, then the frozen L0, then the levels shallowest first
 * (the first hit is the newest: a shallower place always holds newer versions), and resolves the
 * value pointer through the value log (which re-checks the record's CRC, key and lsn). A scan
 * merges L0, the frozen L0 and one stream per level (mergeStreams: the highest lsn of a key wins),
 * skipping tombstones, up to `limit`. Reads through a snapshot (snapshot.ts) look in its clones of
 * the same places; streaming reads are cursors (cursor.ts).
 */
import { InvalidArgumentError, KeyTooLargeError } from '../errors.js';
import type { Compactor } from './compaction.js';
import type { IndexEntry } from './memtable.js';
import { type EntryStream, mergeStreams } from './merge.js';
import { type Bytes, toKey } from './options.js';
import type { StoreSnapshot } from './snapshot.js';
import type { KeyValue, ScanOptions } from './store-types.js';
import type { ValueLog } from './value-log.js';
import type { VersionSet } from './version-set.js';

export interface ReadPathDeps {
  maxKeyBytes: number;
  compactor: Compactor;
  versions: VersionSet;
  valueLog: ValueLog;
}

/** The value of `key` now, or as of `snapshot` (snapshot.ts) when given. */
export function getValue(d: ReadPathDeps, key: Bytes, snapshot?: StoreSnapshot): Buffer | undefined {
  const k = toKey(key);
  const entry = entryOf(d, k, snapshot);
  if (entry === undefined || entry.tombstone) return undefined;
  return d.valueLog.readValue(entry, k);
}

/** The newest index entry for `key` (a tombstone included), now or as of `snapshot`. */
export function entryOf(d: ReadPathDeps, key: Bytes, snapshot?: StoreSnapshot): IndexEntry | undefined {
  const k = toKey(key);
  if (k.length > d.maxKeyBytes) throw new KeyTooLargeError(k.length, d.maxKeyBytes);
  if (snapshot !== undefined) return snapshot.lookup(k.toString('latin1'), k);
  return lookup(d, k.toString('latin1'), k);
}

export function scanRange(d: ReadPathDeps, options: ScanOptions): KeyValue[] {
  const gte = options.gte === undefined ? undefined : toKey(options.gte).toString('latin1');
  const lt = options.lt === undefined ? undefined : toKey(options.lt).toString('latin1');
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  const reverse = options.reverse ?? false;
  if (!(limit >= 0)) throw new InvalidArgumentError('scan limit must be >= 0');
  const out: KeyValue[] = [];
  if (limit === 0 || (gte !== undefined && lt !== undefined && gte >= lt)) return out;
  const { l0, frozen } = d.compactor;
  const streams: EntryStream[] = [l0.range(gte, lt, reverse)];
  if (frozen !== undefined) streams.push(frozen.memtable.range(gte, lt, reverse));
  streams.push(...d.versions.streams(gte, lt, reverse));
  for (const [key, entry] of mergeStreams(streams, reverse)) {
    if (entry.tombstone) continue;
    const keyBytes = Buffer.from(key, 'latin1');
    out.push({ key: keyBytes, value: d.valueLog.readValue(entry, keyBytes) });
    if (out.length >= limit) break;
  }
  return out;
}

function lookup(d: ReadPathDeps, key: string, keyBytes: Buffer): IndexEntry | undefined {
  const hit = d.compactor.l0.get(key) ?? d.compactor.frozen?.memtable.get(key);
  if (hit !== undefined) return hit;
  return d.versions.lookup(key, keyBytes);
}
