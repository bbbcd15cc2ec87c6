/**
 * SimDevice: an in-memory device with a crash model, for tests and the simulator.
 *
 * It keeps two images: `current` (what reads see) and `durable` (what survives a crash), plus the
 * list of writes issued since the last `sync()`. `sync()` applies those writes to the durable
 * image. `crash()` rebuilds `current` from the durable image plus a seeded-random subset of the
 * unsynced writes: each is kept or dropped, and the last one kept may be torn (only a prefix of
 * it lands). That is the behaviour a real disk without barriers is allowed to show. Metadata
 * files are replaced atomically and durably, as FileDevice does.
 *
 * Asynchronous completions: `sync()`, `syncMeta()` and `writeMetaAtomic()` take effect when their
 * completion step runs, handed to the `scheduler` (the simulator's fabric queue, so I/O
 * completions interleave with messages and timers in seeded order; by default the next
 * microtask). A sync covers the writes issued before it was called; one whose completion finds
 * the device crashed meanwhile (a power cycle) rejects with DeviceCrashedError and makes nothing
 * durable. Syncs go through a GroupSync, as on a FileDevice: `syncCount` counts rounds.
 */
import { TalosError } from '../errors.js';
import { cloneIoStats, type Device, emptyIoStats, type IoCategory, type IoStats } from './device.js';
import { GroupSync } from './group-sync.js';
import { createPrng, type Prng } from './prng.js';

export interface SimCrashOptions {
  /** Probability that an unsynced write survives the crash (default 0.5). */
  keepProbability?: number;
  /** Probability that the last surviving unsynced write is torn (default 0.5). */
  tearProbability?: number;
}

export interface SimCrashReport {
  unsyncedWriteCount: number;
  keptCount: number;
  torn: boolean;
  /** Unsynced metadata appends at the crash, how many survived, and whether the last one was torn. */
  unsyncedMetaAppendCount?: number;
  keptMetaAppendCount?: number;
  tornMeta?: boolean;
}

interface PendingWrite {
  offset: number;
  bytes: Buffer;
}

class ByteImage {
  buf = Buffer.alloc(0);
  size = 0;

  ensure(end: number): void {
    if (end <= this.buf.length) {
      this.size = Math.max(this.size, end);
      return;
    }
    const grown = Buffer.alloc(Math.max(end, this.buf.length * 2, 64 * 1024));
    this.buf.copy(grown, 0, 0, this.size);
    this.buf = grown;
    this.size = end;
  }

  write(offset: number, bytes: Uint8Array): void {
    this.ensure(offset + bytes.length);
    this.buf.set(bytes, offset);
  }

  read(offset: number, length: number): Buffer {
    const out = Buffer.alloc(length);
    if (offset < this.size) this.buf.copy(out, 0, offset, Math.min(this.size, offset + length));
    return out;
  }

  clone(): ByteImage {
    const copy = new ByteImage();
    copy.buf = Buffer.from(this.buf.subarray(0, this.size));
    copy.size = this.size;
    return copy;
  }
}

/** An operation through a device view that a crash has cut off (its process is 'dead'). */
export class DeviceCrashedError extends TalosError {
  constructor(name: string) {
    super('DEVICE_CRASHED', `${name}: this view of the device died in a crash`);
  }
}

export class SimDevice implements Device {
  readonly name: string;
  private current = new ByteImage();
  private durable = new ByteImage();
  private pending: PendingWrite[] = [];
  /** Metadata files as reads see them, and as a crash leaves them. */
  private readonly meta = new Map<string, Buffer>();
  private readonly durableMeta = new Map<string, Buffer>();
  /** Appends to metadata files since their last syncMeta, in issue order. */
  private pendingMeta: { name: string; bytes: Buffer }[] = [];
  private readonly prng: Prng;
  private stats = emptyIoStats();
  private powerCycle = 0;
  private scheduledCrash: { remaining: number; options: SimCrashOptions } | undefined;
  /** The report of the last crash, scheduled or explicit. */
  lastCrash: SimCrashReport | undefined;
  /** Runs an I/O completion step (the simulator's queue; the next microtask by default). */
  private scheduler: (step: () => void) => void;
  private readonly dataSyncs = new GroupSync(() =>
    this.completion(() => this.applySync(this.pending.length)),
  );
  private readonly metaSyncs = new Map<string, GroupSync>();
  /**
   * Holds every completion step until `release` (tests: a sync held open). Undefined: steps go to
   * the scheduler.
   */
  private held: (() => void)[] | undefined;

