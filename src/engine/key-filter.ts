/**
 * A Bloom filter over L0's keys (latin1 strings), so that a point read of a key L0 does not hold —
 * most reads of a large store — skips the B+tree walk (in a 1 M-key store the walk was a quarter
 * of a get's CPU). No false negatives; about 1 % false positives at BITS_PER_KEY bits per key with
 * PROBES probes, kept there by doubling: when the keys added pass the capacity, the filter is
 * rebuilt twice as large from the keys its owner hands back (amortized O(1) per key).
 *
 * Hashing: two 32-bit hashes per key in one pass over its chars (FNV-1a and a multiply-xorshift
 * variant), combined by double hashing (Kirsch–Mitzenmacher) into the PROBES bit positions. Hand
 * written rather than a library: it sits in the put and get inner loops, where a general filter's
 * byte hashing of a string costs more than this whole filter.
 */

const BITS_PER_KEY = 10;
const PROBES = 4;
const INITIAL_CAPACITY = 4096;

export class KeyFilter {
  private bits: Uint32Array;
  private mask: number;
  private capacity: number;
  private count = 0;

  constructor(
    /** All keys added so far, for a rebuild when the filter doubles. */
    private readonly keys: () => Iterable<string>,
    /** Keys expected (at least INITIAL_CAPACITY is reserved). */
    capacity = INITIAL_CAPACITY,
  ) {
    this.capacity = Math.max(INITIAL_CAPACITY, capacity);
    const words = wordsFor(this.capacity);
    this.bits = new Uint32Array(words);
    this.mask = words * 32 - 1;
  }

  /** Adds `key`, which its owner already holds (a rebuild reads the owner's keys). */
  add(key: string): void {
    if (++this.count > this.capacity) {
      this.grow();
      return; // the rebuild added every key, this one included (its owner already holds it)
    }
    this.set(key);
  }

  /** False: `key` was never added. True: it probably was. */
  mayContain(key: string): boolean {
    hashKey(key);
    const bits = this.bits;
    for (let p = 0; p < PROBES; p++) {
      const bit = (hashA + Math.imul(p, hashB)) & this.mask;
      if ((bits[bit >>> 5]! & (1 << (bit & 31))) === 0) return false;
    }
    return true;
  }

  private set(key: string): void {
    hashKey(key);
    const bits = this.bits;
    for (let p = 0; p < PROBES; p++) {
      const bit = (hashA + Math.imul(p, hashB)) & this.mask;
      bits[bit >>> 5]! |= 1 << (bit & 31);
    }
  }

  private grow(): void {
    this.capacity *= 2;
    const words = wordsFor(this.capacity);
    this.bits = new Uint32Array(words);
    this.mask = words * 32 - 1;
    this.count = 0;
    for (const key of this.keys()) {
      this.count++;
      this.set(key);
    }
  }
}

/** The two hashes `hashKey` computed last (module slots: no allocation per key). */
let hashA = 0;
let hashB = 0;

function hashKey(key: string): void {
  let h1 = 0x811c9dc5;
  let h2 = 0x9747b28c;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995);
    h2 ^= h2 >>> 15;
  }
  hashA = h1;
  hashB = h2 | 1;
}

/** Words for `capacity` keys at BITS_PER_KEY, rounded up to a power of two (positions by mask). */
function wordsFor(capacity: number): number {
  let words = 1;
  while (words * 32 < capacity * BITS_PER_KEY) words *= 2;
  return words;
}
