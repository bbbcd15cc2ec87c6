/**
 * The control-message codec: every message round-trips exactly, and any other bytes — random,
 * truncated, extended or with a flipped byte — give MalformedMessageError, never a crash or a
 * different message.
 */
import * as fc from 'fast-check';
import { crc32c } from '../../src/engine/crc.js';
import {
  decodeMessage,
  encodeMessage,
  MalformedMessageError,
  type ReplicationMessage,
} from '../../src/replication/messages.js';
import { propertyParams } from '../support/property.js';

const u53 = fc.maxSafeNat();
const u32 = fc.nat({ max: 0xffffffff });
const u8 = fc.nat({ max: 255 });
const str = fc.string({ maxLength: 40, unit: 'grapheme' });
const base = { regionId: str, epoch: u53 };
const handle = fc.record({ regionKey: u53, bytes: u53 });
const list = fc.array(u53, { maxLength: 20 });

const messageArb: fc.Arbitrary<ReplicationMessage> = fc.oneof(
  fc.record({
    type: fc.constant('OpenBackup' as const),
    ...base,
    primaryNodeId: str,
    segmentBytes: u53,
    logBufferCount: u32,
    mode: fc.constantFrom('send-index' as const, 'build-index' as const),
    fromSegmentSeq: u53,
    rebaseFrom: str,
  }),
  fc.record({
    type: fc.constant('BackupReady' as const),
    ...base,
    logBuffers: fc.array(handle, { maxLength: 8 }),
    indexBuffers: fc.array(handle, { maxLength: 4 }),
    persistedThrough: fc.integer({ min: -1, max: Number.MAX_SAFE_INTEGER - 1 }),
    lastCompactionId: u53,
    mapOwner: str,
  }),
  fc.record({
    type: fc.constant('SegmentSealed' as const),
    ...base,
    seq: u53,
    primarySegment: u53,
    usedBytes: u53,
    crc32c: u32,
    partial: fc.boolean(),
  }),
  fc.record({
    type: fc.constant('SegmentPersisted' as const),
    ...base,
    seq: u53,
    usedBytes: u53,
    partial: fc.boolean(),
  }),
  fc.record({
    type: fc.constant('IndexSegment' as const),
    ...base,
    compactionId: u53,
    dstLevel: u8,
    ordinal: u32,
    primarySegment: u53,
    usedBytes: u53,
    crc32c: u32,
    slot: u8,
  }),
  fc.record({
    type: fc.constant('IndexSegmentPersisted' as const),
    ...base,
    compactionId: u53,
    ordinal: u32,
    slot: u8,
  }),
  fc.record({
    type: fc.constant('CompactionCommit' as const),
    ...base,
    compactionId: u53,
    srcLevel: u8,
    dstLevel: u8,
    newSegments: list,
    removedSegments: list,
    trivialMove: fc.boolean(),
    replayFrom: fc.record({ seq: u53, offset: u53, lsn: u53 }),
  }),
  fc.record({ type: fc.constant('CompactionCommitted' as const), ...base, compactionId: u53 }),
  fc.record({
    type: fc.constant('InstallLevels' as const),
    ...base,
    compactionId: u53,
    levels: fc.array(list, { maxLength: 8 }),
    replayFrom: fc.record({ seq: u53, offset: u53, lsn: u53 }),
  }),
  fc.record({ type: fc.constant('LevelsInstalled' as const), ...base, compactionId: u53 }),
  fc.record({
    type: fc.constant('Rebase' as const),
    ...base,
    owner: str,
    newOwner: str,
    segments: fc.array(fc.tuple(u53, u53), { maxLength: 8 }),
    indexMap: fc.array(fc.tuple(u53, u53), { maxLength: 8 }),
  }),
  fc.record({ type: fc.constant('Rebased' as const), ...base, truncatedSegments: u53 }),
  fc.record({ type: fc.constant('Refused' as const), ...base, currentEpoch: u53, code: str, reason: str }),
  fc.record({ type: fc.constant('CloseRegion' as const), ...base }),
);

function expectMalformed(bytes: Uint8Array): void {
  expect(() => decodeMessage(bytes)).toThrow(MalformedMessageError);
}

describe('replication message codec', () => {
  test('every message round-trips', () => {
    fc.assert(
      fc.property(messageArb, (message) => {
        expect(decodeMessage(encodeMessage(message))).toEqual(message);
      }),
      propertyParams('message round-trip', 500),
    );
  });

  test('random bytes are refused with MalformedMessageError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => expectMalformed(bytes)),
      propertyParams('message fuzz: random bytes', 2000),
    );
  });

  test('a flipped, dropped or added byte is refused', () => {
    fc.assert(
      fc.property(messageArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (message, at, xor) => {
        const bytes = encodeMessage(message);
        const i = at % bytes.length;
        const flipped = Buffer.from(bytes);
        flipped[i] = flipped[i]! ^ xor;
        expectMalformed(flipped);
        expectMalformed(bytes.subarray(0, i));
        expectMalformed(Buffer.concat([bytes, Buffer.from([xor])]));
      }),
      propertyParams('message fuzz: mutations', 500),
    );
  });

  test('a body with a valid CRC but bad structure is still refused', () => {
    // Re-sealing a mutated body with a fresh CRC reaches the structural checks.
    fc.assert(
      fc.property(messageArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (message, at, xor) => {
        const bytes = encodeMessage(message);
        const body = Buffer.from(bytes.subarray(0, bytes.length - 4));
        body[at % body.length] = body[at % body.length]! ^ xor;
        const resealed = Buffer.alloc(body.length + 4);
        body.copy(resealed);
        resealed.writeUInt32LE(crc32c(body), body.length);
        try {
          const decoded = decodeMessage(resealed);
          // A mutation that still parses must give a well-formed message of a known type.
          expect(typeof decoded.type).toBe('string');
          expect(decodeMessage(encodeMessage(decoded))).toEqual(decoded);
        } catch (err) {
          expect(err).toBeInstanceOf(MalformedMessageError);
        }
      }),
      propertyParams('message fuzz: resealed mutations', 1000),
    );
  });
});
