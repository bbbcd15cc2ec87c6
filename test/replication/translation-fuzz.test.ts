/**
 * One-pass translation refuses what it must (issue 16 item 3, src/engine/index-translate.ts):
 *
 * - 100 000 mutated shipped segments (bit flips, byte overwrites, runs of random bytes, truncations,
 *   extensions, block swaps): every one is refused with a typed error — 0 crashes (no other error
 *   class), 0 accepted corruptions.
 * - 20 000 malformed segments with VALID checksums (a mutation inside a block, then its block CRC
 *   and the metadata CRC recomputed, as a buggy primary would ship them): each is refused with a
 *   typed error, or accepted only if the result is a well-formed segment (verifyIndexSegment on the
 *   output, keys strictly ascending) — the translation never emits a segment the read path rejects.
 * - The one-pass result equals the two-pass one (verify, translate, verify) on valid segments.
 * The seed is printed; TALOS_SEED replays it.
 */
import { crc32c } from '../../src/engine/crc.js';
import {
  decodeBlock,
  decodeIndexMeta,
  INDEX_FOOTER_BYTES,
  IndexSegmentBuilder,
  verifyIndexSegment,
} from '../../src/engine/index-segment.js';
import { translateIndexSegmentChecked } from '../../src/engine/index-translate.js';
import { createPrng, type Prng } from '../../src/engine/prng.js';
import { CorruptSegmentError, MissingSegmentMappingError } from '../../src/errors.js';

const SEGMENT_BYTES = 64 * 1024;
const SEED = Number(process.env.TALOS_SEED ?? Date.now() % 2 ** 31);
const MAP = (base: number): number | undefined =>
  base < 64 * SEGMENT_BYTES ? base + 1000 * SEGMENT_BYTES : undefined;

function buildSegment(rng: Prng, entries: number): Buffer {
  const builder = new IndexSegmentBuilder(SEGMENT_BYTES);
  for (let i = 0; i < entries; i++) {
    const key = `user${String(i * 7 + rng.int(0, 6)).padStart(8, '0')}`;
    const pointer = rng.int(0, 63) * SEGMENT_BYTES + rng.int(0, SEGMENT_BYTES - 200);
    if (!builder.add(key, { pointer, lsn: i + 1, tombstone: rng.chance(0.1) })) break;
  }
  return builder.finish();
}

function mutate(rng: Prng, good: Buffer): Buffer {
  const out = Buffer.from(good);
  switch (rng.int(0, 5)) {
    case 0: {
      const at = rng.int(0, out.length - 1);
      out[at] = out[at]! ^ (1 << rng.int(0, 7));
      return out;
    }
    case 1: {
      const at = rng.int(0, out.length - 1);
      out[at] = (out[at]! + rng.int(1, 255)) & 0xff;
      return out;
    }
    case 2: {
      const at = rng.int(0, out.length - 2);
      const n = rng.int(2, Math.min(64, out.length - at));
      for (let i = 0; i < n; i++) out[at + i] = rng.int(0, 255);
      return out;
    }
    case 3:
      return out.subarray(0, rng.int(0, out.length - 1));
    case 4:
      return Buffer.concat([out, Buffer.from(Array.from({ length: rng.int(1, 64) }, () => rng.int(0, 255)))]);
    default: {
      // Swap the bytes of two blocks of equal length, if there are such; else flip a byte.
      const meta = decodeIndexMeta(good, 0, good.length, 'good');
      const i = rng.int(0, meta.blockCount - 1);
      const j = meta.blockLengths.findIndex((l, k) => k !== i && l === meta.blockLengths[i]);
      if (j < 0) {
        const at = rng.int(0, out.length - 1);
        out[at] = out[at]! ^ 0x80;
        return out;
      }
      good.copy(
        out,
        meta.blockOffsets[i]!,
        meta.blockOffsets[j]!,
        meta.blockOffsets[j]! + meta.blockLengths[j]!,
      );
      good.copy(
        out,
        meta.blockOffsets[j]!,
        meta.blockOffsets[i]!,
        meta.blockOffsets[i]! + meta.blockLengths[i]!,
      );
      return out;
    }
  }
}

