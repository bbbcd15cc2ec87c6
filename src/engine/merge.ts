/**
 * K-way merge of sorted entry streams (L0, frozen L0, one stream per level). For a key present in
 * several streams the entry with the highest lsn wins and the others are skipped. The number of
 * streams is small (levels + 2), so a linear pick of the head beats a heap.
 */
import { assert } from '../assert.js';
import type { IndexEntry } from './memtable.js';

export type EntryStream = Iterator<[string, IndexEntry]>;

export function* mergeStreams(streams: EntryStream[], reverse: boolean): Generator<[string, IndexEntry]> {
  const heads: ([string, IndexEntry] | undefined)[] = streams.map((s) => advance(s));
  for (;;) {
    let best = -1;
    for (let i = 0; i < heads.length; i++) {
      const head = heads[i];
      if (head === undefined) continue;
      const current = best < 0 ? undefined : heads[best];
      if (current === undefined) {
        best = i;
        continue;
      }
      const before = reverse ? head[0] > current[0] : head[0] < current[0];
      if (before || (head[0] === current[0] && head[1].lsn > current[1].lsn)) best = i;
    }
    if (best < 0) return;
    const winner = heads[best]!;
    // Skip the same key in every other stream (older versions).
    for (let i = 0; i < heads.length; i++) {
      let head = heads[i];
      while (head !== undefined && head[0] === winner[0]) {
        if (i !== best)
          assert(head[1].lsn !== winner[1].lsn || head === winner, 'two streams hold one lsn for a key');
        head = advance(streams[i]!);
      }
      heads[i] = head;
    }
    yield winner;
  }
}

function advance(stream: EntryStream): [string, IndexEntry] | undefined {
  const next = stream.next();
  return next.done ? undefined : next.value;
}
