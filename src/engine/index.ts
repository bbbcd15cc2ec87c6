/**
 * The engine: a complete single-node LSM store with KV separation (DESIGN §3). Replication
 * (src/replication: backup-store, promotion) subscribes to `Store.hooks`, holds the commit and
 * ship gates, and builds the backup side on the store's generic operations (`Store.replica`,
 * store-replica.ts: raw segment writes and reads, version edits, applyRecords). The manifest
 * persists its segment and index maps.
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
