/**
 * Hands out fixed-size device segments. The set in use is derived from the manifest at open; every
 * other segment below the high-water mark is free. Freed segments are reused lowest first, so the
 * device stays compact.
 */
import { assert, assertOffset } from '../assert.js';

export class SegmentAllocator {
  private readonly free: number[] = [];
  private readonly inUse = new Set<number>();

  /** `reservedCount` segments at the device's start are never handed out (StoreOptions.reservedSegments). */
  constructor(
    readonly segmentBytes: number,
    private allocatedCount: number,
    inUseOffsets: Iterable<number>,
    reservedCount = 0,
  ) {
    this.allocatedCount = Math.max(this.allocatedCount, reservedCount);
    for (const offset of inUseOffsets) {
      assert(offset % segmentBytes === 0, `segment offset ${offset} is not aligned`);
      assert(!this.inUse.has(offset), `segment ${offset} is named twice in the manifest`);
      assert(offset >= reservedCount * segmentBytes, `segment ${offset} lies in the reserved range`);
      this.inUse.add(offset);
      this.allocatedCount = Math.max(this.allocatedCount, offset / segmentBytes + 1);
    }
    for (let i = this.allocatedCount - 1; i >= reservedCount; i--) {
      const offset = i * segmentBytes;
      if (!this.inUse.has(offset)) this.free.push(offset);
    }
  }

  /** Segments ever allocated (the high-water mark persisted in the manifest). */
  get highWaterCount(): number {
    return this.allocatedCount;
  }

  get inUseCount(): number {
    return this.inUse.size;
  }

  allocate(): number {
    const offset = this.free.pop() ?? this.allocatedCount++ * this.segmentBytes;
    assertOffset(offset, 'segment offset');
    this.inUse.add(offset);
    return offset;
  }

  release(offset: number): void {
    assert(this.inUse.delete(offset), `releasing segment ${offset}, which is not in use`);
    this.free.push(offset);
    // Keep lowest-first reuse: the free list is a stack sorted descending.
    this.free.sort((a, b) => b - a);
  }
}
