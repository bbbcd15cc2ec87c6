/**
 * Schema-driven binary codecs: one field table per message type drives encode, decode and
 * validation. The replication control messages (messages.ts) and the client protocol
 * (src/server/client-protocol.ts) are both written as tables of these fields; neither has a
 * hand-written reader, writer or encode/decode switch.
 *
 * A table is built from combinators (`struct`, `variant`, `list`, `optional`, …) over primitive
 * fields. Every field knows three things:
 *   - `write(w, value)`: validates the value (integer ranges, enum membership, length bounds) and
 *     appends its encoding; a value the table cannot express is an InvalidArgumentError naming
 *     the field, raised before anything is sent.
 *   - `read(r)`: parses its encoding at the reader's position, checking every length against the
 *     bytes left, every integer against its range, every enum and variant tag against the table,
 *     every string for well-formed UTF-8. A malformed input raises an internal DecodeFault, which
 *     `decode` turns into the caller's typed error (MalformedMessageError, ProtocolError), with
 *     the path of the field that failed.
 *   - `minBytes`: the fewest bytes one encoded value takes, so a list's announced count is checked
 *     against the bytes left before anything is allocated (a corrupt count cannot ask for 2^32
 *     elements).
 * `decode` also requires the table to consume the input exactly (trailing bytes are malformed),
 * so a decoded value re-encodes to the same bytes: random bytes either fail with the typed error
 * or are a valid message — never a crash, a RangeError, or a silent misread.
 *
 * Encoding (little-endian throughout): u8/u16/u32 as themselves; `u53` as a u64 holding an exact
 * JS integer below 2^53 (a larger one on the wire is malformed, never rounded); `pos` a signed
 * position ≥ -1 stored as u64 of v + 1; `bool` one byte 0/1; strings and byte strings a length
 * prefix (u8, u16 or u32: the narrowest that holds the field's maximum) then the bytes; lists a
 * count prefix chosen the same way, then the items; `optional` a presence byte; `variant` a tag
 * byte naming the case, then the case's struct.
 *
 * Why not a library. node_modules has protobufjs (through etcd3/grpc) and the registry has avsc,
 * msgpackr, restructure and typed-binary. None validates on decode what this protocol needs:
 * protobuf (and msgpack) accept missing fields as defaults and skip unknown ones, so a frame
 * truncated at a field boundary decodes to a *different valid message*; 64-bit integers come back
 * as Long objects or lossy doubles instead of "exact below 2^53 or refused"; and none of them
 * checks enum values, list bounds or UTF-8 well-formedness without a second hand-written pass —
 * which is the code this module replaces. Their wire formats also carry per-field tags the
 * tables here do not need (all nodes run one build: wire compatibility across versions is not a
 * goal). The whole codec is this module (about 440 lines of code) with no dependency, and it
 * encodes a client operation into a shared batch buffer without allocating per field.
 */
import { InvalidArgumentError } from '../errors.js';

const TWO_32 = 2 ** 32;
const U53_HIGH_LIMIT = 2 ** 21; // the high u32 of an integer below 2^53

/** A decode failure inside the tables; `decode` rethrows it as the protocol's typed error. */
class DecodeFault extends Error {
  constructor(
    readonly detail: string,
    public path = '',
  ) {
    super(detail);
  }
}

/** Appends little-endian fields to a buffer that grows by doubling. */
export class Writer {
  buf: Buffer;
  /** Bytes written so far; a caller may move it back to drop a partly written value. */
  at = 0;

