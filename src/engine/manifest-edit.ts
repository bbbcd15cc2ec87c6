/**
 * Manifest version edits (the records of the manifest log after its snapshot, manifest-log.ts):
 * an edit holds only the fields that changed between two ManifestData — log segments added,
 * sealed or removed; index segments added to or removed from levels (or a whole level);
 * segment-map and index-map entries put or removed; replayFrom, nextCompactionId, the allocator's
 * high-water mark, role and mapOwner when they change.
 *
 * `diffManifest(prev, next)` computes it, `applyEdit(prev, edit)` replays it:
 * applyEdit(prev, diffManifest(prev, next)) equals next (a property test checks it). The JSON
 * form (`editToJson`/`editFromJson`) keeps keys as hex, since they are arbitrary bytes.
 */
import type { IndexSegmentDescriptor } from './index-segment-reader.js';
import type { LogPosition, LogSegmentEntry, ManifestData, StoreRole } from './manifest.js';

/** Map entries (segmentMap, indexMap): removals, then puts (JS Map order), or the whole list. */
export interface MapEdit {
  removed?: number[];
  put?: [number, number][];
  whole?: [number, number][];
}

export interface LevelEdit {
  /** Level index (0 = L1). */
  level: number;
  /** Offsets that leave the level. */
  removed?: number[];
  /** Descriptors that join it (then the level is sorted by minKey). */
  added?: IndexSegmentDescriptor[];
  /** The whole level, when removals and additions cannot express the change. */
  whole?: IndexSegmentDescriptor[];
}

/** One version edit: only the fields that changed are present. */
export interface ManifestEdit {
  role?: StoreRole;
  segmentBytes?: number;
  allocatedSegmentCount?: number;
  replayFrom?: LogPosition;
  nextCompactionId?: number;
  /** The new map owner; null when it was removed. */
  mapOwner?: string | null;
  /** Log segments removed (by seq). */
  logRemoved?: number[];
  /** Log segments added or changed (a seal: usedBytes set), by seq; the log stays sorted by seq. */
  logPut?: LogSegmentEntry[];
  /** The whole log, when removals and puts cannot express the change. */
  log?: LogSegmentEntry[];
  /** The number of levels, when it changes. */
  levelCount?: number;
  levels?: LevelEdit[];
  segmentMap?: MapEdit;
  indexMap?: MapEdit;
}

export function editToJson(edit: ManifestEdit): unknown {
  const descriptors = (list: IndexSegmentDescriptor[] | undefined) =>
    list?.map((d) => ({ ...d, minKey: hex(d.minKey), maxKey: hex(d.maxKey) }));
  return {
    ...edit,
    ...(edit.levels === undefined
      ? {}
      : {
          levels: edit.levels.map((l) => ({
            ...l,
            ...(l.added === undefined ? {} : { added: descriptors(l.added) }),
            ...(l.whole === undefined ? {} : { whole: descriptors(l.whole) }),
          })),
        }),
  };
}

export function editFromJson(json: unknown): ManifestEdit {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error('not an object');
  const edit = json as ManifestEdit;
  const descriptors = (list: IndexSegmentDescriptor[] | undefined) =>
    list?.map((d) => ({ ...d, minKey: unhex(d.minKey), maxKey: unhex(d.maxKey) }));
  if (edit.levels !== undefined) {
    edit.levels = edit.levels.map((l) => ({
      ...l,
      ...(l.added === undefined ? {} : { added: descriptors(l.added) }),
      ...(l.whole === undefined ? {} : { whole: descriptors(l.whole) }),
    }));
  }
  return edit;
}

// ───────────────────────────── diff and apply ─────────────────────────────

/** The edit that turns `prev` into `next`: applyEdit(prev, diffManifest(prev, next)) equals next. */
export function diffManifest(prev: ManifestData, next: ManifestData): ManifestEdit {
  const edit: ManifestEdit = {};
  if (prev.role !== next.role) edit.role = next.role;
  if (prev.segmentBytes !== next.segmentBytes) edit.segmentBytes = next.segmentBytes;
  if (prev.allocatedSegmentCount !== next.allocatedSegmentCount)
    edit.allocatedSegmentCount = next.allocatedSegmentCount;
  if (!samePosition(prev.replayFrom, next.replayFrom)) edit.replayFrom = { ...next.replayFrom };
  if (prev.nextCompactionId !== next.nextCompactionId) edit.nextCompactionId = next.nextCompactionId;
  if (prev.mapOwner !== next.mapOwner) edit.mapOwner = next.mapOwner ?? null;
  diffLog(prev.log, next.log, edit);
  diffLevels(prev.levels, next.levels, edit);
  const segmentMap = diffMap(prev.segmentMap, next.segmentMap);
  if (segmentMap !== undefined) edit.segmentMap = segmentMap;
  const indexMap = diffMap(prev.indexMap, next.indexMap);
  if (indexMap !== undefined) edit.indexMap = indexMap;
  return edit;
}

