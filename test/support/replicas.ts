/**
 * Replica checks shared by replication and cluster tests: PROTOCOL §8.5 (a backup's levels, read
 * through its segment map, equal the primary's) and §8.6 (every pointer of a backup's index
 * resolves into a log segment the backup holds).
 */
import { expect } from '@jest/globals';
import { decodeBlock, decodeIndexMeta } from '../../src/engine/index-segment.js';
import type { Store } from '../../src/engine/store.js';

/** Every level's entries as `keyhex:pointer:lsn:tombstone`, pointers mapped by `map`. */
export function levelEntries(store: Store, map: (pointer: number) => number = (p) => p): string[][] {
  return store.levelDescriptors().map((level) =>
    level.flatMap((d) => {
      const bytes = store.replica.readIndexSegment(d.offset);
      const meta = decodeIndexMeta(bytes, 0, bytes.length, 'test');
      const out: string[] = [];
      for (let b = 0; b < meta.blockCount; b++) {
        const block = decodeBlock(bytes, meta.blockOffsets[b]!, meta.blockLengths[b]!, 'test');
        block.keys.forEach((key, i) => {
          out.push(
            `${Buffer.from(key, 'latin1').toString('hex')}:${map(block.pointers[i]!)}:${block.lsns[i]}:${block.tombstones[i]}`,
          );
        });
      }
      return out;
    }),
  );
}

/** §8.5 and §8.6: the backup's levels through its segment map equal the primary's; no pointer dangles. */
export function expectEquivalent(primary: Store, backup: Store): void {
  const segmentBytes = primary.segmentBytes;
  const toPrimary = new Map(backup.replica.segmentMapEntries().map(([p, local]) => [local, p]));
  const backupLevels = levelEntries(backup, (pointer) => {
    const base = pointer - (pointer % segmentBytes);
    const primaryBase = toPrimary.get(base);
    if (primaryBase === undefined)
      throw new Error(`backup pointer ${pointer} is in no mapped log segment (§8.6)`);
    return primaryBase + (pointer - base);
  });
  expect(backupLevels).toEqual(levelEntries(primary));
}
