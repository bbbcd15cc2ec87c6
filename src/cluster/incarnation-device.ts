/**
 * A node incarnation's view of a device (failure injection in the local cluster). A killed node's
 * process is gone, so nothing it had in flight may touch its disk afterwards — yet in one process
 * its abandoned stores could still be finishing a flush. `cut()` makes every later call through
 * this view throw, so a restarted incarnation owns the device alone.
 */
import type { Device, IoCategory, IoStats } from '../engine/device.js';
import { TalosError } from '../errors.js';

export class NodeKilledError extends TalosError {
  constructor(device: string) {
    super('NODE_KILLED', `device ${device} belongs to a killed node incarnation`);
  }
}

/**
 * A mutating device call, as a crash trigger sees it (LocalCluster.crashWhen). 'meta' is every
 * metadata-file call: an atomic replace (CURRENT, a manifest snapshot), an append to the manifest
 * log, its sync, or a removal.
 */
export type DeviceOp =
  | { kind: 'write'; category: IoCategory; bytes: number }
  | { kind: 'sync' }
  | { kind: 'meta'; action: MetaAction; name: string };

export type MetaAction = 'replace' | 'append' | 'sync' | 'remove';

export class IncarnationDevice implements Device {
  readonly name: string;
  private isCut = false;

  /** `beforeOp` runs before every write, sync and metadata write; it may cut this view (a crash). */
  constructor(
    private readonly inner: Device,
    private readonly beforeOp?: (op: DeviceOp) => void,
  ) {
    this.name = inner.name;
  }

  /** From now on every call fails with NodeKilledError. */
  cut(): void {
    this.isCut = true;
  }

  read(offset: number, length: number, category: IoCategory): Buffer {
    this.check();
    return this.inner.read(offset, length, category);
  }

  write(offset: number, bytes: Uint8Array, category: IoCategory): void {
    this.check();
    this.beforeOp?.({ kind: 'write', category, bytes: bytes.length });
    this.check();
    this.inner.write(offset, bytes, category);
  }

  async sync(): Promise<void> {
    this.check();
    this.beforeOp?.({ kind: 'sync' });
    this.check();
    await this.inner.sync();
    this.check(); // killed while the sync was in flight: the process never saw it complete
  }

  readMeta(name: string): Buffer | undefined {
    this.check();
    return this.inner.readMeta(name);
  }

  async writeMetaAtomic(name: string, bytes: Uint8Array): Promise<void> {
    this.check();
    this.beforeOp?.({ kind: 'meta', action: 'replace', name });
    this.check();
    await this.inner.writeMetaAtomic(name, bytes);
    this.check();
  }

  appendMeta(name: string, bytes: Uint8Array): void {
    this.check();
    this.beforeOp?.({ kind: 'meta', action: 'append', name });
    this.check();
    this.inner.appendMeta(name, bytes);
  }

  async syncMeta(name: string): Promise<void> {
    this.check();
    this.beforeOp?.({ kind: 'meta', action: 'sync', name });
    this.check();
    await this.inner.syncMeta(name);
    this.check();
  }

  removeMeta(name: string): void {
    this.check();
    this.beforeOp?.({ kind: 'meta', action: 'remove', name });
    this.check();
    this.inner.removeMeta(name);
  }

  io(): IoStats {
    return this.inner.io();
  }

  settled(): Promise<void> {
    return this.inner.settled();
  }

  /** The inner device is closed by its owner (the cluster), not through a view. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  private check(): void {
    if (this.isCut) throw new NodeKilledError(this.name);
  }
}
