/**
 * Replication hooks: synchronous, typed notifications the replication actors subscribe to. A hook
 * runs inside the engine operation that caused it, after the bytes it names are on the device.
 */
import type { IndexSegmentDescriptor } from './index-segment-reader.js';
import type { LogPosition } from './manifest.js';

export interface SegmentSealedEvent {
  seq: number;
  segmentOffset: number;
  usedBytes: number;
  /** CRC32C of the used prefix [0, usedBytes). */
  crc32c: number;
  /** True for a tail sync (PROTOCOL §4.4): the segment stays open and will be sealed again. */
  partial: boolean;
  /** The used prefix itself (a view; copy it to keep it past the handler). */
  bytes: Buffer;
}

export interface IndexSegmentWrittenEvent {
  compactionId: number;
  level: number;
  ordinal: number;
  segmentOffset: number;
  usedBytes: number;
  crc32c: number;
  descriptor: IndexSegmentDescriptor;
  /** The segment's bytes as written (ready to ship). */
  bytes: Buffer;
}

export interface CompactionCommittedEvent {
  compactionId: number;
  srcLevel: number;
  dstLevel: number;
  /** Offsets of the index segments now in dstLevel that this compaction added. */
  newSegments: number[];
  /** Offsets of the index segments this compaction took out of srcLevel and dstLevel. */
  removedSegments: number[];
  /** Segments moved without rewriting (Li+1 had nothing overlapping). */
  trivialMove: boolean;
  replayFrom: LogPosition;
}

/** L0 reached `l0Bytes` while the store does not flush by itself (autoCompact: false): once per L0. */
export interface L0FullEvent {
  l0Bytes: number;
  entryCount: number;
}

/**
 * The store fail-stopped (once, with the first error): a device failure (DISK_FULL, DEVICE_IO), a
 * corrupt segment found by a read, a scrub or a promotion, or a broken invariant. Nothing is
 * acknowledged after it; the owner replaces the store (the node reopens it or is restarted).
 */
export interface StoreFailedEvent {
  error: unknown;
}

export interface StoreHookMap {
  segmentSealed: SegmentSealedEvent;
  indexSegmentWritten: IndexSegmentWrittenEvent;
  compactionCommitted: CompactionCommittedEvent;
  l0Full: L0FullEvent;
  failed: StoreFailedEvent;
}

export class StoreHooks {
  private readonly handlers: { [K in keyof StoreHookMap]: ((event: StoreHookMap[K]) => void)[] } = {
    segmentSealed: [],
    indexSegmentWritten: [],
    compactionCommitted: [],
    l0Full: [],
    failed: [],
  };

  /** Subscribes; returns the function that unsubscribes. */
  on<K extends keyof StoreHookMap>(hook: K, handler: (event: StoreHookMap[K]) => void): () => void {
    const list = this.handlers[hook] as ((event: StoreHookMap[K]) => void)[];
    list.push(handler);
    return () => {
      const i = list.indexOf(handler);
      if (i >= 0) list.splice(i, 1);
    };
  }

  emit<K extends keyof StoreHookMap>(hook: K, event: StoreHookMap[K]): void {
    for (const handler of this.handlers[hook] as ((event: StoreHookMap[K]) => void)[]) handler(event);
  }
}
