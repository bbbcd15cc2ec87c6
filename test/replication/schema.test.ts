/**
 * The schema-driven codec (src/replication/schema.ts) on its own: a table validates what it
 * encodes (ranges, enum values, bounds; InvalidArgumentError naming the field) and refuses
 * malformed input with the caller's typed error and the failing field's path — truncation, an
 * unknown tag, a count the input cannot hold, bad UTF-8, trailing bytes — and a property over a
 * table with every field kind: random values round-trip, and mutated or truncated encodings are
 * refused with the typed error or decode to a value that re-encodes to the same bytes.
 */
import * as fc from 'fast-check';
import { InvalidArgumentError, TalosError } from '../../src/errors.js';
import {
  bool,
  bytes,
  decode,
  encode,
  enumOf,
  list,
  optional,
  pair,
  pos,
  str,
  struct,
  u8,
  u16,
  u32,
  u53,
  variant,
} from '../../src/replication/schema.js';
import { propertyParams } from '../support/property.js';

class TestMalformedError extends TalosError {
  constructor(detail: string) {
    super('TEST_MALFORMED', detail);
  }
}
const malformed = (detail: string) => new TestMalformedError(detail);

const SAMPLE = variant('kind', {
  small: [1, struct({ a: u8, b: u16, c: u32, flag: bool })],
  big: [
    2,
    struct({
      id: u53,
      at: pos,
      name: str(40),
      blob: bytes(300),
      mode: enumOf(['x', 'y', 'z']),
      items: list(pair(u53, u8), 20),
      maybe: optional(str()),
      nested: list(list(u32, 3), 4),
    }),
  ],
  empty: [7, struct({})],
});
type Sample = Parameters<typeof SAMPLE.write>[1];

const sampleArb: fc.Arbitrary<Sample> = fc.oneof(
  fc.record({
    kind: fc.constant('small' as const),
    a: fc.nat({ max: 0xff }),
    b: fc.nat({ max: 0xffff }),
    c: fc.nat({ max: 0xffffffff }),
    flag: fc.boolean(),
  }),
  fc.record(
    {
      kind: fc.constant('big' as const),
      id: fc.maxSafeNat(),
      at: fc.integer({ min: -1, max: Number.MAX_SAFE_INTEGER - 1 }),
      name: fc.string({ maxLength: 10, unit: 'grapheme' }).filter((s) => Buffer.byteLength(s) <= 40),
      blob: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
      mode: fc.constantFrom('x' as const, 'y' as const, 'z' as const),
      items: fc.array(fc.tuple(fc.maxSafeNat(), fc.nat({ max: 255 })), { maxLength: 20 }),
      maybe: fc.string({ maxLength: 8 }),
      nested: fc.array(fc.array(fc.nat({ max: 0xffffffff }), { maxLength: 3 }), { maxLength: 4 }),
    },
    { requiredKeys: ['kind', 'id', 'at', 'name', 'blob', 'mode', 'items', 'nested'] },
  ),
  fc.record({ kind: fc.constant('empty' as const) }),
);

const decodeSample = (b: Uint8Array): Sample => decode(SAMPLE, b, malformed);

