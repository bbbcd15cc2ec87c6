/**
 * Promotion (PROTOCOL §6, steps 1–2) and the reset of a former primary, built on the engine's
 * generic operations (`store.replica`). Both end with one manifest write and close the store
 * instance; the caller reopens the device.
 *
 * Promote: `tail` holds the node's registered log buffers for the segments after what it
 *   persisted (`seq`, the old primary's segment offset, the buffer's bytes; stale or zero buffers
 *   are fine). Starting right after the last persisted record (lsn continuity), take from each
 *   buffer in seq order the longest prefix of CRC-valid records that continues the lsn chain — the
 *   last persisted segment may continue in its buffer, each later segment starts at offset 0 — and
 *   stop at the first buffer that adds no record: nothing past it was ever acknowledged (a write
 *   is acknowledged only once every backup holds it, and records are appended in lsn order). The
 *   kept bytes are written and synced into local segments (mapped like shipped ones); then the
 *   manifest is rewritten with role 'primary' and the last log segment as the active one. On
 *   reopen the primary's ordinary recovery rebuilds L0 by replaying the log from `replayFrom` and
 *   finds the active segment's valid end. A crash before the manifest write leaves a backup that
 *   can be promoted again with the same tail; after it, a primary. The segment and index maps stay
 *   in the manifest (keyed by the old primary) so the new primary can rebase the other backups.
 *   A corrupt copy is never promoted: the store fail-stops (scrub) and another backup, which holds
 *   every acknowledged write too, takes the region.
 *
 * Reset: a node that was a region's primary and comes back after another node was promoted holds
 *   a log that may run past what the new primary kept, keyed by its own offsets: it cannot follow
 *   as it is. Its manifest is rewritten as an empty backup's — every segment becomes free space —
 *   and the new primary re-syncs it from scratch (PROTOCOL §7). A crash leaves either the old
 *   primary store or the empty backup.
 */
import type { LogSegmentEntry } from '../engine/manifest.js';
import { parseRecords } from '../engine/record.js';
import type { Store } from '../engine/store.js';
import { CorruptSegmentError } from '../errors.js';

/** What a promotion took from the log buffers (promoteToPrimary). */
export interface PromotionReport {
  /** Bytes of valid records taken from the buffers (beyond what was persisted). */
  keptBytes: number;
  /** Buffers that contributed records. */
  segmentsFromBuffers: number;
  /** The segment that became the active one. */
  activeSeq: number;
  /**
   * Bytes of valid records the active segment held when the promotion wrote its manifest: the
   * reopened primary's recovery must find at least these (assertPromotedTail).
   */
  activeBytes: number;
  /** The lsn after the last record kept (0 when the log holds none). */
  nextLsn: number;
}

/** A registered log buffer; `primarySegmentOffset` is unknown for a segment never sealed. */
export interface TailBuffer {
  seq: number;
  primarySegmentOffset?: number;
  bytes: Uint8Array;
}

/** Promotes a backup store to primary (see the header) and closes the instance. */
export async function promoteToPrimary(store: Store, args: { tail: TailBuffer[] }): Promise<PromotionReport> {
  store.replica.requireUsable('backup');
  await store.replica.drain();
  store.replica.requireUsable();
  store.scrub();
  const log = store.logSegments();
  const segmentMap = new Map(store.replica.segmentMapEntries());
  const taken = store.replica.mutate(() => takeTail(store, args.tail, log, segmentMap));
  log.sort((a, b) => a.seq - b.seq);
  // The kept bytes are durable before the manifest that names them.
  await store.replica.mutateAsync(() => store.replica.syncDevice());
  let active = log.at(-1);
  if (active === undefined) {
    active = { seq: 0, offset: store.replica.mutate(() => store.replica.allocateSegment()), usedBytes: null };
    log.push(active);
  }
  const activeBytes = active.usedBytes ?? 0;
  active.usedBytes = null;
  await store.replica.rewriteManifestAndAbandon({ role: 'primary', log, segmentMap: [...segmentMap] });
  return { ...taken, activeSeq: log.at(-1)!.seq, activeBytes };
}

