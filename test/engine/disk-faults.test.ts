/**
 * Disk faults on the engine alone: ENOSPC and EIO from a device on a write or a sync are typed
 * (DiskFullError, DeviceIoError, naming device and operation), and a store that sees one
 * fail-stops — nothing after it is acknowledged, writes already appended reject as
 * OutcomeUnknownError, writes not appended reject with a definite typed error, and what was
 * acknowledged survives a reopen of the device. The same holds whether the error comes from a
 * real FileDevice (here: its data file is /dev/full, which fails every write with ENOSPC) or from
 * an injected fault on a SimDevice. Bit flips in persisted segments are found by
 * `verifyPersisted`, make `scrub` fail-stop the store, are never returned as data, and make a
 * promotion refuse the copy.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Device, IoCategory } from '../../src/engine/device.js';
import { FileDevice } from '../../src/engine/file-device.js';
import { SimDevice } from '../../src/engine/sim-device.js';
import { Store, StoreFailedError } from '../../src/engine/store.js';
import {
  CorruptSegmentError,
  classifyDeviceError,
  DeviceIoError,
  DiskFullError,
  isDeviceError,
  OutcomeUnknownError,
} from '../../src/errors.js';
import { backupStore } from '../../src/replication/backup-store.js';
import { promoteToPrimary } from '../../src/replication/promotion.js';
import { backupIdle, ship, TINY } from '../support/store.js';

const errnoError = (code: string): NodeJS.ErrnoException =>
  Object.assign(new Error(`${code}: simulated`), { code, errno: -1, syscall: 'write' });

/** A device whose writes and/or syncs fail with an errno error while armed, classified as FileDevice does. */
class FailingDevice implements Device {
  readonly name: string;
  failing: { code: string; op: 'write' | 'sync' } | undefined;
  constructor(readonly inner: Device) {
    this.name = inner.name;
  }
  private maybeFail(op: 'write' | 'sync'): void {
    if (this.failing?.op === op) throw classifyDeviceError(errnoError(this.failing.code), this.name, op);
  }
  read(offset: number, length: number, category: IoCategory): Buffer {
    return this.inner.read(offset, length, category);
  }
  write(offset: number, bytes: Uint8Array, category: IoCategory): void {
    this.maybeFail('write');
    this.inner.write(offset, bytes, category);
  }
  async sync(): Promise<void> {
    this.maybeFail('sync');
    await this.inner.sync();
  }
  readMeta(name: string): Buffer | undefined {
    return this.inner.readMeta(name);
  }
  async writeMetaAtomic(name: string, bytes: Uint8Array): Promise<void> {
    this.maybeFail('write');
    await this.inner.writeMetaAtomic(name, bytes);
  }
  appendMeta(name: string, bytes: Uint8Array): void {
    this.maybeFail('write');
    this.inner.appendMeta(name, bytes);
  }
  async syncMeta(name: string): Promise<void> {
    this.maybeFail('sync');
    await this.inner.syncMeta(name);
  }
  removeMeta(name: string): void {
    this.inner.removeMeta(name);
  }
  io() {
    return this.inner.io();
  }
  settled(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

async function settle<T>(p: Promise<T>): Promise<{ ok: true } | { ok: false; error: unknown }> {
  try {
    await p;
    return { ok: true };
  } catch (error) {
    return { ok: false, error };
  }
}

describe('device errors are typed', () => {
  it.each([
    ['ENOSPC', DiskFullError, 'DISK_FULL'],
    ['EDQUOT', DiskFullError, 'DISK_FULL'],
    ['EIO', DeviceIoError, 'DEVICE_IO'],
    ['EROFS', DeviceIoError, 'DEVICE_IO'],
  ] as const)('%s → %s', (code, type, typedCode) => {
    const cause = errnoError(code);
    const err = classifyDeviceError(cause, '/data/r0', 'sync');
    expect(err).toBeInstanceOf(type);
    expect(isDeviceError(err)).toBe(true);
    const typed = err as DiskFullError;
    expect(typed.code).toBe(typedCode);
    expect(typed.device).toBe('/data/r0');
    expect(typed.operation).toBe('sync');
    expect(typed.errno).toBe(code);
    expect(typed.cause).toBe(cause);
    expect(typed.message).toContain('/data/r0');
    expect(typed.message).toContain('sync');
  });

  it('leaves other errors as they are', () => {
    const other = errnoError('EBADF');
    expect(classifyDeviceError(other, 'd', 'write')).toBe(other);
    const plain = new Error('x');
    expect(classifyDeviceError(plain, 'd', 'write')).toBe(plain);
  });

  const devFull = fs.existsSync('/dev/full') ? it : it.skip;
  devFull('a FileDevice on a full disk raises DiskFullError naming its directory and the write', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'talos-enospc-'));
    try {
      fs.symlinkSync('/dev/full', path.join(dir, 'data'));
      const device = FileDevice.open(dir);
      try {
        // The write is queued for the thread pool: its failure is the answer of the next sync,
        // and of every later write.
        device.write(0, Buffer.from('hello'), 'log');
        let caught: unknown;
        await device.sync().catch((err: unknown) => {
          caught = err;
        });
        expect(caught).toBeInstanceOf(DiskFullError);
        expect(() => device.write(8, Buffer.from('later'), 'log')).toThrow(DiskFullError);
        expect((caught as DiskFullError).device).toBe(dir);
        expect((caught as DiskFullError).operation).toBe('write');
        expect((caught as DiskFullError).errno).toBe('ENOSPC');
      } finally {
        await device.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  devFull('a store on a real FileDevice fail-stops on ENOSPC like on an injected fault', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'talos-enospc-'));
    try {
      fs.symlinkSync('/dev/full', path.join(dir, 'data'));
      const device = FileDevice.open(dir);
      const store = await Store.open({ ...TINY, device, syncPolicy: 'always' });
      const results = await Promise.all([settle(store.put('a', '1')), settle(store.put('b', '2'))]);
      for (const r of results) {
        expect(r.ok).toBe(false);
        expect((r as { error: unknown }).error).toBeInstanceOf(OutcomeUnknownError);
      }
      expect(store.failure).toBeInstanceOf(DiskFullError);
      const later = await settle(store.put('c', '3'));
      expect((later as { error: StoreFailedError }).error).toBeInstanceOf(StoreFailedError);
      expect(((later as { error: StoreFailedError }).error.cause as DiskFullError).device).toBe(dir);
      await store.close();
      await device.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a store fail-stops on ENOSPC and EIO', () => {
  describe.each([
    ['ENOSPC', DiskFullError],
    ['EIO', DeviceIoError],
  ] as const)('%s', (code, type) => {
    it.each(['write', 'sync'] as const)(
      'on %s: appended → unknown, later → definite, acknowledged kept',
      async (op) => {
        const sim = new SimDevice({ name: 'disk' });
        const device = new FailingDevice(sim);
        const store = await Store.open({ ...TINY, device, syncPolicy: 'always' });
        const failed: unknown[] = [];
        store.hooks.on('failed', ({ error }) => failed.push(error));
        for (let i = 0; i < 20; i++) await store.put(`k${i}`, `v${i}`.padEnd(40, '.'));
        device.failing = { code, op };
        // One group commit: both records are in the log when its sync (or tail write) fails.
        const group = await Promise.all([settle(store.put('x', 'X')), settle(store.delete('k0'))]);
        for (const r of group) {
          expect(r.ok).toBe(false);
          const error = (r as { error: unknown }).error;
          expect(error).toBeInstanceOf(OutcomeUnknownError);
          expect((error as OutcomeUnknownError).cause).toBeInstanceOf(type);
        }
        expect(store.failure).toBeInstanceOf(type);
        expect((store.failure as DiskFullError).operation).toBe(op);
        expect(failed).toHaveLength(1);
        // Nothing more is accepted, even with the disk working again: definite, with the cause.
        device.failing = undefined;
        const later = await settle(store.put('y', 'Y'));
        expect((later as { error: unknown }).error).toBeInstanceOf(StoreFailedError);
        expect(((later as { error: StoreFailedError }).error.cause as Error).constructor).toBe(type);
        await expect(store.get('k1')).rejects.toBeInstanceOf(StoreFailedError);
        await store.close();
        expect(store.isClosed).toBe(true);
        // Power loss, then a reopen: every acknowledged write is there (k0's delete is unknown:
        // written before the failed sync, it may have reached the disk); y never was.
        sim.crash();
        const reopened = await Store.open({ ...TINY, device: sim });
        for (let i = 1; i < 20; i++)
          expect((await reopened.get(`k${i}`))?.toString()).toBe(`v${i}`.padEnd(40, '.'));
        expect([undefined, 'v0'.padEnd(40, '.')]).toContain((await reopened.get('k0'))?.toString());
        expect(await reopened.get('y')).toBeUndefined();
        await reopened.close();
      },
    );

    it('while sealing: the write that needed the room fails definitely (typed), nothing is acknowledged after', async () => {
      const sim = new SimDevice({ name: 'disk' });
      const device = new FailingDevice(sim);
      const store = await Store.open({ ...TINY, device, syncPolicy: 'seal' });
      let i = 0;
      // Fill the active segment until the next record does not fit (segmentBytes 4096).
      while (store.logSegments().length === 1) {
        await store.put(`k${i}`, 'v'.repeat(200));
        i++;
        if (store.logSegments().at(-1)!.usedBytes === null && i > 14) break;
      }
      await store.sync();
      device.failing = { code, op: 'write' };
      let error: unknown;
      for (let j = 0; j < 40 && error === undefined; j++) {
        try {
          await store.put(`big${j}`, 'w'.repeat(300));
        } catch (err) {
          error = err;
        }
      }
      expect(error).toBeInstanceOf(type); // definite: refused before its record reached the log
      expect(store.failure).toBe(error);
      await expect(store.put('z', 'Z')).rejects.toBeInstanceOf(StoreFailedError);
      await store.close();
    });
  });

  it('a group at the commit gate when the store fails is not acknowledged when the gate opens', async () => {
    const sim = new SimDevice({ name: 'disk' });
    const device = new FailingDevice(sim);
    const store = await Store.open({ ...TINY, device });
    let open: () => void = () => {};
    store.setCommitGate(() => new Promise<void>((resolve) => (open = resolve)));
    const write = settle(store.put('a', 'A'));
    await new Promise((resolve) => setImmediate(resolve)); // the group reaches the gate
    device.failing = { code: 'EIO', op: 'sync' };
    await expect(store.sync()).rejects.toBeInstanceOf(DeviceIoError);
    open();
    const result = await write;
    expect((result as { error: unknown }).error).toBeInstanceOf(OutcomeUnknownError);
    await store.close();
  });
});

describe('bit flips in persisted segments', () => {
  async function filled(): Promise<{ store: Store; device: SimDevice }> {
    const device = new SimDevice({ name: 'disk' });
    const store = await Store.open({ ...TINY, device });
    for (let i = 0; i < 300; i++) await store.put(`k${i % 90}`, `v${i}`.padEnd(60, '.'));
    await store.flush();
    await store.sync();
    return { store, device };
  }

  function flip(device: SimDevice, offset: number): void {
    const byte = device.read(offset, 1, 'log')[0]!;
    device.corrupt(offset, Buffer.from([byte ^ 0x10]));
  }

  it.each(['log', 'index'] as const)(
    'in a %s segment: verifyPersisted finds it, scrub fail-stops',
    async (kind) => {
      const { store, device } = await filled();
      expect(store.verifyPersisted()).toBeUndefined();
      const segment = store.persistedSegments().find((s) => s.kind === kind)!;
      expect(segment).toBeDefined();
      flip(device, segment.offset + Math.floor(segment.usedBytes / 2));
      const found = store.verifyPersisted();
      expect(found).toBeInstanceOf(CorruptSegmentError);
      expect(found!.message).toContain(`@${segment.offset}`);
      expect(store.failure).toBeUndefined(); // verifying alone changes nothing
      expect(() => store.scrub()).toThrow(CorruptSegmentError);
      expect(store.failure).toBeInstanceOf(CorruptSegmentError);
      await expect(store.put('n', 'N')).rejects.toBeInstanceOf(StoreFailedError);
      await store.close();
    },
  );

  it('a read that needs a flipped record gets CorruptSegmentError, never the bytes', async () => {
    const { store, device } = await filled();
    const segment = store.persistedSegments().find((s) => s.kind === 'log')!;
    flip(device, segment.offset + 30); // inside the first record's key or value
    let corrupt = 0;
    for (let k = 0; k < 90; k++) {
      try {
        const value = (await store.get(`k${k}`))?.toString();
        expect(value).toMatch(/^v\d+\.*$/);
      } catch (err) {
        expect(err).toBeInstanceOf(CorruptSegmentError);
        corrupt++;
      }
    }
    // The first record was overwritten later (k0 is rewritten), or it is the one read.
    expect(corrupt).toBeLessThanOrEqual(1);
    await store.close();
  });

  it.each(['log', 'index'] as const)(
    'a %s segment read for shipping is verified at the source: a flipped one fail-stops the store',
    async (kind) => {
      const { store, device } = await filled();
      const failed: unknown[] = [];
      store.hooks.on('failed', ({ error }) => failed.push(error));
      const sealed = store.logSegments().filter((e) => e.usedBytes !== null);
      const segment = store.persistedSegments().find((s) => s.kind === kind)!;
      // Intact, every sealed segment and every level segment reads back as it is.
      for (const e of sealed) expect(store.replica.readLogSegment(e.seq).length).toBe(e.usedBytes);
      for (const d of store.levelDescriptors().flat())
        expect(store.replica.readIndexSegment(d.offset)).toHaveLength(d.usedBytes);
      flip(device, segment.offset + Math.floor(segment.usedBytes / 2));
      const read = () =>
        kind === 'log'
          ? store.replica.readLogSegment(sealed.find((e) => e.offset === segment.offset)!.seq)
          : store.replica.readIndexSegment(segment.offset);
      expect(read).toThrow(CorruptSegmentError);
      expect(failed).toHaveLength(1);
      expect(failed[0]).toBeInstanceOf(CorruptSegmentError);
      await expect(store.put('n', 'N')).rejects.toBeInstanceOf(StoreFailedError);
      await store.close();
    },
  );

  it('the active segment is verified when read for shipping (a record before the flushed position may have rotted)', async () => {
    const device = new SimDevice({ name: 'disk' });
    const options = { ...TINY, device, segmentBytes: 64 * 1024 };
    let store = await Store.open(options);
    for (let i = 0; i < 20; i++) await store.put(`k${i}`, `v${i}`.padEnd(60, '.'));
    await store.flush(); // replayFrom moves past these records: recovery will not parse them again
    await store.put('after', 'flush');
    await store.sync();
    const active = store.logSegments().at(-1)!;
    expect(active.usedBytes).toBeNull();
    await store.close();
    flip(device, active.offset + 40); // inside the first record, before replayFrom
    store = await Store.open(options);
    const failed: unknown[] = [];
    store.hooks.on('failed', ({ error }) => failed.push(error));
    expect(() => store.replica.readLogSegment(active.seq)).toThrow(CorruptSegmentError);
    expect(failed).toHaveLength(1);
    await store.close();
  });

  it('a backup with a flipped bit refuses promotion and fail-stops', async () => {
    const primary = await Store.open({ ...TINY, device: new SimDevice() });
    const device = new SimDevice({ name: 'backup' });
    const backup = await Store.open({ ...TINY, device, role: 'backup' });
    await backupStore(backup).setMapOwner('n1');
    ship(primary, backup);
    for (let i = 0; i < 200; i++) await primary.put(`k${i}`, `v${i}`.padEnd(40, '.'));
    await backupIdle(backup);
    const sealed = backup.persistedSegments().find((s) => s.kind === 'log')!;
    flip(device, sealed.offset + 7);
    const failed: unknown[] = [];
    backup.hooks.on('failed', ({ error }) => failed.push(error));
    await expect(promoteToPrimary(backup, { tail: [] })).rejects.toBeInstanceOf(CorruptSegmentError);
    expect(failed).toHaveLength(1);
    // Still a backup on disk: nothing of the promotion was written.
    await backup.close();
    const reopened = await Store.open({ ...TINY, device });
    expect(reopened.role).toBe('backup');
    expect(reopened.verifyPersisted()).toBeInstanceOf(CorruptSegmentError);
    await reopened.close();
    await primary.close();
  });
});
