/**
 * Point reads search a block's raw bytes (viewBlock + blockLowerBound + compareBlockKey) instead of
 * decoded strings. Their answers must equal a reference search over the decoded keys for any keys —
 * including keys that are prefixes of each other and bytes above 0x7f, where byte order and naive
 * string order could disagree.
 */
import * as fc from 'fast-check';
import {
  blockEntryAt,
  blockKeyAt,
  blockLowerBound,
  compareBlockKey,
  decodeIndexMeta,
  IndexSegmentBuilder,
  viewBlock,
} from '../../src/engine/index-segment.js';
import { propertyParams } from '../support/property.js';

const keyArb = fc.uint8Array({ minLength: 1, maxLength: 12 }).map((bytes) => Buffer.from(bytes));

function buildSegment(keys: Buffer[]): Buffer {
  const builder = new IndexSegmentBuilder(64 * 1024);
  keys.forEach((key, i) => {
    expect(builder.add(key.toString('latin1'), { pointer: i * 97, lsn: i + 1, tombstone: i % 5 === 0 })).toBe(
      true,
    );
  });
  return builder.finish();
}

describe('raw block search', () => {
  test('blockLowerBound and compareBlockKey agree with a search over decoded keys', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(keyArb, { minLength: 1, maxLength: 300, selector: (k) => k.toString('hex') }),
        fc.array(keyArb, { maxLength: 40 }),
        (unsorted, probes) => {
          const keys = [...unsorted].sort(Buffer.compare);
          const segment = buildSegment(keys);
          const meta = decodeIndexMeta(segment, 0, segment.length, 'test');
          let seen = 0;
          for (let b = 0; b < meta.blockCount; b++) {
            const view = viewBlock(segment, meta.blockOffsets[b]!, meta.blockLengths[b]!, 'test');
            const blockKeys = keys.slice(seen, seen + view.keyStarts.length);
            blockKeys.forEach((key, i) => {
              expect(Buffer.from(blockKeyAt(view, i), 'latin1').equals(key)).toBe(true);
              expect(blockEntryAt(view, i)).toEqual({
                pointer: (seen + i) * 97,
                lsn: seen + i + 1,
                tombstone: (seen + i) % 5 === 0,
              });
              expect(Math.sign(compareBlockKey(view, i, key))).toBe(0);
            });
            for (const probe of [...probes, ...blockKeys]) {
              const expected = blockKeys.findIndex((key) => Buffer.compare(key, probe) >= 0);
              expect(blockLowerBound(view, probe)).toBe(expected === -1 ? blockKeys.length : expected);
              blockKeys.forEach((key, i) => {
                expect(Math.sign(compareBlockKey(view, i, probe))).toBe(Buffer.compare(key, probe));
              });
            }
            seen += view.keyStarts.length;
          }
          expect(seen).toBe(keys.length);
        },
      ),
      propertyParams('raw block search', 60),
    );
  });
});
