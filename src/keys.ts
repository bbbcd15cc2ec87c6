/**
 * Key order outside the engine. A store orders keys by their UTF-8 bytes (it holds them as latin1
 * strings of those bytes, so its own `<` is byte order). User keys reach routing as JS strings,
 * whose `<` is UTF-16 code-unit order — a different order once a key holds a character at or
 * above U+10000: its surrogate pair (0xD800–0xDFFF) sorts below U+E000–U+FFFF in UTF-16, while its
 * 4-byte UTF-8 form (0xF0…) sorts above their 3-byte forms (0xEE…, 0xEF…). Compared with `<`,
 * a region bound at '\uE000' would send '\u{1F404}' to the region below the bound while the
 * stores — and a scan clipped at the bound — put it above. Every comparison of a user key with
 * another key or a region bound therefore goes through `compareKeys`.
 *
 * `compareKeys` compares by Unicode code point, which is UTF-8 byte order (UTF-8 was designed so:
 * a lead byte encodes the sequence length, and longer sequences encode larger code points), without
 * encoding either string: code units are compared as-is until the first difference, and only
 * there does a surrogate count as above every other BMP unit. An unpaired surrogate is encoded by
 * Buffer.from(…, 'utf8') as U+FFFD (EF BF BD); keys holding one are not well-formed Unicode, and
 * `compareKeys` then orders by code unit (a lone surrogate is not a key a store can round-trip).
 * test/unit/keys.test.ts checks agreement with Buffer.compare on UTF-8 for well-formed strings.
 */

/** Negative, zero or positive as `a` sorts before, with or after `b` in UTF-8 byte order. */
export function compareKeys(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return orderUnit(x) - orderUnit(y);
  }
  return a.length - b.length;
}

/**
 * A code unit's rank at the first difference: surrogates (the leading halves of code points ≥
 * U+10000) move above U+E000–U+FFFF. Equal prefixes mean a differing high surrogate starts a
 * code point in both strings, a differing low surrogate follows equal high ones: either way the
 * rank decides as the code points would.
 */
function orderUnit(unit: number): number {
  if (unit < 0xd800) return unit;
  if (unit < 0xe000) return unit + 0x2000; // 0xD800–0xDFFF → 0xF800–0xFFFF
  return unit - 0x800; // 0xE000–0xFFFF → 0xD800–0xF7FF
}

/** The larger of two keys in byte order. */
export function maxKeyOf(a: string, b: string): string {
  return compareKeys(a, b) >= 0 ? a : b;
}

/** The smaller of two keys in byte order. */
export function minKeyOf(a: string, b: string): string {
  return compareKeys(a, b) <= 0 ? a : b;
}

/** A user key: a string (stored as its UTF-8 bytes) or the bytes themselves. */
export type KeyLike = string | Uint8Array;

/** The bytes a store holds for `key` (a view for byte arrays, UTF-8 for strings). */
export function keyBytesOf(key: KeyLike): Buffer {
  if (typeof key === 'string') return Buffer.from(key, 'utf8');
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength);
}

/** `compareKeys` for keys that may be bytes: the same byte order (strings compared unencoded). */
export function compareKeyLike(a: KeyLike, b: KeyLike): number {
  if (typeof a === 'string' && typeof b === 'string') return compareKeys(a, b);
  return Buffer.compare(keyBytesOf(a), keyBytesOf(b));
}

/** A key for a message: strings as JSON, bytes as UTF-8 text when they are valid UTF-8, else hex. */
export function describeKeyLike(key: KeyLike): string {
  if (typeof key === 'string') return JSON.stringify(key);
  const bytes = keyBytesOf(key);
  const text = bytes.toString('utf8');
  return Buffer.from(text, 'utf8').equals(bytes) ? JSON.stringify(text) : `0x${bytes.toString('hex')}`;
}

/** Whether `key` lies in `[minKey, maxKey)` (maxKey undefined = unbounded) in byte order. */
export function keyInRange(key: KeyLike, minKey: string, maxKey: string | undefined): boolean {
  return compareKeyLike(key, minKey) >= 0 && (maxKey === undefined || compareKeyLike(key, maxKey) < 0);
}
