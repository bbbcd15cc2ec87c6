/**
 * The TCP fabric's two halves without a socket: OutboundBatch (tcp-outbound.ts) encodes a tick's
 * operations into frames, InboundStream (tcp-inbound.ts) parses them as chunks arrive. Properties:
 * whatever the chunking of the stream, every write lands at its offset and every message arrives,
 * in order, and the acknowledgements count the groups the writer opened; one tick is one frame
 * and one writev; refusals (revoked, out of bounds, revoked while the bytes arrive) are reported
 * per group with the first refused write; a malformed stream is reported once and parsing stops.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import * as fc from 'fast-check';
import { type InboundSink, InboundStream, type PlacementRegion } from '../../src/fabric/tcp-inbound.js';
import { OutboundBatch } from '../../src/fabric/tcp-outbound.js';
import {
  FRAME_BATCH,
  type GroupFailure,
  OP_WRITE_NEXT,
  STATUS_OUT_OF_BOUNDS,
  STATUS_REVOKED,
} from '../../src/fabric/tcp-wire.js';
import { transferBytes } from '../../src/fabric/transfer.js';
import { propertyParams } from '../support/property.js';

/** Enough of a net.Socket for OutboundBatch: records what is written, and how. */
class FakeSocket extends EventEmitter {
  readonly chunks: Buffer[] = [];
  corks = 0;
  writes = 0;
  destroyed = false;
  writable = true;
  writableLength = 0;
  write(chunk: Uint8Array): boolean {
    this.writes += 1;
    this.chunks.push(Buffer.from(chunk));
    return true;
  }
  cork(): void {
    this.corks += 1;
  }
  uncork(): void {}
  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

class Recorder implements InboundSink {
  open = true;
  readonly messages: string[] = [];
  readonly completedAcks: { through: number; failures: GroupFailure[] }[] = [];
  readonly acknowledgedAcks: { through: number; failures: GroupFailure[] }[] = [];
  readonly malformedReasons: string[] = [];
  closed = 0;
  constructor(readonly regions: Map<number, { bytes: Uint8Array; revoked: boolean }>) {}
  region(regionKey: number): PlacementRegion | undefined {
    return this.regions.get(regionKey);
  }
  message(bytes: Uint8Array): void {
    this.messages.push(Buffer.from(bytes).toString());
  }
  acknowledged(through: number, failures: GroupFailure[]): void {
    this.acknowledgedAcks.push({ through, failures });
  }
  completed(through: number, failures: GroupFailure[]): void {
    this.completedAcks.push({ through, failures });
  }
  closedByPeer(): void {
    this.closed += 1;
  }
  malformed(reason: string): void {
    this.malformedReasons.push(reason);
  }
}

function outbound(): { socket: FakeSocket; batch: OutboundBatch } {
  const socket = new FakeSocket();
  return { socket, batch: new OutboundBatch(socket as unknown as Socket, 1 << 30) };
}

/** Feeds `stream` to a parser in pieces cut at `cuts` (offsets into the stream). */
function feed(inbound: InboundStream, stream: Buffer, cuts: number[]): void {
  let at = 0;
  for (const cut of [...new Set(cuts)].sort((a, b) => a - b)) {
    if (cut <= at || cut >= stream.length) continue;
    inbound.push(stream.subarray(at, cut));
    at = cut;
  }
  inbound.push(stream.subarray(at));
}

type Op =
  | { kind: 'write'; region: number; offset: number; bytes: number[]; transfer: boolean }
  | { kind: 'message'; text: string }
  | { kind: 'flush' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('write' as const),
      region: fc.constantFrom(1, 2),
      offset: fc.nat({ max: 200 }),
      bytes: fc.array(fc.nat({ max: 255 }), { minLength: 0, maxLength: 40 }),
      transfer: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('message' as const), text: fc.string({ maxLength: 12 }) }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'flush' as const }) },
);

