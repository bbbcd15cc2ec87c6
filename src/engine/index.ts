/**
 * The engine: a complete single-node LSM store with KV separation (DESIGN §3). It knows nothing
 * about replication; replication subscribes to `Store.hooks` and uses the backup entry points.
 */

export { crc32c } from './crc.js';
export * from './device.js';
export { FileDevice } from './file-device.js';
export * from './hooks.js';
export {
  IndexSegmentBuilder,
  type IndexSegmentMeta,
  translateIndexSegment,
  verifyIndexSegment,
} from './index-segment.js';
export type { IndexSegmentDescriptor } from './index-segment-reader.js';
export type { LogPosition, LogSegmentEntry, StoreRole } from './manifest.js';
export type { IndexEntry } from './memtable.js';
export { createPrng, type Prng } from './prng.js';
export {
  type DecodedRecord,
  decodeRecord,
  encodeRecord,
  parseRecords,
  RECORD_HEADER_BYTES,
} from './record.js';
export { type SimCrashOptions, type SimCrashReport, SimDevice } from './sim-device.js';
export * from './store.js';
