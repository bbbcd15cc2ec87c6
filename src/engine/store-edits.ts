/**
 * The store's durable state beyond the levels and the log — the segment and index maps and their
 * owner — and the two ways every durable change reaches the manifest log:
 *
 * - `persist(overrides)`: captures the whole state (role, segment size, allocator high-water mark,
 *   log chain, replayFrom, levels, next compaction id, maps, owner) as the next ManifestData and
 *   commits it; the manifest log turns it into one CRC-framed edit (the difference from the last
 *   one) and one group-shared sync (manifest-log.ts).
 * - `applyEdit(edit)`: a generic version edit for the replication layer (a shipped log segment's
 *   map entry, a shipped compaction's install, a rebase, a reset): the named fields change in one
 *   synchronous step together with the manifest's capture — a level install first, through
 *   VersionSet.install, which persists itself — then the edit is durable, then `release` is freed
 *   in order (a segment is never reused before the manifest that stops naming it is on disk).
 */
import type { FailStop } from './fail-stop.js';
import type { LogPosition, LogSegmentEntry, ManifestData, StoreRole } from './manifest.js';
import type { ManifestLog } from './manifest-log.js';
import type { SegmentAllocator } from './segment-allocator.js';
import type { StoreEdit } from './store-types.js';
import type { ValueLog } from './value-log.js';
import type { VersionSet } from './version-set.js';

export interface StoreEditsDeps {
  manifestLog: ManifestLog;
  role: StoreRole;
  segmentBytes: number;
  allocator: SegmentAllocator;
  failStop: FailStop;
  /** Built after this object (they persist through it): reached lazily. */
  valueLog: () => ValueLog;
  versions: () => VersionSet;
}

export class StoreEdits {
  /** Another node's log segment offset → local offset. */
  readonly segmentMap: Map<number, number>;
  /** Another node's index segment offset → local offset. */
  readonly indexMap: Map<number, number>;
  /** The node whose offsets key segmentMap and indexMap (see ManifestData.mapOwner). */
  owner: string | undefined;

  constructor(
    private readonly d: StoreEditsDeps,
    manifest: ManifestData | undefined,
  ) {
    this.segmentMap = new Map(manifest?.segmentMap ?? []);
    this.indexMap = new Map(manifest?.indexMap ?? []);
    this.owner = manifest?.mapOwner;
  }

  /** Writes the manifest of the current state; `overrides` replace fields (a role change, a reset). */
  persist(overrides: Partial<ManifestData> = {}): Promise<void> {
    const versions = this.d.versions();
    return this.d.manifestLog.commit({
      formatVersion: 1,
      role: this.d.role,
      segmentBytes: this.d.segmentBytes,
      allocatedSegmentCount: this.d.allocator.highWaterCount,
      log: this.d.valueLog().log,
      replayFrom: versions.replayFrom,
      levels: versions.descriptors(),
      nextCompactionId: versions.nextCompactionId,
      segmentMap: [...this.segmentMap],
      indexMap: [...this.indexMap],
      ...(this.owner === undefined ? {} : { mapOwner: this.owner }),
      ...overrides,
    });
  }

  /** Applies a version edit under fail-stop (see the header); resolves once durable. */
  async applyEdit(edit: StoreEdit): Promise<void> {
    const versions = this.d.versions();
    await this.d.failStop.runAsync(async () => {
      const applyFields = (): void => {
        if (edit.log !== undefined) this.d.valueLog().log = edit.log as LogSegmentEntry[];
        if (edit.segmentMap !== undefined) replaceMap(this.segmentMap, edit.segmentMap);
        if (edit.indexMap !== undefined) replaceMap(this.indexMap, edit.indexMap);
        if (edit.mapOwner !== undefined) this.owner = edit.mapOwner;
        if (edit.levels !== undefined) versions.replaceLevels(edit.levels);
        if (edit.replayFrom !== undefined) versions.replayFrom = { ...(edit.replayFrom as LogPosition) };
        if (edit.nextCompactionId !== undefined) versions.nextCompactionId = edit.nextCompactionId;
      };
      if (edit.install !== undefined) await versions.install({ ...edit.install, beforePersist: applyFields });
      else {
        applyFields();
        await this.persist();
      }
      for (const offset of edit.release ?? []) this.d.allocator.release(offset);
    });
  }
}

function replaceMap(map: Map<number, number>, entries: [number, number][]): void {
  map.clear();
  for (const [k, v] of entries) map.set(k, v);
}