  constructor(initialBytes = 256) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + n));
    this.buf.copy(next, 0, 0, this.at);
    this.buf = next;
  }

  u8(v: number): void {
    this.room(1);
    this.buf[this.at++] = v;
  }

  u16(v: number): void {
    this.room(2);
    this.buf.writeUInt16LE(v, this.at);
    this.at += 2;
  }

  u32(v: number): void {
    this.room(4);
    this.buf.writeUInt32LE(v >>> 0, this.at);
    this.at += 4;
  }

  u64(v: number): void {
    this.room(8);
    this.buf.writeUInt32LE(v % TWO_32, this.at);
    this.buf.writeUInt32LE(Math.floor(v / TWO_32), this.at + 4);
    this.at += 8;
  }

  raw(bytes: Uint8Array): void {
    this.room(bytes.length);
    this.buf.set(bytes, this.at);
    this.at += bytes.length;
  }

  /** UTF-8 of `v`, returning its byte length (room for the worst case is made first). */
  utf8(v: string): number {
    this.room(v.length * 3);
    const n = this.buf.write(v, this.at, 'utf8');
    this.at += n;
    return n;
  }

  /** The bytes written (a view: the writer must not be used afterwards). */
  finish(): Buffer {
    return this.buf.subarray(0, this.at);
  }
}

/** Reads little-endian fields from `[at, end)` of a buffer, refusing to read past `end`. */
export class Reader {
  constructor(
    readonly buf: Buffer,
    public at = 0,
    readonly end = buf.length,
  ) {}

  get remaining(): number {
    return this.end - this.at;
  }

  need(n: number): void {
    if (this.at + n > this.end)
      throw new DecodeFault(`truncated (${n} bytes needed, ${this.remaining} left)`);
  }

  u8(): number {
    this.need(1);
    return this.buf[this.at++]!;
  }

  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16LE(this.at);
    this.at += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.at);
    this.at += 4;
    return v;
  }

  u64(): number {
    this.need(8);
    const lo = this.buf.readUInt32LE(this.at);
    const hi = this.buf.readUInt32LE(this.at + 4);
    if (hi >= U53_HIGH_LIMIT) throw new DecodeFault('integer beyond 2^53');
    this.at += 8;
    return hi * TWO_32 + lo;
  }

  /** `n` bytes as a view into the input (no copy). */
  view(n: number): Buffer {
    this.need(n);
    const v = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return v;
  }
}

/** One field of a table: how a value of type T is validated, written and read. */
export interface Field<T> {
  readonly minBytes: number;
  readonly write: (w: Writer, value: T) => void;
  readonly read: (r: Reader) => T;
  /** Set by `optional`: a struct makes the key optional and omits it when absent. */
  readonly optional?: true;
}

export type FieldType<F> = F extends Field<infer T> ? T : never;

const fail = (detail: string): never => {
  throw new InvalidArgumentError(detail);
};

function integer(name: string, bytes: 1 | 2 | 4, max: number): Field<number> {
  const check = (v: number): void => {
    if (!(Number.isInteger(v) && v >= 0 && v <= max)) fail(`not a ${name}: ${v}`);
  };
  let write: (w: Writer, v: number) => void;
  let read: (r: Reader) => number;
  if (bytes === 1) {
    write = (w, v) => {
      check(v);
      w.u8(v);
    };
    read = (r) => r.u8();
  } else if (bytes === 2) {
    write = (w, v) => {
      check(v);
      w.u16(v);
    };
    read = (r) => r.u16();
  } else {
    write = (w, v) => {
      check(v);
      w.u32(v);
    };
    read = (r) => r.u32();
  }
  return { minBytes: bytes, write, read };
}

export const u8: Field<number> = integer('u8', 1, 0xff);
export const u16: Field<number> = integer('u16', 2, 0xffff);
export const u32: Field<number> = integer('u32', 4, 0xffffffff);

/** An exact integer in [0, 2^53) as a u64. */
export const u53: Field<number> = {
  minBytes: 8,
  write: (w, v) => {
    if (!(Number.isSafeInteger(v) && v >= 0)) fail(`not a u64 below 2^53: ${v}`);
    w.u64(v);
  },
  read: (r) => r.u64(),
};

/** A signed position, -1 meaning "none", stored as the u64 v + 1. */
export const pos: Field<number> = {
  minBytes: 8,
  write: (w, v) => {
    if (!(Number.isSafeInteger(v + 1) && v >= -1)) fail(`not a position (-1 or more): ${v}`);
    w.u64(v + 1);
  },
  read: (r) => r.u64() - 1,
};