/** Recomputes every block CRC and the metadata CRC of `bytes` (laid out as `good`). */
function reChecksum(bytes: Buffer, good: Buffer): void {
  const meta = decodeIndexMeta(good, 0, good.length, 'good');
  let entry = meta.blockIndexOffset;
  for (let i = 0; i < meta.blockCount; i++) {
    const start = meta.blockOffsets[i]!;
    bytes.writeUInt32LE(crc32c(bytes.subarray(start, start + meta.blockLengths[i]!)), entry + 8);
    entry += 14 + meta.blockFirstKeys[i]!.length;
  }
  const f = bytes.length - INDEX_FOOTER_BYTES;
  bytes.writeUInt32LE(crc32c(bytes.subarray(meta.blockIndexOffset, f + 28)), f + 28);
}

const typed = (err: unknown): boolean =>
  err instanceof CorruptSegmentError || err instanceof MissingSegmentMappingError;

it('refuses 100 000 mutated segments with a typed error, accepting none', () => {
  process.stdout.write(`[fuzz] translation-fuzz: seed=${SEED}\n`);
  const rng = createPrng(SEED);
  const goods = Array.from({ length: 8 }, (_, i) => buildSegment(rng, 40 + i * 120));
  let refused = 0;
  const untyped: string[] = [];
  const accepted: number[] = [];
  for (let n = 0; n < 100_000; n++) {
    const good = goods[n % goods.length]!;
    const bad = mutate(rng, good);
    if (bad.equals(good)) continue; // a mutation that changed nothing (a swap of equal blocks)
    try {
      translateIndexSegmentChecked(bad, SEGMENT_BYTES, MAP, 'fuzz');
      accepted.push(n);
    } catch (err) {
      if (typed(err)) refused++;
      else untyped.push(`${n}: ${(err as Error).stack}`);
    }
  }
  expect(untyped).toEqual([]);
  expect(accepted).toEqual([]);
  expect(refused).toBeGreaterThan(99_000);
});

it('malformed segments with valid checksums are refused, or translated into well-formed segments', () => {
  const rng = createPrng(SEED + 1);
  const goods = Array.from({ length: 4 }, (_, i) => buildSegment(rng, 60 + i * 200));
  let refused = 0;
  let acceptedWellFormed = 0;
  const problems: string[] = [];
  for (let n = 0; n < 20_000; n++) {
    const good = goods[n % goods.length]!;
    const meta = decodeIndexMeta(good, 0, good.length, 'good');
    const bad = Buffer.from(good);
    // A change inside one block's bytes (lengths, keys, pointers, flags), then valid CRCs again.
    const block = rng.int(0, meta.blockCount - 1);
    const at = meta.blockOffsets[block]! + rng.int(0, meta.blockLengths[block]! - 1);
    bad[at] = (bad[at]! + rng.int(1, 255)) & 0xff;
    reChecksum(bad, good);
    try {
      const { bytes } = translateIndexSegmentChecked(bad, SEGMENT_BYTES, MAP, 'malformed');
      verifyIndexSegment(bytes, 'translated'); // what the read path would check
      acceptedWellFormed++;
    } catch (err) {
      if (typed(err)) refused++;
      else problems.push(`${n}: ${(err as Error).stack}`);
    }
  }
  expect(problems).toEqual([]);
  expect(refused).toBeGreaterThan(1000); // structure and order checks do refuse CRC-valid segments
  expect(refused + acceptedWellFormed).toBe(20_000);
});

it('equals the two-pass translation (verify, translate, verify) on valid segments', () => {
  const rng = createPrng(SEED + 2);
  for (let n = 0; n < 50; n++) {
    const good = buildSegment(rng, rng.int(1, 2000));
    const { bytes, meta } = translateIndexSegmentChecked(good, SEGMENT_BYTES, MAP);
    expect(verifyIndexSegment(bytes, 'translated')).toEqual(meta);
    const twoPass = Buffer.from(good);
    // The reference: decode every entry, map its pointer, rebuild the segment.
    const reference = new IndexSegmentBuilder(SEGMENT_BYTES);
    const original = verifyIndexSegment(good, 'good');
    expect(original.entryCount).toBe(meta.entryCount);
    for (let b = 0; b < original.blockCount; b++) {
      const block = decodeBlock(
        twoPass,
        original.blockOffsets[b]!,
        original.blockLengths[b]!,
        'good',
        original.version,
      );
      block.keys.forEach((key, i) => {
        const pointer = block.pointers[i]!;
        const base = pointer - (pointer % SEGMENT_BYTES);
        reference.add(key, {
          pointer: MAP(base)! + (pointer - base),
          lsn: block.lsns[i]!,
          tombstone: block.tombstones[i]!,
        });
      });
    }
    expect(bytes.equals(reference.finish())).toBe(true);
  }
});
