/**
 * The client protocol's frames (src/server/client-protocol.ts), without sockets:
 * - property: random request, reply and auth frames round-trip through encodeFrame, a stream cut
 *   into random chunks and FrameSplitter; mutated or truncated bodies are refused with
 *   ProtocolError or decode to a frame that re-encodes to the same bytes — never another error;
 * - FrameBuilder / FrameBatcher: a tick's items leave in one frame, a frame past
 *   FLUSH_FRAME_BYTES leaves at once, an item the tables refuse fails alone and leaves the frame
 *   intact, and frame lengths past the limit are refused by the splitter.
 */
import * as fc from 'fast-check';
import { InvalidArgumentError, TalosError } from '../../src/errors.js';
import {
  type ClientFrame,
  type ClientReply,
  type ClientRequest,
  decodeFrame,
  encodeFrame,
  FLUSH_FRAME_BYTES,
  FrameBatcher,
  FrameBuilder,
  FrameSplitter,
  MAX_CLIENT_FRAME_BYTES,
  ProtocolError,
} from '../../src/server/client-protocol.js';
import { propertyParams } from '../support/property.js';

const text = fc.string({ maxLength: 12, unit: 'grapheme' });
const id = fc.nat({ max: 0xffffffff });
const blob = (maxLength: number) => fc.uint8Array({ maxLength }).map((b) => Buffer.from(b));
const key = blob(24);

const requestArb: fc.Arbitrary<ClientRequest> = fc.oneof(
  fc.record({ op: fc.constant('put' as const), regionId: text, key, value: blob(64) }),
  fc.record({ op: fc.constant('get' as const), regionId: text, key }),
  fc.record({ op: fc.constant('delete' as const), regionId: text, key }),
  fc.record(
    {
      op: fc.constant('scan' as const),
      regionId: text,
      gte: key,
      lt: key,
      limit: fc.nat({ max: 0xffffffff }),
      reverse: fc.boolean(),
    },
    { requiredKeys: ['op', 'regionId', 'gte', 'limit', 'reverse'] },
  ),
  fc.record({
    op: fc.constant('batch' as const),
    regionId: text,
    operations: fc.array(fc.record({ del: fc.boolean(), key, value: blob(16) }), { maxLength: 5 }),
  }),
  fc.record({ op: fc.constant('snapshot' as const), regionId: text }),
  fc.record(
    {
      op: fc.constant('cursor' as const),
      regionId: text,
      snapshot: id,
      gte: key,
      lt: key,
      reverse: fc.boolean(),
      values: fc.boolean(),
    },
    { requiredKeys: ['op', 'regionId', 'snapshot', 'reverse', 'values'] },
  ),
  fc.record(
    {
      op: fc.constant('next' as const),
      regionId: text,
      handle: id,
      count: id,
      rewind: fc.boolean(),
      seek: key,
    },
    { requiredKeys: ['op', 'regionId', 'handle', 'count', 'rewind'] },
  ),
  fc.record({ op: fc.constant('release' as const), regionId: text, handle: id }),
);

const replyArb: fc.Arbitrary<ClientReply> = fc.oneof(
  fc.constant({ kind: 'done' as const }),
  fc.constant({ kind: 'missing' as const }),
  fc.record({ kind: fc.constant('value' as const), value: blob(64) }),
  fc.record({
    kind: fc.constant('rows' as const),
    rows: fc.array(fc.record({ key, value: blob(16) }), { maxLength: 6 }),
  }),
  fc.record({ kind: fc.constant('error' as const), code: text, message: text, regionId: text }),
  fc.record({ kind: fc.constant('handle' as const), handle: id }),
  fc.record({
    kind: fc.constant('page' as const),
    rows: fc.array(fc.record({ key, value: blob(16) }), { maxLength: 6 }),
    done: fc.boolean(),
  }),
);

const frameArb: fc.Arbitrary<ClientFrame> = fc.oneof(
  fc.record({
    kind: fc.constant('requests' as const),
    items: fc.array(fc.record({ id, request: requestArb }), { maxLength: 8 }),
  }),
  fc.record({
    kind: fc.constant('replies' as const),
    items: fc.array(fc.record({ id, reply: replyArb }), { maxLength: 8 }),
  }),
  fc.record({ kind: fc.constant('auth' as const), id, token: text }),
);

/** Splits `stream` at `cuts` and feeds the pieces to a FrameSplitter: the bodies it yields. */
function split(stream: Buffer, cuts: number[]): Buffer[] {
  const splitter = new FrameSplitter();
  const bodies: Buffer[] = [];
  const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
  let from = 0;
  for (const to of [...points, stream.length]) {
    splitter.push(stream.subarray(from, to), (body) => bodies.push(Buffer.from(body)));
    from = to;
  }
  return bodies;
}