export const bool: Field<boolean> = {
  minBytes: 1,
  write: (w, v) => {
    if (typeof v !== 'boolean') fail(`not a boolean: ${String(v)}`);
    w.u8(v ? 1 : 0);
  },
  read: (r) => {
    const v = r.u8();
    if (v > 1) throw new DecodeFault(`bad boolean ${v}`);
    return v === 1;
  },
};

/** The narrowest length/count prefix that holds `max`. */
function prefix(max: number): Field<number> {
  assertIntegerBound(max);
  return max <= 0xff ? u8 : max <= 0xffff ? u16 : u32;
}

function assertIntegerBound(max: number): void {
  if (!(Number.isInteger(max) && max >= 0 && max <= 0xffffffff)) {
    throw new InvalidArgumentError(`a table bound must be a u32, got ${max}`);
  }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A UTF-8 string of at most `maxBytes` bytes. Decoding is strict: bytes that are not well-formed
 * UTF-8 are malformed (Buffer's decoder would substitute U+FFFD and misread them silently). The
 * fast path decodes with Buffer and re-checks with the fatal decoder only when a U+FFFD appears.
 */
export function str(maxBytes = 0xffff): Field<string> {
  const length = prefix(maxBytes);
  return {
    minBytes: length.minBytes,
    write: (w, v) => {
      if (typeof v !== 'string') fail(`not a string: ${String(v)}`);
      const start = w.at;
      length.write(w, 0);
      const n = w.utf8(v);
      if (n > maxBytes) {
        w.at = start;
        fail(`string of ${n} bytes exceeds ${maxBytes}`);
      }
      patchPrefix(w, start, length, n);
    },
    read: (r) => {
      const n = length.read(r);
      if (n > maxBytes) throw new DecodeFault(`string of ${n} bytes exceeds ${maxBytes}`);
      r.need(n);
      const v = r.buf.toString('utf8', r.at, r.at + n);
      if (v.includes('\ufffd')) {
        try {
          strictUtf8.decode(r.buf.subarray(r.at, r.at + n));
        } catch {
          throw new DecodeFault('string is not well-formed UTF-8');
        }
      }
      r.at += n;
      return v;
    },
  };
}

/** Overwrites the length or count prefix `length` (u8, u16 or u32) written at `start` with `n`. */
export function patchPrefix(w: Writer, start: number, length: Field<number>, n: number): void {
  if (length === u8) w.buf[start] = n;
  else if (length === u16) w.buf.writeUInt16LE(n, start);
  else w.buf.writeUInt32LE(n, start);
}

/**
 * A byte string of at most `maxBytes` bytes. Decoded as a view into the input (no copy): a caller
 * that keeps it past the input's lifetime (or hands it to a user) copies it.
 */
export function bytes(maxBytes: number): Field<Buffer> {
  const length = prefix(maxBytes);
  return {
    minBytes: length.minBytes,
    write: (w, v) => {
      if (!(v instanceof Uint8Array)) fail('not a byte string');
      if (v.length > maxBytes) fail(`byte string of ${v.length} bytes exceeds ${maxBytes}`);
      length.write(w, v.length);
      w.raw(v);
    },
    read: (r) => {
      const n = length.read(r);
      if (n > maxBytes) throw new DecodeFault(`byte string of ${n} bytes exceeds ${maxBytes}`);
      return r.view(n);
    },
  };
}

/** One of `values`, as its index (u8). */
export function enumOf<const T extends string>(values: readonly T[]): Field<T> {
  if (values.length === 0 || values.length > 256)
    throw new InvalidArgumentError('an enum has 1 to 256 values');
  const codes = new Map(values.map((v, i) => [v, i]));
  return {
    minBytes: 1,
    write: (w, v) => {
      const code = codes.get(v);
      if (code === undefined) fail(`not one of ${values.join('|')}: ${String(v)}`);
      w.u8(code!);
    },
    read: (r) => {
      const code = r.u8();
      const v = values[code];
      if (v === undefined) throw new DecodeFault(`enum value ${code} not in ${values.join('|')}`);
      return v;
    },
  };
}

/** A list of at most `maxCount` items (the count prefix as narrow as `maxCount` allows). */
export interface ListField<T> extends Field<T[]> {
  readonly count: Field<number>;
  readonly item: Field<T>;
  readonly maxCount: number;
}

export function list<T>(item: Field<T>, maxCount: number): ListField<T> {
  const count = prefix(maxCount);
  return {
    count,
    item,
    maxCount,
    minBytes: count.minBytes,
    write: (w, values) => {
      if (!Array.isArray(values)) fail('not a list');
      if (values.length > maxCount) fail(`list of ${values.length} items exceeds ${maxCount}`);
      count.write(w, values.length);
      for (let i = 0; i < values.length; i++) item.write(w, values[i]!);
    },
    read: (r) => {
      const n = count.read(r);
      if (n > maxCount) throw new DecodeFault(`list of ${n} items exceeds ${maxCount}`);
      // Every item takes at least minBytes: a count the remaining bytes cannot hold is refused
      // before anything is allocated for it.
      if (n * Math.max(1, item.minBytes) > r.remaining) throw new DecodeFault(`list of ${n} items truncated`);
      const out = new Array<T>(n);
      let i = 0;
      try {
        for (; i < n; i++) out[i] = item.read(r);
      } catch (err) {
        throw withPath(err, i);
      }
      return out;
    },
  };
}

/** A pair (written as its two fields in order). */
export function pair<A, B>(a: Field<A>, b: Field<B>): Field<[A, B]> {
  return {
    minBytes: a.minBytes + b.minBytes,
    write: (w, v) => {
      if (!Array.isArray(v) || v.length !== 2) fail('not a pair');
      a.write(w, v[0]);
      b.write(w, v[1]);
    },
    read: (r) => [a.read(r), b.read(r)],
  };
}

/** A value that may be absent: a presence byte, then the value when present. */
export function optional<T>(field: Field<T>): Field<T | undefined> & { readonly optional: true } {
  return {
    optional: true,
    minBytes: 1,
    write: (w, v) => {
      w.u8(v === undefined ? 0 : 1);
      if (v !== undefined) field.write(w, v);
    },
    read: (r) => {
      const present = r.u8();
      if (present > 1) throw new DecodeFault(`bad presence byte ${present}`);
      return present === 1 ? field.read(r) : undefined;
    },
  };
}

/** Any field, whatever its type (what a table or a variant's case list holds). */
interface AnyField {
  readonly minBytes: number;
  readonly write: (w: Writer, value: never) => void;
  readonly read: (r: Reader) => unknown;
  readonly optional?: true;
}
type Table = Record<string, AnyField>;
type OptionalKeys<S> = { [K in keyof S]: S[K] extends { optional: true } ? K : never }[keyof S];
type Simplify<T> = { [K in keyof T]: T[K] } & {};
/** The value a table describes: optional fields become optional keys. */
export type StructOf<S> = Simplify<
  { [K in Exclude<keyof S, OptionalKeys<S>>]: FieldType<S[K]> } & {
    [K in OptionalKeys<S>]?: Exclude<FieldType<S[K]>, undefined>;
  }
>;

/** `err`, with `name` prepended to its path when it is a DecodeFault (the field it failed in). */
function withPath(err: unknown, name: string | number): unknown {
  if (err instanceof DecodeFault) err.path = err.path === '' ? String(name) : `${name}.${err.path}`;
  return err;
}

/** A struct: its fields in table order; also the body of each variant case. */
export interface StructField<T> extends Field<T> {
  /** Reads the fields into `out` (a variant's object, which already holds the tag). */
  readonly readInto: (r: Reader, out: Record<string, unknown>) => void;
}

export function struct<const S extends Table>(table: S): StructField<StructOf<S>> {
  const names = Object.keys(table);
  const fields = names.map((n) => table[n]! as unknown as Field<unknown>);
  const minBytes = fields.reduce((sum, f) => sum + f.minBytes, 0);
  const readInto = (r: Reader, out: Record<string, unknown>): void => {
    let i = 0;
    try {
      for (; i < fields.length; i++) {
        const field = fields[i]!;
        const v = field.read(r);
        if (v !== undefined || field.optional !== true) out[names[i]!] = v;
      }
    } catch (err) {
      throw withPath(err, names[i]!);
    }
  };
  return {
    minBytes,
    readInto,
    write: (w, value) => {
      const record = value as Record<string, unknown>;
      let i = 0;
      try {
        for (; i < fields.length; i++) fields[i]!.write(w, record[names[i]!]);
      } catch (err) {
        if (err instanceof InvalidArgumentError) {
          throw new InvalidArgumentError(`${names[i]}: ${err.message}`);
        }
        throw err;
      }
    },
    read: (r) => {
      const out: Record<string, unknown> = {};
      readInto(r, out);
      return out as StructOf<S>;
    },
  };
}

type AnyStruct = AnyField & { readonly readInto: (r: Reader, out: Record<string, unknown>) => void };
type Cases = Record<string, readonly [number, AnyStruct]>;
/** The union a variant describes: each case's struct with the tag key set to the case's name. */
export type VariantOf<K extends string, C extends Cases> = {
  [N in keyof C & string]: Simplify<{ [P in K]: N } & FieldType<C[N][1]>>;
}[keyof C & string];

/**
 * A tagged union: a tag byte (each case's code, unique, 0–255) names the case; the case's struct
 * follows. The tag is the value's `tagKey` property (the case's name).
 */
export function variant<const K extends string, const C extends Cases>(
  tagKey: K,
  cases: C,
): Field<VariantOf<K, C>> {
  const byName = new Map<string, readonly [number, AnyStruct]>();
  const byCode: ([string, AnyStruct] | undefined)[] = new Array(256).fill(undefined);
  for (const [name, entry] of Object.entries(cases)) {
    const [code, body] = entry;
    if (!(Number.isInteger(code) && code >= 0 && code <= 255) || byCode[code] !== undefined) {
      throw new InvalidArgumentError(`variant ${tagKey}: code ${code} of ${name} is not a free u8`);
    }
    byCode[code] = [name, body];
    byName.set(name, entry);
  }
  const minBytes = 1 + Math.min(...[...byName.values()].map(([, body]) => body.minBytes));
  return {
    minBytes,
    write: (w, value) => {
      const name = (value as Record<string, unknown>)[tagKey];
      const entry = typeof name === 'string' ? byName.get(name) : undefined;
      if (entry === undefined) fail(`${tagKey}: unknown case ${String(name)}`);
      w.u8(entry![0]);
      entry![1].write(w, value as never);
    },
    read: (r) => {
      const code = r.u8();
      const entry = byCode[code];
      if (entry === undefined) throw new DecodeFault(`unknown ${tagKey} ${code}`);
      const out: Record<string, unknown> = { [tagKey]: entry[0] };
      try {
        entry[1].readInto(r, out);
      } catch (err) {
        throw withPath(err, entry[0]);
      }
      return out as VariantOf<K, C>;
    },
  };
}

/** Encodes `value` with `field` into a fresh buffer (InvalidArgumentError for a value the table refuses). */
export function encode<T>(field: Field<T>, value: T, initialBytes = 128): Buffer {
  const w = new Writer(initialBytes);
  field.write(w, value);
  return w.finish();
}

/**
 * Decodes all of `[start, end)` of `bytes` as `field`. Anything malformed — truncated, out of
 * range, an unknown tag, bad UTF-8, trailing bytes — is thrown as `malformed(detail)`.
 */
export function decode<T>(
  field: Field<T>,
  bytes: Uint8Array,
  malformed: (detail: string) => Error,
  start = 0,
  end = bytes.length,
): T {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const r = new Reader(buf, start, end);
  try {
    const value = field.read(r);
    if (r.at !== end) throw new DecodeFault(`${end - r.at} trailing bytes`);
    return value;
  } catch (err) {
    if (err instanceof DecodeFault)
      throw malformed(err.path === '' ? err.detail : `${err.path}: ${err.detail}`);
    throw err;
  }
}