describe('tcp fabric stream: outbound batch → inbound parser', () => {
  test('property: any chunking of the stream places every write and delivers every message, in order', () => {
    fc.assert(
      fc.property(
        fc.array(opArb, { minLength: 1, maxLength: 60 }),
        fc.array(fc.nat({ max: 4000 }), { maxLength: 30 }),
        (ops, cuts) => {
          const { socket, batch } = outbound();
          const model = new Map([
            [1, new Uint8Array(256)],
            [2, new Uint8Array(256)],
          ]);
          const messages: string[] = [];
          let groups = 0;
          for (const op of ops) {
            if (op.kind === 'write') {
              const bytes = Buffer.from(op.bytes);
              model.get(op.region)!.set(bytes, op.offset);
              if (!batch.write(op.region, op.offset, op.transfer ? transferBytes(bytes) : bytes)) groups += 1;
            } else if (op.kind === 'message') {
              batch.message(Buffer.from(op.text));
              messages.push(op.text);
            } else batch.flush();
          }
          batch.flush();
          const regions = new Map([
            [1, { bytes: new Uint8Array(256), revoked: false }],
            [2, { bytes: new Uint8Array(256), revoked: false }],
          ]);
          const sink = new Recorder(regions);
          feed(new InboundStream(sink), socket.bytes(), cuts);
          expect(sink.malformedReasons).toEqual([]);
          expect(Buffer.from(regions.get(1)!.bytes).equals(Buffer.from(model.get(1)!))).toBe(true);
          expect(Buffer.from(regions.get(2)!.bytes).equals(Buffer.from(model.get(2)!))).toBe(true);
          expect(sink.messages).toEqual(messages);
          expect(sink.completedAcks.at(-1)?.through ?? 0).toBe(groups);
          expect(sink.completedAcks.flatMap((a) => a.failures)).toEqual([]);
        },
      ),
      propertyParams('tcp stream round trip', 300),
    );
  });

  test('one tick is one frame and one writev; consecutive writes into one region are one group', () => {
    const { socket, batch } = outbound();
    const continued: boolean[] = [];
    for (let i = 0; i < 100; i++) continued.push(batch.write(7, i * 8, Buffer.alloc(8, i)));
    batch.message(Buffer.from('after'));
    continued.push(batch.write(7, 800, Buffer.alloc(8, 1)));
    continued.push(batch.write(8, 0, transferBytes(Buffer.alloc(64 * 1024, 2))));
    batch.flush();
    expect(continued.filter((c) => !c)).toHaveLength(3); // groups: 100 writes, 1 after the message, 1 in region 8
    expect(socket.corks).toBe(1);
    const stream = socket.bytes();
    expect(stream.readUInt32LE(0)).toBe(stream.length - 4);
    expect(stream[4]).toBe(FRAME_BATCH);
    // The second write continues the first's group.
    expect(stream[5 + 17 + 8]).toBe(OP_WRITE_NEXT);
  });

  test('the transferred payload is handed to the socket by reference, a plain one copied at issue', () => {
    const socket = new FakeSocket();
    const seen: Uint8Array[] = [];
    socket.write = (chunk: Uint8Array): boolean => {
      seen.push(chunk);
      return true;
    };
    const batch = new OutboundBatch(socket as unknown as Socket, 1 << 30);
    const moved = transferBytes(Buffer.alloc(64 * 1024, 3));
    const plain = Buffer.alloc(64 * 1024, 4);
    batch.write(1, 0, moved);
    batch.write(1, 64 * 1024, plain);
    plain.fill(9); // the caller reuses its buffer: the frame kept the bytes it had
    batch.flush();
    expect(seen).toContain(moved);
    expect(seen).not.toContain(plain);
    const stream = Buffer.concat(seen);
    expect(stream.includes(Buffer.alloc(1024, 9))).toBe(false);
    expect(stream.includes(Buffer.alloc(1024, 4))).toBe(true);
  });

  test('refusals: an unknown or revoked region, a write beyond it, a region revoked while the bytes arrive', () => {
    const { socket, batch } = outbound();
    batch.write(1, 0, Buffer.alloc(4, 1)); // group 1: fine
    batch.write(9, 0, Buffer.alloc(4, 1)); // group 2: unknown region
    batch.write(1, 4, Buffer.alloc(4, 2)); // group 3: the first write fits, the second does not
    batch.write(1, 30, Buffer.alloc(4, 2));
    batch.write(1, 8, Buffer.alloc(4, 3)); //   and later writes of the group are skipped
    batch.message(Buffer.from('m'));
    batch.write(2, 0, Buffer.alloc(1000, 5)); // group 4: revoked while its bytes arrive
    batch.flush();
    const regions = new Map([
      [1, { bytes: new Uint8Array(32), revoked: false }],
      [2, { bytes: new Uint8Array(1000), revoked: false }],
    ]);
    const sink = new Recorder(regions);
    const inbound = new InboundStream(sink);
    const stream = socket.bytes();
    const cut = stream.length - 500;
    inbound.push(stream.subarray(0, cut));
    regions.get(2)!.revoked = true;
    inbound.push(stream.subarray(cut));
    expect(sink.completedAcks).toEqual([
      {
        through: 4,
        failures: [
          { group: 2, status: STATUS_REVOKED, write: 0 },
          { group: 3, status: STATUS_OUT_OF_BOUNDS, write: 1 },
          { group: 4, status: STATUS_REVOKED, write: 0 },
        ],
      },
    ]);
    const one = regions.get(1)!.bytes;
    expect([...one.subarray(0, 12)]).toEqual([1, 1, 1, 1, 2, 2, 2, 2, 0, 0, 0, 0]);
    const two = regions.get(2)!.bytes;
    expect(two[0]).toBe(5); // a prefix landed before the revoke
    expect(two[999]).toBe(0); // nothing after it
    expect(sink.messages).toEqual(['m']);
  });

  test('acks travel as ops too, and a malformed stream is reported once and parsing stops', () => {
    const { socket, batch } = outbound();
    batch.ack(5, [{ group: 4, status: STATUS_REVOKED, write: 2 }]);
    batch.flush();
    const sink = new Recorder(new Map());
    new InboundStream(sink).push(socket.bytes());
    expect(sink.acknowledgedAcks).toEqual([
      { through: 5, failures: [{ group: 4, status: STATUS_REVOKED, write: 2 }] },
    ]);

    const malformed = (bytes: number[]): string[] => {
      const s = new Recorder(new Map([[1, { bytes: new Uint8Array(8), revoked: false }]]));
      const inbound = new InboundStream(s);
      inbound.push(Buffer.from(bytes));
      inbound.push(Buffer.from([1, 0, 0, 0, FRAME_BATCH])); // more after the fault: ignored
      return s.malformedReasons;
    };
    const frame = (body: number[]): number[] => [body.length + 1, 0, 0, 0, FRAME_BATCH, ...body];
    expect(malformed([1, 0, 0, 0, 99])).toHaveLength(1); // unknown frame type
    expect(malformed(frame([77]))).toHaveLength(1); // unknown op
    expect(malformed(frame([OP_WRITE_NEXT, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))).toHaveLength(1);
    // A write announcing more bytes than its frame holds.
    expect(malformed(frame([1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 50, 0, 0, 0]))).toHaveLength(1);
    expect(malformed(frame([3, 1, 0]))).toHaveLength(1); // an op header crossing the frame's end
  });
});
