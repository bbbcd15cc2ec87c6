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
 *
 * Binary keys (a `Uint8Array`, on the client protocol and in the clients) are their own bytes;
 * a string key is its UTF-8 bytes, so `'a'` and `Buffer.from('a')` are the same key. Comparing a
 * binary key with a string (a region bound, say) compares the string's UTF-8 bytes with
 * Buffer.compare: byte order again, whatever bytes the key holds (it need not be UTF-8).
 */

/** A key as users give it: a string (its UTF-8 bytes) or bytes. */
export type KeyLike = string | Uint8Array;

/** Negative, zero or positive as `a` sorts before, with or after `b` in (UTF-8) byte order. */
export function compareKeys(a: KeyLike, b: KeyLike): number {
  if (typeof a !== 'string' || typeof b !== 'string') {
    if (typeof b === 'string') return compareBytesWithString(a as Uint8Array, b);
    if (typeof a === 'string') {
      const c = compareBytesWithString(b, a);
      return c === 0 ? 0 : -c; // never -0
    }
    return Buffer.compare(a, b);
  }
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

/**
 * Bytes against a string's UTF-8 without encoding it while the string is ASCII (region bounds
 * are, as a rule): a code unit below 0x80 is its own UTF-8 byte. At the first other unit the rest
 * is compared as bytes.
 */
function compareBytesWithString(a: Uint8Array, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const unit = b.charCodeAt(i);
    if (unit >= 0x80) return Buffer.compare(a.subarray(i), Buffer.from(b.slice(i), 'utf8'));
    if (a[i] !== unit) return a[i]! - unit;
  }
  if (a.length === b.length) return 0;
  if (a.length < b.length) return -1;
  return 1;
}

/** The larger of two keys in byte order. */
export function maxKeyOf<A extends KeyLike, B extends KeyLike>(a: A, b: B): A | B {
  return compareKeys(a, b) >= 0 ? a : b;
}

/** The smaller of two keys in byte order. */
export function minKeyOf<A extends KeyLike, B extends KeyLike>(a: A, b: B): A | B {
  return compareKeys(a, b) <= 0 ? a : b;
}

/** Whether `key` lies in `[minKey, maxKey)` (maxKey undefined = unbounded) in byte order. */
export function keyInRange(key: KeyLike, minKey: KeyLike, maxKey: KeyLike | undefined): boolean {
  return compareKeys(key, minKey) >= 0 && (maxKey === undefined || compareKeys(key, maxKey) < 0);
}

/** The key's bytes: a string's UTF-8, or a view of the given bytes (no copy). */
export function keyBytesOf(key: KeyLike): Buffer {
  if (typeof key === 'string') return Buffer.from(key, 'utf8');
  return Buffer.isBuffer(key) ? key : Buffer.from(key.buffer, key.byteOffset, key.byteLength);
}

/** How many bytes the key is: a string's UTF-8 length. */
export function keyByteLength(key: KeyLike): number {
  return typeof key === 'string' ? Buffer.byteLength(key, 'utf8') : key.byteLength;
}

/** A key for a message: strings as JSON, bytes as text when they are valid UTF-8, else hex (64 bytes at most). */
export function describeKeyLike(key: KeyLike): string {
  if (typeof key === 'string') return JSON.stringify(key);
  const bytes = keyBytesOf(key);
  const text = bytes.toString('utf8');
  if (Buffer.from(text, 'utf8').equals(bytes)) return JSON.stringify(text);
  const hex = bytes.subarray(0, 64).toString('hex');
  return `0x${hex}${bytes.length > 64 ? `… (${bytes.length} bytes)` : ''}`;
}

/** Whether `value` is something a client accepts as a key. */
export function isKey(value: unknown): value is KeyLike {
  return typeof value === 'string' || value instanceof Uint8Array;
}
