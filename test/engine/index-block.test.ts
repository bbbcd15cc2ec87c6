/**
 * Point reads search a block as stored (findInBlock: restart points, then a short scan rebuilding
 * keys from shared prefixes) and scans decode it (decodeView). Their answers must equal a reference
 * over the keys the block was built from, for any keys — prefixes of each other, bytes above 0x7f
 * (where byte order and naive string order could disagree), probes between, before and after them.
 */
import * as fc from 'fast-check';
import {
  decodeIndexMeta,
  decodeView,
  findInBlock,
  IndexSegmentBuilder,
  viewBlock,
} from '../../src/engine/index-segment.js';
import { CorruptSegmentError } from '../../src/errors.js';
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

const entryFor = (i: number) => ({ pointer: i * 97, lsn: i + 1, tombstone: i % 5 === 0 });

describe('block search', () => {
  test('findInBlock and decodeView agree with the keys the block was built from', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(keyArb, { minLength: 1, maxLength: 300, selector: (k) => k.toString('hex') }),
        fc.array(keyArb, { maxLength: 40 }),
        (unsorted, probes) => {
          const keys = [...unsorted].sort(Buffer.compare);
          const index = new Map(keys.map((key, i) => [key.toString('hex'), i]));
          const segment = buildSegment(keys);
          const meta = decodeIndexMeta(segment, 0, segment.length, 'test');
          let seen = 0;
          for (let b = 0; b < meta.blockCount; b++) {
            const view = viewBlock(segment, meta.blockOffsets[b]!, meta.blockLengths[b]!, 'test');
            const decoded = decodeView(view);
            const blockKeys = keys.slice(seen, seen + view.count);
            expect(decoded.keys.map((k) => Buffer.from(k, 'latin1').toString('hex'))).toEqual(
              blockKeys.map((k) => k.toString('hex')),
            );
            blockKeys.forEach((key, i) => {
              expect(findInBlock(view, key)).toEqual(entryFor(seen + i));
              expect({
                pointer: decoded.pointers[i],
                lsn: decoded.lsns[i],
                tombstone: decoded.tombstones[i],
              }).toEqual(entryFor(seen + i));
            });
            for (const probe of probes) {
              const at = index.get(probe.toString('hex'));
              const inBlock = at !== undefined && at >= seen && at < seen + view.count;
              expect(findInBlock(view, probe)).toEqual(inBlock ? entryFor(at) : undefined);
            }
            seen += view.count;
          }
          expect(seen).toBe(keys.length);
        },
      ),
      propertyParams('block search', 60),
    );
  });

  test('a mutated block (its CRC bypassed) gives answers or CorruptSegmentError, never a crash', () => {
    const keys = Array.from({ length: 200 }, (_, i) =>
      Buffer.from(`user${String(i * 7919).padStart(8, '0')}`),
    ).sort(Buffer.compare);
    const segment = buildSegment(keys);
    const meta = decodeIndexMeta(segment, 0, segment.length, 'test');
    const start = meta.blockOffsets[0]!;
    const length = meta.blockLengths[0]!;
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(length - 1), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 4,
        }),
        fc.array(fc.constantFrom(...keys), { minLength: 1, maxLength: 8 }),
        (flips, probes) => {
          const block = Buffer.from(segment.subarray(start, start + length));
          for (const [at, byte] of flips) block[at] = byte;
          const typed = (run: () => unknown): void => {
            try {
              run();
            } catch (err) {
              expect(err).toBeInstanceOf(CorruptSegmentError);
            }
          };
          typed(() => {
            const view = viewBlock(block, 0, length, 'fuzz');
            for (const probe of probes) typed(() => findInBlock(view, probe));
            typed(() => decodeView(view));
          });
        },
      ),
      propertyParams('mutated block search', 3000),
    );
  });
});
