/**
 * Manifest-log test support: random manifests as a store evolves them, and a device view that
 * crashes at the n-th metadata operation (an append, its sync, a replace of a snapshot or CURRENT,
 * a removal) and records every durable manifest state on the way.
 */
import type { Device, IoCategory, IoStats } from '../../src/engine/device.js';
import type { IndexSegmentDescriptor } from '../../src/engine/index-segment-reader.js';
import type { ManifestData } from '../../src/engine/manifest.js';
import { cloneManifest, ManifestLog } from '../../src/engine/manifest-log.js';
import { DeviceCrashedError, type SimCrashOptions, type SimDevice } from '../../src/engine/sim-device.js';

export type MetaAction = 'replace' | 'append' | 'sync' | 'remove';

/**
 * A view of `sim` that crashes it instead of performing its `crashAt`-th metadata operation
 * (1-based; never when undefined). `states` lists the durable manifest after every completed
 * commit step that makes one durable (a meta sync, a replace of CURRENT). `allowed` is filled at
 * the crash with the manifests recovery may return: the last durable one, and — when the crash
 * hits a sync (the append may survive) or a removal (CURRENT already moved) — the one the device
 * held just before the crash.
 */
export class MetaCrashView implements Device {
  readonly name: string;
  metaOps = 0;
  crashed: { action: MetaAction; name: string } | undefined;
  readonly states: (ManifestData | undefined)[] = [];
  allowed: (ManifestData | undefined)[] = [];

  constructor(
    private readonly sim: SimDevice,
    private readonly crashAt: number | undefined,
    private readonly crashOptions: SimCrashOptions = {},
  ) {
    this.name = sim.name;
    this.states.push(peek(sim));
  }

  /** Counts the operation and crashes the device instead of it when it is the `crashAt`-th. */
  private enter(action: MetaAction, name: string): void {
    if (this.crashed !== undefined) throw new DeviceCrashedError(this.name);
    this.metaOps++;
    if (this.metaOps === this.crashAt) {
      const before = peek(this.sim);
      const last = this.states.at(-1);
      this.allowed = action === 'sync' || action === 'remove' ? [last, before] : [last];
      this.crashed = { action, name };
      this.sim.crash(this.crashOptions);
      throw new DeviceCrashedError(this.name);
    }
  }

  private meta(action: MetaAction, name: string, run: () => void): void {
    this.enter(action, name);
    run();
  }

  private async metaAsync(action: MetaAction, name: string, run: () => Promise<void>): Promise<void> {
    this.enter(action, name);
    await run();
    if (action === 'sync' || (action === 'replace' && name === 'CURRENT')) this.states.push(peek(this.sim));
  }

  private live(): SimDevice {
    if (this.crashed !== undefined) throw new DeviceCrashedError(this.name);
    return this.sim;
  }

  read(offset: number, length: number, category: IoCategory): Buffer {
    return this.live().read(offset, length, category);
  }
  write(offset: number, bytes: Uint8Array, category: IoCategory): void {
    this.live().write(offset, bytes, category);
  }
  sync(): Promise<void> {
    return this.live().sync();
  }
  readMeta(name: string): Buffer | undefined {
    return this.live().readMeta(name);
  }
  async writeMetaAtomic(name: string, bytes: Uint8Array): Promise<void> {
    await this.metaAsync('replace', name, () => this.sim.writeMetaAtomic(name, bytes));
  }
  appendMeta(name: string, bytes: Uint8Array): void {
    this.meta('append', name, () => this.sim.appendMeta(name, bytes));
  }
  async syncMeta(name: string): Promise<void> {
    await this.metaAsync('sync', name, () => this.sim.syncMeta(name));
  }
  removeMeta(name: string): void {
    this.meta('remove', name, () => this.sim.removeMeta(name));
  }
  io(): IoStats {
    return this.sim.io();
  }
  settled(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** The manifest the device holds now (reads the current view, unsynced appends included). */
export function peek(device: Device): ManifestData | undefined {
  return ManifestLog.open(device).data;
}

/** A comparable form: JSON with undefined-valued fields dropped. */
export function canon(data: ManifestData | undefined): string {
  return data === undefined ? 'none' : JSON.stringify(cloneManifest(data));
}

/** A deterministic PRNG step (tests only). */
export function lcg(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 48271) + 11) >>> 0;
    return s / 2 ** 32;
  };
}

