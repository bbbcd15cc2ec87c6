/**
 * Key order outside the engine (issue #17): compareKeys is the stores' order, UTF-8 bytes, and
 * routing (regionOf, region validation) follows it rather than JS string order.
 */
import fc from 'fast-check';
import { validateRegionConfig } from '../../coordination/validate.js';
import { regionOf, validateRegionSpecs } from '../../src/cluster/regions.js';
import { InvalidArgumentError, InvalidConfigurationError } from '../../src/errors.js';
import { compareKeys, keyInRange } from '../../src/keys.js';

const utf8Order = (a: string, b: string): number =>
  Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

/** In `u` mode a surrogate pair is one code point, so \p{Cs} matches only unpaired halves. */
const LONE_SURROGATE = /\p{Cs}/u;

/** Characters around every place UTF-16 and UTF-8 orders part, so random keys collide there often. */
const edgeChar = fc.constantFrom(
  '',
  'a',
  '\u007f',
  '\u0080',
  '\u07ff',
  '\u0800',
  '\ud7ff',
  '\ue000',
  '\uf8ff',
  '\uffff',
  '\u{10000}',
  '\u{1f404}',
  '\u{1f405}',
  '\u{10ffff}',
);
const key = fc.oneof(
  fc.string({ unit: 'binary' }),
  fc.array(edgeChar, { maxLength: 6 }).map((chars) => chars.join('')),
  fc
    .tuple(fc.array(edgeChar, { maxLength: 3 }), fc.string({ unit: 'binary', maxLength: 4 }))
    .map(([chars, tail]) => chars.join('') + tail),
);

describe('compareKeys', () => {
  it('agrees with Buffer.compare on UTF-8 for arbitrary strings, astral code points included', () => {
    fc.assert(
      fc.property(key, key, (a, b) => {
        expect(LONE_SURROGATE.test(a) || LONE_SURROGATE.test(b)).toBe(false); // well-formed keys only
        expect(Math.sign(compareKeys(a, b))).toBe(utf8Order(a, b));
        expect(Math.sign(compareKeys(b, a))).toBe(utf8Order(b, a));
      }),
      { numRuns: 5000 },
    );
  });

  it('sorts a list as the stores do', () => {
    fc.assert(
      fc.property(fc.array(key, { maxLength: 30 }), (keys) => {
        const bytes = [...keys].sort(utf8Order);
        expect([...keys].sort(compareKeys)).toEqual(bytes);
      }),
    );
  });

  it('puts an astral key above U+E000, where JS string order puts it below', () => {
    expect('\u{1f404}' < '\ue000').toBe(true); // UTF-16: 0xD83D < 0xE000
    expect(compareKeys('\u{1f404}', '\ue000')).toBeGreaterThan(0); // UTF-8: F0 9F > EE 80
    expect(compareKeys('\uffff', '\u{10000}')).toBeLessThan(0);
    expect(compareKeys('ab', 'ab')).toBe(0);
    expect(compareKeys('a', 'a\u{1f404}')).toBeLessThan(0);
    expect(keyInRange('\u{1f404}', '\ue000', undefined)).toBe(true);
    expect(keyInRange('\u{1f404}', '', '\ue000')).toBe(false);
  });
});

describe('routing in byte order', () => {
  const regions = [
    { regionId: 'low', minKey: '', maxKey: '\ue000' },
    { regionId: 'mid', minKey: '\ue000', maxKey: '\u{1f405}' },
    { regionId: 'high', minKey: '\u{1f405}' },
  ];

  it('regionOf sends a key to the region whose byte range holds it', () => {
    expect(regionOf(regions, '\u{1f404}').regionId).toBe('mid');
    expect(regionOf(regions, '\ud7ff').regionId).toBe('low');
    expect(regionOf(regions, 'zzz').regionId).toBe('low');
    expect(regionOf(regions, '\ue000').regionId).toBe('mid');
    expect(regionOf(regions, '\uffff').regionId).toBe('mid');
    expect(regionOf(regions, '\u{1f405}').regionId).toBe('high');
    expect(regionOf(regions, '\u{10ffff}').regionId).toBe('high');
  });

  it('regionOf agrees with a linear search in UTF-8 byte order for any key', () => {
    fc.assert(
      fc.property(key, (k) => {
        const expected = regions.find(
          (r) => utf8Order(r.minKey, k) <= 0 && (r.maxKey === undefined || utf8Order(k, r.maxKey) < 0),
        );
        expect(regionOf(regions, k).regionId).toBe(expected!.regionId);
      }),
    );
  });

  it('region specs and configurations are validated in byte order', () => {
    // '\ue000' < '\u{1f404}' in bytes (JS string order says the opposite).
    expect(() =>
      validateRegionSpecs([
        { regionId: 'a', minKey: '', maxKey: '\ue000' },
        { regionId: 'b', minKey: '\ue000', maxKey: '\u{1f404}' },
        { regionId: 'c', minKey: '\u{1f404}' },
      ]),
    ).not.toThrow();
    expect(() =>
      validateRegionSpecs([
        { regionId: 'a', minKey: '', maxKey: '\u{1f404}' },
        { regionId: 'b', minKey: '\u{1f404}', maxKey: '\ue000' },
        { regionId: 'c', minKey: '\ue000' },
      ]),
    ).toThrow(InvalidArgumentError);
    const config = { regionId: 'b', epoch: 1, primary: 'n1', backups: [], state: 'active' as const };
    expect(() => validateRegionConfig({ ...config, minKey: '\ue000', maxKey: '\u{1f404}' })).not.toThrow();
    expect(() => validateRegionConfig({ ...config, minKey: '\u{1f404}', maxKey: '\ue000' })).toThrow(
      InvalidConfigurationError,
    );
  });
});

describe('binary keys (Uint8Array) in byte order', () => {
  const regions = [
    { regionId: 'low', minKey: '', maxKey: '\ue000' },
    { regionId: 'mid', minKey: '\ue000', maxKey: '\u{1f405}' },
    { regionId: 'high', minKey: '\u{1f405}' },
  ];

  it('a string and its UTF-8 bytes are the same key; mixed comparisons agree with the strings', () => {
    fc.assert(
      fc.property(key, key, (a, b) => {
        const bytesA = Buffer.from(a, 'utf8');
        expect(compareKeys(bytesA, a)).toBe(0);
        expect(Math.sign(compareKeys(bytesA, b))).toBe(utf8Order(a, b));
        expect(Math.sign(compareKeys(a, new Uint8Array(Buffer.from(b, 'utf8'))))).toBe(utf8Order(a, b));
      }),
      { numRuns: 2000 },
    );
  });

  it('routes any bytes, UTF-8 or not, by comparing them with the bounds’ UTF-8', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 6 }), (k) => {
        const expected = regions.find(
          (r) =>
            Buffer.compare(Buffer.from(r.minKey), k) <= 0 &&
            (r.maxKey === undefined || Buffer.compare(k, Buffer.from(r.maxKey)) < 0),
        );
        expect(regionOf(regions, k).regionId).toBe(expected!.regionId);
      }),
      { numRuns: 2000 },
    );
    expect(regionOf(regions, Buffer.from([0xff, 0xff])).regionId).toBe('high'); // not UTF-8
    expect(regionOf(regions, Buffer.from([0xee, 0x80, 0x7f])).regionId).toBe('low'); // below EE 80 80
    expect(regionOf(regions, Buffer.from([0xee, 0x80, 0x80, 0x00])).regionId).toBe('mid');
    expect(keyInRange(Buffer.from([0xed, 0xff]), '', '\ue000')).toBe(true);
  });
});