  constructor(options: { seed?: number; name?: string; scheduler?: (step: () => void) => void } = {}) {
    this.prng = createPrng(options.seed ?? 1);
    this.name = options.name ?? 'sim-device';
    this.scheduler = options.scheduler ?? queueMicrotask;
  }

  /** From now on I/O completions run through `scheduler` (a simulator's step queue). */
  setScheduler(scheduler: (step: () => void) => void): void {
    this.scheduler = scheduler;
  }

  /** Holds I/O completions (they queue until `releaseCompletions`): a test's way to keep a sync in flight. */
  holdCompletions(): void {
    this.held ??= [];
  }

  /** Runs the held completions' steps (in issue order) and stops holding. */
  releaseCompletions(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const step of held) this.scheduler(step);
  }

  /** Completion steps held so far (holdCompletions). */
  get heldCompletionCount(): number {
    return this.held?.length ?? 0;
  }

  /**
   * Runs `effect` in a completion step; its promise settles there. `effect` is prepared now (it
   * captures what the call covers) and dropped when the device crashed before the step ran.
   */
  private completion(prepare: () => () => void): Promise<void> {
    const effect = prepare();
    const cycle = this.powerCycle;
    return new Promise<void>((resolve, reject) => {
      const step = (): void => {
        if (this.powerCycle !== cycle) {
          reject(new DeviceCrashedError(this.name));
          return;
        }
        try {
          effect();
          resolve();
        } catch (err) {
          reject(err);
        }
      };
      if (this.held !== undefined) this.held.push(step);
      else this.scheduler(step);
    });
  }

  /** Prepares a data sync covering the first `count` pending writes. */
  private applySync(count: number): () => void {
    const covered = new Set(this.pending.slice(0, count));
    return () => {
      for (const w of covered) this.durable.write(w.offset, w.bytes);
      // Writes issued after the sync was called stay pending (a later sync covers them).
      this.pending = this.pending.filter((w) => !covered.has(w));
      this.stats.syncCount++;
    };
  }

  read(offset: number, length: number, category: IoCategory): Buffer {
    this.stats.readBytes[category] += length;
    this.stats.readCount++;
    return this.current.read(offset, length);
  }

  write(offset: number, bytes: Uint8Array, category: IoCategory): void {
    const copy = Buffer.from(bytes);
    this.current.write(offset, copy);
    this.pending.push({ offset, bytes: copy });
    this.stats.writtenBytes[category] += bytes.length;
    this.stats.writeCount++;
  }

  sync(): Promise<void> {
    return this.dataSyncs.request();
  }

  readMeta(name: string): Buffer | undefined {
    const bytes = this.meta.get(name);
    if (bytes === undefined) return undefined;
    this.stats.readBytes.manifest += bytes.length;
    this.stats.readCount++;
    return Buffer.from(bytes);
  }

  writeMetaAtomic(name: string, bytes: Uint8Array): Promise<void> {
    const copy = Buffer.from(bytes);
    // Atomic: reads see the old file until the replace completes, a crash before it keeps the old one.
    return this.completion(() => () => {
      this.meta.set(name, Buffer.from(copy));
      this.durableMeta.set(name, Buffer.from(copy));
      this.pendingMeta = this.pendingMeta.filter((a) => a.name !== name);
      this.stats.writtenBytes.manifest += copy.length;
      this.stats.writeCount++;
      this.stats.syncCount++;
    });
  }

  appendMeta(name: string, bytes: Uint8Array): void {
    const copy = Buffer.from(bytes);
    this.meta.set(name, Buffer.concat([this.meta.get(name) ?? Buffer.alloc(0), copy]));
    this.pendingMeta.push({ name, bytes: copy });
    this.stats.writtenBytes.manifest += bytes.length;
    this.stats.writeCount++;
  }

  syncMeta(name: string): Promise<void> {
    let syncs = this.metaSyncs.get(name);
    if (syncs === undefined) {
      syncs = new GroupSync(() => this.completion(() => this.applySyncMeta(name)));
      this.metaSyncs.set(name, syncs);
    }
    return syncs.request();
  }

  /** Prepares a sync of metadata file `name` covering its appends issued so far. */
  private applySyncMeta(name: string): () => void {
    const covered = new Set(this.pendingMeta.filter((a) => a.name === name));
    return () => {
      const mine = this.pendingMeta.filter((a) => covered.has(a));
      if (mine.length > 0) {
        const durable = this.durableMeta.get(name) ?? Buffer.alloc(0);
        this.durableMeta.set(name, Buffer.concat([durable, ...mine.map((a) => a.bytes)]));
        this.pendingMeta = this.pendingMeta.filter((a) => !covered.has(a));
      }
      this.stats.syncCount++;
    };
  }

  removeMeta(name: string): void {
    this.meta.delete(name);
    this.durableMeta.delete(name);
    this.pendingMeta = this.pendingMeta.filter((a) => a.name !== name);
  }

  /** Bytes appended to metadata file `name` and not yet synced. */
  unsyncedMetaBytes(name: string): number {
    return this.pendingMeta.reduce((n, a) => n + (a.name === name ? a.bytes.length : 0), 0);
  }

  /** Overwrites bytes in both images, bypassing the crash model: for corruption tests. */
  corrupt(offset: number, bytes: Uint8Array): void {
    this.current.write(offset, bytes);
    this.durable.write(offset, bytes);
  }

  /** Replaces a metadata file in place, bypassing atomicity: for corruption tests. */
  corruptMeta(name: string, bytes: Uint8Array): void {
    this.meta.set(name, Buffer.from(bytes));
    this.durableMeta.set(name, Buffer.from(bytes));
    this.pendingMeta = this.pendingMeta.filter((a) => a.name !== name);
  }

  /** Number of writes issued since the last sync. */
  get unsyncedWriteCount(): number {
    return this.pending.length;
  }

  /**
   * Simulates power loss: unsynced writes are dropped or kept at random (seeded), and the last
   * kept one may be torn. After this the device reads as a freshly restarted disk would.
   */
  crash(options: SimCrashOptions = {}): SimCrashReport {
    const keepProbability = options.keepProbability ?? 0.5;
    const tearProbability = options.tearProbability ?? 0.5;
    const kept = this.pending.filter(() => this.prng.chance(keepProbability));
    let torn = false;
    kept.forEach((w, i) => {
      let bytes = w.bytes;
      if (i === kept.length - 1 && bytes.length > 1 && this.prng.chance(tearProbability)) {
        bytes = bytes.subarray(0, this.prng.int(1, bytes.length - 1));
        torn = true;
      }
      this.durable.write(w.offset, bytes);
    });
    const report: SimCrashReport = { unsyncedWriteCount: this.pending.length, keptCount: kept.length, torn };
    this.pending = [];
    this.current = this.durable.clone();
    if (this.pendingMeta.length > 0) this.crashMeta(report, keepProbability, tearProbability);
    this.powerCycle++;
    this.scheduledCrash = undefined;
    this.lastCrash = report;
    return report;
  }

  /** A metadata file keeps a prefix of its unsynced appends; the last kept one may be torn. */
  private crashMeta(report: SimCrashReport, keepProbability: number, tearProbability: number): void {
    const names = [...new Set(this.pendingMeta.map((a) => a.name))];
    let kept = 0;
    let tornMeta = false;
    for (const name of names) {
      const appends = this.pendingMeta.filter((a) => a.name === name);
      const survivors: Buffer[] = [];
      for (const a of appends) {
        if (!this.prng.chance(keepProbability)) break;
        survivors.push(a.bytes);
      }
      const last = survivors.length - 1;
      if (last >= 0 && survivors[last]!.length > 1 && this.prng.chance(tearProbability)) {
        survivors[last] = survivors[last]!.subarray(0, this.prng.int(1, survivors[last]!.length - 1));
        tornMeta = true;
      }
      kept += survivors.length;
      const durable = this.durableMeta.get(name);
      if (durable !== undefined || survivors.length > 0) {
        this.durableMeta.set(name, Buffer.concat([durable ?? Buffer.alloc(0), ...survivors]));
      }
    }
    report.unsyncedMetaAppendCount = this.pendingMeta.length;
    report.keptMetaAppendCount = kept;
    report.tornMeta = tornMeta;
    this.pendingMeta = [];
    this.meta.clear();
    for (const [name, bytes] of this.durableMeta) this.meta.set(name, Buffer.from(bytes));
  }

  /**
   * Schedules a power loss inside a later mutating operation (write, sync, metadata replace,
   * append, sync or removal)
   * issued through a view: the `operationCount`-th one does not happen; the device crashes instead
   * and the caller gets DeviceCrashedError. This is how tests cut a seal, a compaction or a
   * manifest update in the middle.
   */
  scheduleCrash(operationCount: number, options: SimCrashOptions = {}): void {
    this.scheduledCrash = { remaining: Math.max(1, operationCount), options };
  }

  get crashPending(): boolean {
    return this.scheduledCrash !== undefined;
  }

  private maybeCrashNow(): void {
    const scheduled = this.scheduledCrash;
    if (scheduled === undefined) return;
    scheduled.remaining--;
    if (scheduled.remaining > 0) return;
    this.crash(scheduled.options);
    throw new DeviceCrashedError(this.name);
  }

  /**
   * A view of this device for one 'process lifetime': it forwards every call until the next
   * `crash()`, then throws DeviceCrashedError. A store opened on a view and abandoned at a crash
   * can therefore never write past the crash (its background work fails instead).
   */
  attach(): Device {
    const cycle = this.powerCycle;
    const live = (): SimDevice => {
      if (this.powerCycle !== cycle) throw new DeviceCrashedError(this.name);
      return this;
    };
    const mutating = (): SimDevice => {
      live().maybeCrashNow();
      return this;
    };
    return {
      name: this.name,
      read: (offset, length, category) => live().read(offset, length, category),
      write: (offset, bytes, category) => mutating().write(offset, bytes, category),
      sync: async () => {
        await mutating().sync();
        live(); // a crash while the sync was in flight: this view never sees it complete
      },
      readMeta: (name) => live().readMeta(name),
      writeMetaAtomic: async (name, bytes) => {
        await mutating().writeMetaAtomic(name, bytes);
        live();
      },
      appendMeta: (name, bytes) => mutating().appendMeta(name, bytes),
      syncMeta: async (name) => {
        await mutating().syncMeta(name);
        live();
      },
      removeMeta: (name) => mutating().removeMeta(name),
      settled: () => Promise.resolve(),
      io: () => this.io(),
      close: () => Promise.resolve(),
    };
  }

  io(): IoStats {
    return cloneIoStats(this.stats);
  }

  /** Zeroes the I/O counters (between phases of a measurement). */
  resetIo(): void {
    this.stats = emptyIoStats();
  }

  /** Writes land in memory at once (their durability is `sync`'s): nothing is ever in flight. */
  settled(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    // Memory stays: a SimDevice outlives the store that used it, so tests can reopen or crash it.
    return Promise.resolve();
  }
}