export function emptyManifest(role: 'primary' | 'backup' = 'primary'): ManifestData {
  return {
    formatVersion: 1,
    role,
    segmentBytes: 4096,
    allocatedSegmentCount: 1,
    log: [{ seq: 0, offset: 0, usedBytes: null }],
    replayFrom: { seq: 0, offset: 0, lsn: 1 },
    levels: [[], [], [], []],
    nextCompactionId: 1,
    segmentMap: [],
    indexMap: [],
  };
}

const key = (n: number): string => String.fromCharCode(65 + (n % 26)) + String(n).padStart(5, '0');

/**
 * The next manifest after a random store-like change: a seal (active segment sealed, a new one
 * added), a flush/compaction (segments leave a level, new ones join the next; replayFrom moves), a
 * log segment freed, segment/index map entries put or removed, a role or owner change, or a rebase
 * (maps rebuilt in a new order). Pure: `prev` is not modified.
 */
export function evolve(prev: ManifestData, rand: () => number): ManifestData {
  const next = cloneManifest(prev);
  const pick = Math.floor(rand() * 9);
  const alloc = (): number => next.allocatedSegmentCount++ * next.segmentBytes;
  switch (pick) {
    case 0: {
      const active = next.log.at(-1);
      if (active !== undefined && active.usedBytes === null) active.usedBytes = 1 + Math.floor(rand() * 4095);
      next.log.push({ seq: (active?.seq ?? -1) + 1, offset: alloc(), usedBytes: null });
      break;
    }
    case 1: {
      const level = Math.floor(rand() * next.levels.length);
      const src = next.levels[level]!;
      const removed = src.filter(() => rand() < 0.5);
      next.levels[level] = src.filter((d) => !removed.includes(d));
      const dst = Math.min(level + 1, next.levels.length - 1);
      const count = 1 + Math.floor(rand() * 3);
      const base = Math.floor(rand() * 1000) * 10;
      const added: IndexSegmentDescriptor[] = Array.from({ length: count }, (_, i) => ({
        offset: alloc(),
        usedBytes: 100 + Math.floor(rand() * 3000),
        entryCount: 1 + Math.floor(rand() * 50),
        tombstoneCount: Math.floor(rand() * 3),
        minKey: `${key(base + i * 3)}\u0000\u00ff`,
        maxKey: `${key(base + i * 3 + 1)}\u00e9`,
      }));
      const keys = new Set(next.levels[dst]!.map((d) => d.minKey));
      next.levels[dst] = [...next.levels[dst]!, ...added.filter((d) => !keys.has(d.minKey))].sort((a, b) =>
        a.minKey < b.minKey ? -1 : a.minKey > b.minKey ? 1 : 0,
      );
      next.replayFrom = { ...next.replayFrom, lsn: next.replayFrom.lsn + Math.floor(rand() * 100) };
      next.nextCompactionId++;
      break;
    }
    case 2:
      if (next.log.length > 1) next.log.shift();
      next.replayFrom = {
        seq: next.log[0]!.seq,
        offset: Math.floor(rand() * 100),
        lsn: next.replayFrom.lsn + 1,
      };
      break;
    case 3:
      next.segmentMap.push([Math.floor(rand() * 1e6) * 4096, alloc()]);
      break;
    case 4:
      if (next.segmentMap.length > 0) next.segmentMap.splice(Math.floor(rand() * next.segmentMap.length), 1);
      if (next.indexMap.length > 0) next.indexMap[0] = [next.indexMap[0]![0], alloc()];
      break;
    case 5:
      next.indexMap.push([Math.floor(rand() * 1e6) * 4096, alloc()]);
      break;
    case 6:
      if (rand() < 0.5) next.mapOwner = `n${Math.floor(rand() * 5)}`;
      else delete next.mapOwner;
      if (rand() < 0.3) next.role = next.role === 'primary' ? 'backup' : 'primary';
      break;
    case 7:
      // A rebase: the maps rebuilt, keys re-mapped, in a new order.
      next.segmentMap = next.segmentMap.map(([k, v]) => [k + 4096, v] as [number, number]).reverse();
      next.indexMap = [...next.indexMap].reverse();
      break;
    default: {
      // A sealed segment grows (a backup's partial seal, then its full seal).
      const sealed = next.log.find((e) => e.usedBytes !== null);
      if (sealed !== undefined) sealed.usedBytes = Math.min(4096, sealed.usedBytes! + 64);
      break;
    }
  }
  return next;
}