describe('client protocol frames: property', () => {
  test('frames round-trip through a stream cut anywhere', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { minLength: 1, maxLength: 5 }), fc.array(fc.nat()), (frames, cuts) => {
        const stream = Buffer.concat(frames.map(encodeFrame));
        const decoded = split(stream, cuts).map(decodeFrame);
        expect(decoded).toEqual(frames);
      }),
      propertyParams('client frames round-trip', 500),
    );
  });

  test('mutated or truncated bodies are a ProtocolError or a frame that re-encodes to the same bytes', () => {
    fc.assert(
      fc.property(
        frameArb,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 3 }),
        fc.nat(),
        (frame, flips, cut) => {
          const body = encodeFrame(frame).subarray(4);
          const mutated = Buffer.from(body);
          for (const [at, xor] of flips) mutated[at % mutated.length] = mutated[at % mutated.length]! ^ xor;
          for (const candidate of [mutated, body.subarray(0, cut % body.length)]) {
            try {
              const decoded = decodeFrame(candidate);
              expect(encodeFrame(decoded).subarray(4)).toEqual(Buffer.from(candidate));
            } catch (err) {
              expect(err).toBeInstanceOf(ProtocolError);
            }
          }
        },
      ),
      propertyParams('client frames: mutations', 3000),
    );
  });

  test('random bytes are a ProtocolError or a valid frame, never another error', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          const decoded = decodeFrame(Buffer.from(bytes));
          expect(encodeFrame(decoded).subarray(4)).toEqual(Buffer.from(bytes));
        } catch (err) {
          expect(err).toBeInstanceOf(ProtocolError);
        }
      }),
      propertyParams('client frames: random bytes', 3000),
    );
  });
});

describe('FrameBuilder and FrameBatcher', () => {
  const put = (n: number, value = Buffer.alloc(8)): { id: number; request: ClientRequest } => ({
    id: n,
    request: { op: 'put', regionId: 'r0', key: Buffer.from([n & 0xff, 0xff, 0x00]), value },
  });

  test('the items added in one tick leave in one frame, in order', async () => {
    const frames: { frame: Buffer; count: number }[] = [];
    const batcher = new FrameBatcher('requests', (frame, count) => frames.push({ frame, count }));
    for (let i = 1; i <= 100; i++) batcher.add(put(i));
    expect(frames).toHaveLength(0); // nothing leaves before the tick ends
    await new Promise((resolve) => setImmediate(resolve));
    expect(frames.map((f) => f.count)).toEqual([100]);
    const decoded = split(frames[0]!.frame, []).map(decodeFrame);
    expect(decoded).toEqual([{ kind: 'requests', items: Array.from({ length: 100 }, (_, i) => put(i + 1)) }]);
    batcher.add(put(101));
    await new Promise((resolve) => setImmediate(resolve));
    expect(frames.map((f) => f.count)).toEqual([100, 1]);
  });

  test('a frame past FLUSH_FRAME_BYTES leaves at once, within the tick', () => {
    const counts: number[] = [];
    const batcher = new FrameBatcher('requests', (_frame, count) => counts.push(count));
    const value = Buffer.alloc(64 * 1024);
    for (let i = 0; i < 10; i++) batcher.add(put(i, value));
    const perFrame = Math.ceil(FLUSH_FRAME_BYTES / value.length);
    expect(counts[0]).toBe(perFrame);
    expect(counts.length).toBe(Math.floor(10 / perFrame));
    batcher.flush();
    expect(counts.reduce((a, b) => a + b, 0)).toBe(10);
  });

  test('an item the tables refuse fails alone and leaves the frame intact', () => {
    const builder = new FrameBuilder('requests');
    expect(builder.add(put(1))).toBe(true);
    const tooLongKey = { id: 2, request: { op: 'get', regionId: 'r0', key: Buffer.alloc(70_000) } } as const;
    expect(() => builder.add(tooLongKey)).toThrow(InvalidArgumentError);
    expect(() => builder.add({ id: 2 ** 32, request: put(2).request })).toThrow(/id: not a u32/);
    expect(builder.add(put(3))).toBe(true);
    const frame = builder.take()!;
    expect(split(frame, []).map(decodeFrame)).toEqual([{ kind: 'requests', items: [put(1), put(3)] }]);
    expect(builder.take()).toBeUndefined();
  });

  test('a reply that fits no frame is refused; one that fits only an empty frame asks for a flush', () => {
    const builder = new FrameBuilder('replies');
    const huge: ClientReply = {
      kind: 'rows',
      rows: [{ key: Buffer.alloc(1), value: Buffer.alloc(MAX_CLIENT_FRAME_BYTES / 2) }],
    };
    expect(builder.add({ id: 1, reply: huge })).toBe(true);
    expect(builder.add({ id: 2, reply: huge })).toBe(false); // would pass the limit: send the first
    expect(builder.take()).toBeDefined();
    expect(builder.add({ id: 2, reply: huge })).toBe(true);
    builder.take();
    const hugest: ClientReply = { kind: 'rows', rows: [huge.rows[0]!, huge.rows[0]!, huge.rows[0]!] };
    expect(() => builder.add({ id: 3, reply: hugest })).toThrow(/exceeds the frame limit/);
  });

  test('the splitter refuses a frame length of 0 or past the limit', () => {
    const zero = Buffer.alloc(4);
    expect(() => new FrameSplitter().push(zero, () => {})).toThrow(ProtocolError);
    const huge = Buffer.alloc(4);
    huge.writeUInt32LE(MAX_CLIENT_FRAME_BYTES + 1);
    expect(() => new FrameSplitter().push(huge, () => {})).toThrow(ProtocolError);
    expect(new ProtocolError('x')).toBeInstanceOf(TalosError);
  });
});