describe('schema codec: validation on encode', () => {
  const big = {
    kind: 'big' as const,
    id: 1,
    at: -1,
    name: 'n',
    blob: Buffer.alloc(1),
    mode: 'x' as const,
    items: [],
    nested: [],
  };
  test.each([
    ['a u8 out of range', { kind: 'small', a: 256, b: 0, c: 0, flag: true }, /^a: not a u8: 256/],
    ['a u16 that is not an integer', { kind: 'small', a: 0, b: 1.5, c: 0, flag: true }, /^b: not a u16/],
    ['a negative u32', { kind: 'small', a: 0, b: 0, c: -1, flag: true }, /^c: not a u32/],
    ['a boolean that is a number', { kind: 'small', a: 0, b: 0, c: 0, flag: 1 }, /^flag: not a boolean/],
    ['a u53 beyond 2^53', { ...big, id: 2 ** 53 }, /^id: not a u64 below 2\^53/],
    ['a position below -1', { ...big, at: -2 }, /^at: not a position/],
    ['a string past its bound', { ...big, name: 'x'.repeat(41) }, /^name: string of 41 bytes exceeds 40/],
    ['bytes past their bound', { ...big, blob: Buffer.alloc(301) }, /^blob: byte string of 301 bytes/],
    ['a value not in the enum', { ...big, mode: 'w' }, /^mode: not one of x\|y\|z: w/],
    [
      'a list past its bound',
      { ...big, items: Array.from({ length: 21 }, () => [0, 0]) },
      /^items: list of 21/,
    ],
    ['an unknown case', { kind: 'huge' }, /^kind: unknown case huge/],
  ])('%s is an InvalidArgumentError naming the field', (_what, value, message) => {
    const err = (() => {
      try {
        encode(SAMPLE, value as Sample);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toMatch(message);
  });

  test('a string counts its UTF-8 bytes against the bound, not its UTF-16 units', () => {
    expect(() => encode(SAMPLE, { ...big, name: '€'.repeat(14) })).toThrow(/42 bytes exceeds 40/);
    expect(decodeSample(encode(SAMPLE, { ...big, name: '€'.repeat(13) }))).toMatchObject({
      name: '€'.repeat(13),
    });
  });

  test('an absent optional field is omitted on decode, a present one kept', () => {
    expect(decodeSample(encode(SAMPLE, big))).not.toHaveProperty('maybe');
    expect(decodeSample(encode(SAMPLE, { ...big, maybe: '' }))).toHaveProperty('maybe', '');
  });
});

describe('schema codec: malformed input is the typed error, with the path', () => {
  const good = encode(SAMPLE, { kind: 'small', a: 1, b: 2, c: 3, flag: true });

  test('truncation, trailing bytes, an unknown tag and a bad boolean', () => {
    expect(() => decodeSample(good.subarray(0, good.length - 1))).toThrow(/^small\.flag: truncated/);
    expect(() => decodeSample(Buffer.concat([good, Buffer.from([0])]))).toThrow(/1 trailing bytes/);
    expect(() => decodeSample(Buffer.from([9]))).toThrow(/unknown kind 9/);
    const badFlag = Buffer.from(good);
    badFlag[badFlag.length - 1] = 2;
    expect(() => decodeSample(badFlag)).toThrow(TestMalformedError);
    expect(() => decodeSample(badFlag)).toThrow(/small\.flag: bad boolean 2/);
  });

  test('a list count the input cannot hold is refused before anything is allocated', () => {
    const table = list(u53, 0xffffffff);
    const bomb = Buffer.from([0xff, 0xff, 0xff, 0xff]); // 2^32 - 1 items of 8 bytes, none present
    expect(() => decode(table, bomb, malformed)).toThrow(/list of 4294967295 items truncated/);
    const overBound = Buffer.from([21, ...Buffer.alloc(21 * 9)]);
    expect(() => decode(list(pair(u53, u8), 20), overBound, malformed)).toThrow(/21 items exceeds 20/);
  });

  test('a u64 at or beyond 2^53 is refused, never rounded', () => {
    const at53 = Buffer.alloc(8);
    at53.writeUInt32LE(0x200000, 4);
    expect(() => decode(u53, at53, malformed)).toThrow(/integer beyond 2\^53/);
    const below = Buffer.alloc(8, 0xff);
    below.writeUInt32LE(0x1fffff, 4);
    expect(decode(u53, below, malformed)).toBe(Number.MAX_SAFE_INTEGER);
  });

  test('strings must be well-formed UTF-8; a real U+FFFD is kept', () => {
    const field = str();
    expect(() => decode(field, Buffer.from([2, 0, 0xc3, 0x28]), malformed)).toThrow(/not well-formed UTF-8/);
    expect(() => decode(field, Buffer.from([1, 0, 0xff]), malformed)).toThrow(/not well-formed UTF-8/);
    expect(decode(field, encode(field, 'a\ufffdb'), malformed)).toBe('a\ufffdb');
  });

  test('an enum index past its values and a bad presence byte', () => {
    expect(() => decode(enumOf(['a', 'b']), Buffer.from([2]), malformed)).toThrow(/enum value 2 not in a\|b/);
    expect(() => decode(optional(u8), Buffer.from([2, 0]), malformed)).toThrow(/bad presence byte 2/);
  });
});

describe('schema codec: property', () => {
  test('random values round-trip and re-encode to the same bytes', () => {
    fc.assert(
      fc.property(sampleArb, (value) => {
        const bytesOut = encode(SAMPLE, value);
        const decoded = decodeSample(bytesOut);
        expect(decoded).toEqual(value);
        expect(encode(SAMPLE, decoded)).toEqual(bytesOut);
      }),
      propertyParams('schema round-trip', 1000),
    );
  });

  test('mutated or truncated encodings are refused with the typed error or decode to a valid value', () => {
    fc.assert(
      fc.property(
        sampleArb,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.nat(),
        (value, flips, cut) => {
          const original = encode(SAMPLE, value);
          const mutated = Buffer.from(original);
          for (const [at, xor] of flips) mutated[at % mutated.length] = mutated[at % mutated.length]! ^ xor;
          for (const candidate of [mutated, original.subarray(0, cut % original.length)]) {
            try {
              const decoded = decodeSample(candidate);
              // Whatever decodes is a value the table accepts, and it is exactly these bytes.
              expect(encode(SAMPLE, decoded)).toEqual(Buffer.from(candidate));
            } catch (err) {
              expect(err).toBeInstanceOf(TestMalformedError);
            }
          }
        },
      ),
      propertyParams('schema mutations', 3000),
    );
  });
});
