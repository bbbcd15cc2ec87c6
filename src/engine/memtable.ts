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
   * The same entries by key, for point reads: a hash probe instead of a walk down the tree — most
   * reads of a large store miss L0 (in a 1 M-key store a tree walk was 9 % of a get's CPU).
   * Snapshot clones have none: they are read through the tree.
   */
  private readonly byKey: Map<string, IndexEntry> | undefined;
  private byteCount = 0;
  /** Highest lsn inserted, 0 when empty. */
  maxLsn = 0;

  constructor(tree?: sortedBtree.default<string, IndexEntry>) {
    this.tree = tree ?? new BTree<string, IndexEntry>(undefined, compareKeys);
    this.byKey = tree === undefined ? new Map() : undefined;
  }

  /**
   * A point-in-time copy for a snapshot (snapshot.ts), in O(1): sorted-btree clones copy-on-write,
   * so later inserts into this memtable copy the nodes they change and the copy never moves.
   */
  clone(): Memtable {
    const copy = new Memtable(this.tree.clone());
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
    if (this.tree.set(key, entry)) this.byteCount += key.length + ENTRY_OVERHEAD_BYTES;
    this.byKey?.set(key, entry);
    this.maxLsn = entry.lsn;
  }

  get(key: string): IndexEntry | undefined {
    return this.byKey === undefined ? this.tree.get(key) : this.byKey.get(key);
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