export function isEmptyEdit(edit: ManifestEdit): boolean {
  return Object.keys(edit).length === 0;
}

/** `prev` with `edit` applied; `prev` is not modified. */
export function applyEdit(prev: ManifestData, edit: ManifestEdit): ManifestData {
  const next: ManifestData = {
    formatVersion: 1,
    role: edit.role ?? prev.role,
    segmentBytes: edit.segmentBytes ?? prev.segmentBytes,
    allocatedSegmentCount: edit.allocatedSegmentCount ?? prev.allocatedSegmentCount,
    log: applyLog(prev.log, edit),
    replayFrom: { ...(edit.replayFrom ?? prev.replayFrom) },
    levels: applyLevels(prev.levels, edit),
    nextCompactionId: edit.nextCompactionId ?? prev.nextCompactionId,
    segmentMap: applyMap(prev.segmentMap, edit.segmentMap),
    indexMap: applyMap(prev.indexMap, edit.indexMap),
  };
  const owner = edit.mapOwner === undefined ? prev.mapOwner : (edit.mapOwner ?? undefined);
  if (owner !== undefined) next.mapOwner = owner;
  return next;
}

function diffLog(prev: LogSegmentEntry[], next: LogSegmentEntry[], edit: ManifestEdit): void {
  const before = new Map(prev.map((e) => [e.seq, e] as const));
  const after = new Set(next.map((e) => e.seq));
  const removed = prev.filter((e) => !after.has(e.seq)).map((e) => e.seq);
  const put = next.filter((e) => !sameLogEntry(before.get(e.seq), e)).map((e) => ({ ...e }));
  const delta: ManifestEdit = {
    ...(removed.length > 0 ? { logRemoved: removed } : {}),
    ...(put.length > 0 ? { logPut: put } : {}),
  };
  const result = applyLog(prev, delta);
  if (result.length === next.length && result.every((e, i) => sameLogEntry(e, next[i]))) {
    Object.assign(edit, delta);
  } else {
    edit.log = next.map((e) => ({ ...e }));
  }
}

function applyLog(prev: LogSegmentEntry[], edit: ManifestEdit): LogSegmentEntry[] {
  if (edit.log !== undefined) return edit.log.map((e) => ({ ...e }));
  const removed = new Set(edit.logRemoved ?? []);
  const out = prev.filter((e) => !removed.has(e.seq)).map((e) => ({ ...e }));
  for (const entry of edit.logPut ?? []) {
    const at = out.findIndex((e) => e.seq === entry.seq);
    if (at >= 0) out[at] = { ...entry };
    else out.push({ ...entry });
  }
  if (edit.logPut !== undefined) out.sort((a, b) => a.seq - b.seq);
  return out;
}

function diffLevels(
  prev: IndexSegmentDescriptor[][],
  next: IndexSegmentDescriptor[][],
  edit: ManifestEdit,
): void {
  if (prev.length !== next.length) edit.levelCount = next.length;
  const levels: LevelEdit[] = [];
  next.forEach((level, i) => {
    const old = prev[i] ?? [];
    const before = new Map(old.map((d) => [d.offset, d] as const));
    const after = new Map(level.map((d) => [d.offset, d] as const));
    const removed = old.filter((d) => !sameDescriptor(after.get(d.offset), d)).map((d) => d.offset);
    const added = level.filter((d) => !sameDescriptor(before.get(d.offset), d)).map((d) => ({ ...d }));
    const delta: LevelEdit = {
      level: i,
      ...(removed.length > 0 ? { removed } : {}),
      ...(added.length > 0 ? { added } : {}),
    };
    const result = applyLevel(old, delta);
    const exact = result.length === level.length && result.every((d, j) => sameDescriptor(d, level[j]));
    if (!exact) levels.push({ level: i, whole: level.map((d) => ({ ...d })) });
    else if (removed.length > 0 || added.length > 0) levels.push(delta);
  });
  if (levels.length > 0) edit.levels = levels;
}