/**
 * After the promoted store reopened as a primary: its recovery parsed the active segment up to
 * its first invalid record, which for a primary's active segment normally means a torn tail. But
 * the promotion knew how far valid records reached; a shorter parse there is corruption — a bit
 * flip between the promotion's verification and the reopen (simulator, overlapping seed 963158544:
 * recovery stopped at a flipped record and the new primary served without the acknowledged writes
 * after it, then re-synced every other replica to its shortened log). CorruptSegmentError: the
 * node fail-stops and another backup, which holds every acknowledged write, takes the region.
 */
export function assertPromotedTail(
  store: Store,
  report: Pick<PromotionReport, 'activeSeq' | 'activeBytes'>,
): void {
  const tail = store.replica.activeTail();
  if (tail !== undefined && tail.seq === report.activeSeq && tail.usedBytes < report.activeBytes) {
    throw new CorruptSegmentError(
      `log segment ${tail.seq}`,
      `the promoted log held valid records to ${report.activeBytes} bytes; recovery found them only to ${tail.usedBytes}`,
    );
  }
}

/** Copies the records that continue the persisted log from the buffers (see the header). */
function takeTail(
  store: Store,
  tail: TailBuffer[],
  log: LogSegmentEntry[],
  segmentMap: Map<number, number>,
): { keptBytes: number; segmentsFromBuffers: number; nextLsn: number } {
  const bySeq = new Map(tail.map((t) => [t.seq, t]));
  const last = log.at(-1);
  let nextLsn = 0; // 0: the first record may carry any lsn (nothing persisted to continue)
  if (last !== undefined && last.usedBytes !== null && last.usedBytes > 0) {
    const bytes = store.replica.readRaw(last.offset, last.usedBytes, 'log');
    nextLsn = parseRecords(bytes, 0, bytes.length, 0).nextLsn;
  }
  let seq = last?.seq ?? Math.min(...bySeq.keys());
  let keptBytes = 0;
  let segmentsFromBuffers = 0;
  for (;;) {
    const buffer = bySeq.get(seq);
    if (buffer === undefined) {
      if (seq === last?.seq) {
        seq++; // no buffer continues the last persisted segment; its successor may
        continue;
      }
      break;
    }
    const bytes = Buffer.from(buffer.bytes.buffer, buffer.bytes.byteOffset, buffer.bytes.byteLength);
    const entry = log.find((e) => e.seq === seq);
    const from = entry?.usedBytes ?? 0;
    const parsed = parseRecords(bytes, from, Math.min(bytes.length, store.segmentBytes), nextLsn);
    if (parsed.records.length === 0) {
      if (entry !== undefined && seq === last?.seq) {
        seq++; // the persisted segment was complete; its successor may follow
        continue;
      }
      break;
    }
    const known = buffer.primarySegmentOffset;
    const local =
      entry?.offset ??
      (known === undefined ? undefined : segmentMap.get(known)) ??
      store.replica.allocateSegment();
    store.replica.writeRaw(local + from, bytes.subarray(from, parsed.endOffset), 'log');
    if (known !== undefined) segmentMap.set(known, local);
    if (entry === undefined) log.push({ seq, offset: local, usedBytes: parsed.endOffset });
    else entry.usedBytes = parsed.endOffset;
    keptBytes += parsed.endOffset - from;
    segmentsFromBuffers++;
    nextLsn = parsed.nextLsn;
    seq++;
  }
  return { keptBytes, segmentsFromBuffers, nextLsn };
}

/** Rewrites a former primary's store as an empty backup's (see the header) and closes it. */
export async function resetAsEmptyBackup(store: Store): Promise<void> {
  store.replica.requireUsable();
  await store.replica.drain();
  await store.replica.rewriteManifestAndAbandon({
    role: 'backup',
    log: [],
    replayFrom: { seq: 0, offset: 0, lsn: 1 },
    levels: store.levelDescriptors().map(() => []),
    nextCompactionId: 1,
    segmentMap: [],
    indexMap: [],
    mapOwner: undefined,
  });
}
