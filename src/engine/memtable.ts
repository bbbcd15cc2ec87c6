/**
 * L0: the in-memory level. A B+tree (sorted-btree) from key to the newest log pointer for it.
 * Keys are held as latin1 strings — one char per byte — so JavaScript's string comparison gives
 * exactly the unsigned byte order of the keys, without calling into Buffer.compare.
 *
 * `bytes` approximates the index bytes this L0 will become (key + fixed entry overhead), which is
 * what `l0Bytes` bounds.
 */
import sortedBtree from 'sorted-btree';
import { assert } from '../assert.js';
import { KeyFilter } from './key-filter.js';

// sorted-btree is CommonJS with `exports.default`: Node's ESM loader hands us module.exports as the
// default import, while CommonJS interop (jest) unwraps it to the class. Accept both shapes.
const BTree = (sortedBtree.default ?? sortedBtree) as typeof sortedBtree.default;

export interface IndexEntry {
  pointer: number;
  lsn: number;
  tombstone: boolean;
}

/** Encoded size of an index entry apart from its key bytes (see index-segment.ts). */
export const ENTRY_OVERHEAD_BYTES = 19;

/** Plain string order (= unsigned byte order for latin1 keys); faster than sorted-btree's default, which also handles mixed types. */
function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export class Memtable {
  private readonly tree: sortedBtree.default<string, IndexEntry>;
  /**
   * A Bloom filter of the keys, for point reads: most reads of a large store miss L0, and a miss
   * then costs a few hashes instead of a walk down the tree (key-filter.ts). Snapshot clones have
   * none: they are read through the tree. (A Map beside the tree did the same for gets, but its
   * inserts cost puts 6 %.)
   */
  private readonly filter: KeyFilter | undefined;
  private byteCount = 0;
  /** Highest lsn inserted, 0 when empty. */
  maxLsn = 0;

  /**
   * An empty L0 sized for `capacityBytes` of index bytes (its filter is sized for the keys that
   * many bytes hold at the shortest plausible keys, so it rarely has to grow), or a clone's view
   * of `tree`.
   */
  constructor(capacityBytes = 0, tree?: sortedBtree.default<string, IndexEntry>) {
    this.tree = tree ?? new BTree<string, IndexEntry>(undefined, compareKeys);
    this.filter =
      tree === undefined
        ? new KeyFilter(() => this.tree.keys(), Math.ceil(capacityBytes / (ENTRY_OVERHEAD_BYTES + 8)))
        : undefined;
  }

  /**
   * A point-in-time copy for a snapshot (snapshot.ts), in O(1): sorted-btree clones copy-on-write,
   * so later inserts into this memtable copy the nodes they change and the copy never moves.
   */
  clone(): Memtable {
    const copy = new Memtable(0, this.tree.clone());
    copy.byteCount = this.byteCount;
    copy.maxLsn = this.maxLsn;
    return copy;
  }

  get bytes(): number {
    return this.byteCount;
  }

  get size(): number {
    return this.tree.size;
  }

  /**
   * Inserts or replaces `key`. Entries arrive in log order (writes and replay alike), so lsns
   * strictly increase across all inserts — which also guarantees a key's newer entry replaces an
   * older one, never the reverse.
   */
  insert(key: string, entry: IndexEntry): void {
    assert(
      entry.lsn > this.maxLsn,
      () => `L0 insert out of log order: lsn ${entry.lsn} after ${this.maxLsn}`,
    );
    if (this.tree.set(key, entry)) {
      this.byteCount += key.length + ENTRY_OVERHEAD_BYTES;
      this.filter?.add(key);
    }
    this.maxLsn = entry.lsn;
  }

  get(key: string): IndexEntry | undefined {
    if (this.filter !== undefined && !this.filter.mayContain(key)) return undefined;
    return this.tree.get(key);
  }

  /** Entries in key order within [gte, lt) (either bound optional), ascending or descending. */
  *range(gte: string | undefined, lt: string | undefined, reverse: boolean): Generator<[string, IndexEntry]> {
    if (!reverse) {
      const it = this.tree.entries(gte);
      for (let next = it.next(); !next.done; next = it.next()) {
        const pair = next.value;
        if (lt !== undefined && pair[0] >= lt) return;
        yield pair;
      }
    } else {
      // entriesReversed(k) starts at the highest key <= k; lt is exclusive, so skip an exact hit.
      const it = this.tree.entriesReversed(lt);
      for (let next = it.next(); !next.done; next = it.next()) {
        const pair = next.value;
        if (lt !== undefined && pair[0] >= lt) continue;
        if (gte !== undefined && pair[0] < gte) return;
        yield pair;
      }
    }
  }
}