function applyLevels(prev: IndexSegmentDescriptor[][], edit: ManifestEdit): IndexSegmentDescriptor[][] {
  const count = edit.levelCount ?? prev.length;
  const out = Array.from({ length: count }, (_, i) => (prev[i] ?? []).map((d) => ({ ...d })));
  for (const level of edit.levels ?? []) {
    if (!(Number.isInteger(level.level) && level.level >= 0 && level.level < count)) {
      throw new Error(`level ${level.level} out of range`);
    }
    out[level.level] = applyLevel(out[level.level]!, level);
  }
  return out;
}

function applyLevel(prev: IndexSegmentDescriptor[], edit: LevelEdit): IndexSegmentDescriptor[] {
  if (edit.whole !== undefined) return edit.whole.map((d) => ({ ...d }));
  const removed = new Set(edit.removed ?? []);
  const out = prev.filter((d) => !removed.has(d.offset)).map((d) => ({ ...d }));
  if (edit.added === undefined) return out;
  out.push(...edit.added.map((d) => ({ ...d })));
  // Stable: segments of one level never share a minKey, so this is the store's own order.
  return out.sort((a, b) => (a.minKey < b.minKey ? -1 : a.minKey > b.minKey ? 1 : 0));
}

function diffMap(prev: [number, number][], next: [number, number][]): MapEdit | undefined {
  const before = new Map(prev);
  const after = new Map(next);
  const removed = prev.filter(([k]) => !after.has(k)).map(([k]) => k);
  const put = next.filter(([k, v]) => before.get(k) !== v).map(([k, v]) => [k, v] as [number, number]);
  const delta: MapEdit = {
    ...(removed.length > 0 ? { removed } : {}),
    ...(put.length > 0 ? { put } : {}),
  };
  const result = applyMap(prev, delta);
  const exact =
    result.length === next.length && result.every(([k, v], i) => next[i]![0] === k && next[i]![1] === v);
  if (!exact) return { whole: next.map(([k, v]) => [k, v]) };
  return removed.length > 0 || put.length > 0 ? delta : undefined;
}

function applyMap(prev: [number, number][], edit: MapEdit | undefined): [number, number][] {
  if (edit === undefined) return prev.map(([k, v]) => [k, v]);
  if (edit.whole !== undefined) return edit.whole.map(([k, v]) => [k, v]);
  const map = new Map(prev);
  for (const k of edit.removed ?? []) map.delete(k);
  for (const [k, v] of edit.put ?? []) map.set(k, v);
  return [...map];
}

function samePosition(a: LogPosition, b: LogPosition): boolean {
  return a.seq === b.seq && a.offset === b.offset && a.lsn === b.lsn;
}

function sameLogEntry(a: LogSegmentEntry | undefined, b: LogSegmentEntry | undefined): boolean {
  return (
    a !== undefined &&
    b !== undefined &&
    a.seq === b.seq &&
    a.offset === b.offset &&
    a.usedBytes === b.usedBytes
  );
}

function sameDescriptor(
  a: IndexSegmentDescriptor | undefined,
  b: IndexSegmentDescriptor | undefined,
): boolean {
  return (
    a !== undefined &&
    b !== undefined &&
    a.offset === b.offset &&
    a.usedBytes === b.usedBytes &&
    a.entryCount === b.entryCount &&
    a.tombstoneCount === b.tombstoneCount &&
    a.minKey === b.minKey &&
    a.maxKey === b.maxKey
  );
}

export function cloneManifest(data: ManifestData): ManifestData {
  const copy: ManifestData = {
    formatVersion: 1,
    role: data.role,
    segmentBytes: data.segmentBytes,
    allocatedSegmentCount: data.allocatedSegmentCount,
    log: data.log.map((e) => ({ ...e })),
    replayFrom: { ...data.replayFrom },
    levels: data.levels.map((level) => level.map((d) => ({ ...d }))),
    nextCompactionId: data.nextCompactionId,
    segmentMap: data.segmentMap.map(([k, v]) => [k, v]),
    indexMap: data.indexMap.map(([k, v]) => [k, v]),
  };
  if (data.mapOwner !== undefined) copy.mapOwner = data.mapOwner;
  return copy;
}

function hex(latin1: string): string {
  return Buffer.from(latin1, 'latin1').toString('hex');
}

function unhex(h: string): string {
  return Buffer.from(h, 'hex').toString('latin1');
}
