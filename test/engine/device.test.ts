/**
 * Device conformance: FileDevice and SimDevice pass one suite, then each its own specifics
 * (SimDevice's crash model; FileDevice's files, lock and persistence).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Device } from '../../src/engine/device.js';
import { FileDevice } from '../../src/engine/file-device.js';
import { GroupSync } from '../../src/engine/group-sync.js';
import { encodeManifest } from '../../src/engine/manifest.js';
import { readManifest } from '../../src/engine/manifest-log.js';
import { DeviceCrashedError, SimDevice } from '../../src/engine/sim-device.js';
import { Store } from '../../src/engine/store.js';
import { CorruptManifestError, DeviceIoError, DeviceLockedError, DiskFullError } from '../../src/errors.js';

const tempDirs: string[] = [];
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'talos-device-'));
  tempDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

const implementations: [string, () => Device][] = [
  ['FileDevice', () => FileDevice.open(tempDir())],
  ['SimDevice', () => new SimDevice()],
];

describe.each(implementations)('%s conformance', (_name, create) => {
  let device: Device;
  beforeEach(() => {
    device = create();
  });
  afterEach(() => device.close());

  it('reads never-written bytes as zeros, also past the end', async () => {
    expect(device.read(0, 16, 'log').equals(Buffer.alloc(16))).toBe(true);
    device.write(100, Buffer.from([1, 2, 3]), 'log');
    expect([...device.read(98, 8, 'log')]).toEqual([0, 0, 1, 2, 3, 0, 0, 0]);
    expect(device.read(1 << 20, 4, 'log').equals(Buffer.alloc(4))).toBe(true);
  });

  it('returns what was written; a later overlapping write wins', async () => {
    const big = Buffer.alloc(300_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    device.write(4096, big, 'index');
    device.write(4096 + 10, Buffer.from('hello'), 'index');
    const back = device.read(4096, big.length, 'index');
    expect(back.subarray(10, 15).toString()).toBe('hello');
    expect(back.subarray(15).equals(big.subarray(15))).toBe(true);
  });

  it('keeps metadata files, replaced atomically', async () => {
    expect(device.readMeta('MANIFEST')).toBeUndefined();
    await device.writeMetaAtomic('MANIFEST', Buffer.from('one'));
    await device.writeMetaAtomic('MANIFEST', Buffer.from('two!'));
    expect(device.readMeta('MANIFEST')?.toString()).toBe('two!');
  });

  it('appends to metadata files, syncs and removes them; a replace starts the file over', async () => {
    device.appendMeta('LOG', Buffer.from('ab'));
    device.appendMeta('LOG', Buffer.from('cd'));
    await device.syncMeta('LOG');
    device.appendMeta('LOG', Buffer.from('e'));
    await device.settled(); // readMeta reads what landed: every queued operation first
    expect(device.readMeta('LOG')?.toString()).toBe('abcde');
    await device.writeMetaAtomic('LOG', Buffer.from('X'));
    device.appendMeta('LOG', Buffer.from('y'));
    await device.syncMeta('LOG');
    expect(device.readMeta('LOG')?.toString()).toBe('Xy');
    device.removeMeta('LOG');
    device.removeMeta('LOG'); // absent is fine
    await device.settled();
    expect(device.readMeta('LOG')).toBeUndefined();
    device.appendMeta('LOG', Buffer.from('new'));
    await device.syncMeta('LOG');
    expect(device.readMeta('LOG')?.toString()).toBe('new');
    const io = device.io();
    expect(io.writtenBytes.manifest).toBe(2 + 2 + 1 + 1 + 1 + 3);
  });

  it('counts bytes per category, operations and syncs', async () => {
    device.write(0, Buffer.alloc(100), 'log');
    device.write(0, Buffer.alloc(7), 'index');
    device.read(0, 50, 'log');
    await device.sync();
    await device.writeMetaAtomic('M', Buffer.alloc(9));
    const io = device.io();
    expect(io.writtenBytes).toEqual({ log: 100, index: 7, manifest: 9 });
    expect(io.readBytes.log).toBe(50);
    expect(io.writeCount).toBe(3);
    expect(io.readCount).toBe(1);
    expect(io.syncCount).toBeGreaterThanOrEqual(2);
  });
});

describe('group sync', () => {
  it.each(implementations)(
    '%s: 32 concurrent sync requests cost at most 2 fdatasyncs',
    async (_name, create) => {
      const d = create();
      d.write(0, Buffer.from('first'), 'log');
      await d.sync();
      const before = d.io().syncCount;
      const requests = Array.from({ length: 32 }, (_, i) => {
        d.write(4096 * i, Buffer.alloc(512, i), 'log');
        return d.sync();
      });
      await Promise.all(requests);
      expect(d.io().syncCount - before).toBeLessThanOrEqual(2);
      // Metadata syncs of one file share too.
      d.appendMeta('LOG', Buffer.from('x'));
      const metaBefore = d.io().syncCount;
      await Promise.all(Array.from({ length: 8 }, () => d.syncMeta('LOG')));
      expect(d.io().syncCount - metaBefore).toBeLessThanOrEqual(2);
      await d.close();
    },
  );

  it('a request made while a sync is in flight is covered only by a later sync', async () => {
    const d = new SimDevice();
    d.holdCompletions(); // the first sync stays in flight until released
    d.write(0, Buffer.from('A'), 'log');
    const first = d.sync();
    d.write(4096, Buffer.from('B'), 'log'); // issued after the in-flight sync started
    const second = d.sync();
    const third = d.sync();
    expect(d.heldCompletionCount).toBe(1); // one round in flight; the others wait for the next
    let firstDone = false;
    let secondDone = false;
    void first.then(() => {
      firstDone = true;
      // The in-flight sync did not cover B: it is still unsynced when the first round completes.
      expect(d.unsyncedWriteCount).toBe(1);
    });
    void second.then(() => {
      secondDone = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(firstDone || secondDone).toBe(false);
    d.releaseCompletions();
    await Promise.all([first, second, third]);
    expect(firstDone && secondDone).toBe(true);
    expect(d.unsyncedWriteCount).toBe(0);
    expect(d.io().syncCount).toBe(2); // three requests, two rounds
  });

  it('GroupSync: rounds run one at a time; every request waiting for the next round shares it', async () => {
    const rounds: (() => void)[] = [];
    let calls = 0;
    const group = new GroupSync(() => {
      calls++;
      return new Promise<void>((resolve) => rounds.push(resolve));
    });
    const order: string[] = [];
    const a = group.request().then(() => order.push('a'));
    const b = group.request().then(() => order.push('b'));
    const c = group.request().then(() => order.push('c'));
    expect(calls).toBe(1);
    rounds.shift()!(); // round 1 (a) completes; round 2 (b, c) starts
    await a;
    expect(order).toEqual(['a']);
    expect(calls).toBe(2);
    const d = group.request().then(() => order.push('d')); // during round 2: round 3
    rounds.shift()!();
    await Promise.all([b, c]);
    expect(order).toEqual(['a', 'b', 'c']);
    expect(calls).toBe(3);
    rounds.shift()!();
    await d;
    expect(order).toEqual(['a', 'b', 'c', 'd']);
  });

  it('GroupSync: a failed round rejects exactly its requests', async () => {
    let n = 0;
    const group = new GroupSync(async () => {
      n++;
      if (n === 1) throw new Error('EIO');
    });
    const first = group.request();
    const second = group.request();
    await expect(first).rejects.toThrow('EIO');
    await expect(second).resolves.toBeUndefined();
  });
});

describe('SimDevice crash model', () => {
  it('drops every unsynced write with keepProbability 0, keeps synced ones', async () => {
    const d = new SimDevice({ seed: 3 });
    d.write(0, Buffer.from('synced'), 'log');
    await d.sync();
    d.write(100, Buffer.from('lost'), 'log');
    const report = d.crash({ keepProbability: 0 });
    expect(report).toEqual({ unsyncedWriteCount: 1, keptCount: 0, torn: false });
    expect(d.read(0, 6, 'log').toString()).toBe('synced');
    expect(d.read(100, 4, 'log').equals(Buffer.alloc(4))).toBe(true);
  });

  it('keeps unsynced writes with keepProbability 1, and can tear the last one', async () => {
    const d = new SimDevice({ seed: 5 });
    d.write(0, Buffer.from('first'), 'log');
    d.write(10, Buffer.alloc(1000, 0xaa), 'log');
    const report = d.crash({ keepProbability: 1, tearProbability: 1 });
    expect(report.keptCount).toBe(2);
    expect(report.torn).toBe(true);
    expect(d.read(0, 5, 'log').toString()).toBe('first');
    const tail = d.read(10, 1000, 'log');
    const landed = tail.indexOf(0);
    expect(landed).toBeGreaterThan(0);
    expect(landed).toBeLessThan(1000);
    expect(tail.subarray(0, landed).every((b) => b === 0xaa)).toBe(true);
  });

  it('is deterministic for a seed', async () => {
    const run = (seed: number) => {
      const d = new SimDevice({ seed });
      for (let i = 0; i < 50; i++) d.write(i * 10, Buffer.alloc(10, i + 1), 'log');
      d.crash();
      return d.read(0, 500, 'log').toString('hex');
    };
    expect(run(11)).toBe(run(11));
    expect(run(11)).not.toBe(run(12));
  });

  it('metadata appends are durable after syncMeta; a crash keeps a prefix of the rest, maybe torn', async () => {
    const d = new SimDevice({ seed: 9 });
    await d.writeMetaAtomic('LOG', Buffer.from('snap|'));
    d.appendMeta('LOG', Buffer.from('one|'));
    await d.syncMeta('LOG');
    d.appendMeta('LOG', Buffer.from('two|'));
    d.appendMeta('LOG', Buffer.from('three|'));
    expect(d.unsyncedMetaBytes('LOG')).toBe(10);
    d.crash({ keepProbability: 0 });
    expect(d.readMeta('LOG')?.toString()).toBe('snap|one|');
    d.appendMeta('LOG', Buffer.from('two|'));
    d.appendMeta('LOG', Buffer.from('three|'));
    const report = d.crash({ keepProbability: 1, tearProbability: 1 });
    expect(report.tornMeta).toBe(true);
    const text = d.readMeta('LOG')!.toString();
    expect(text.startsWith('snap|one|two|')).toBe(true);
    expect('snap|one|two|three|'.startsWith(text)).toBe(true);
    expect(text.length).toBeLessThan('snap|one|two|three|'.length);
    // A file never synced may vanish; a data sync does not sync metadata files.
    d.appendMeta('NEW', Buffer.from('x'));
    await d.sync();
    d.crash({ keepProbability: 0 });
    expect(d.readMeta('NEW')).toBeUndefined();
  });

  it('views die at a crash; a scheduled crash fires inside the n-th mutating operation', async () => {
    const d = new SimDevice();
    const view = d.attach();
    view.write(0, Buffer.from('a'), 'log');
    d.scheduleCrash(2, { keepProbability: 1, tearProbability: 0 });
    view.write(1, Buffer.from('b'), 'log');
    await expect(view.sync()).rejects.toThrow(DeviceCrashedError);
    expect(() => view.read(0, 1, 'log')).toThrow(DeviceCrashedError);
    expect(d.lastCrash?.keptCount).toBe(2);
    expect(d.attach().read(0, 2, 'log').toString()).toBe('ab');
  });
});

describe('FileDevice specifics', () => {
  it('persists data and metadata across close and reopen', async () => {
    const dir = tempDir();
    const d = FileDevice.open(dir);
    d.write(8192, Buffer.from('durable'), 'log');
    await d.sync();
    await d.writeMetaAtomic('MANIFEST', Buffer.from('m'));
    await d.close();
    const again = FileDevice.open(dir);
    expect(again.read(8192, 7, 'log').toString()).toBe('durable');
    expect(again.readMeta('MANIFEST')?.toString()).toBe('m');
    expect(fs.existsSync(path.join(dir, 'MANIFEST.tmp'))).toBe(false);
    await again.close();
  });

  it('keeps metadata appends across close and reopen; append failures are typed (ENOSPC: DiskFullError)', async () => {
    const dir = tempDir();
    const d = FileDevice.open(dir);
    d.appendMeta('LOG', Buffer.from('a'));
    d.appendMeta('LOG', Buffer.from('b'));
    await d.syncMeta('LOG');
    await d.close();
    const again = FileDevice.open(dir);
    again.appendMeta('LOG', Buffer.from('c'));
    await again.syncMeta('LOG');
    expect(fs.readFileSync(path.join(dir, 'LOG'), 'utf8')).toBe('abc');
    fs.symlinkSync('/dev/full', path.join(dir, 'FULL'));
    // The append is queued for the thread pool: its failure is the answer of the sync, and of every
    // later metadata operation.
    again.appendMeta('FULL', Buffer.from('x'));
    await expect(again.syncMeta('FULL')).rejects.toThrow(DiskFullError);
    expect(() => again.appendMeta('LOG', Buffer.from('y'))).toThrow(DiskFullError);
    await again.close();
  });

  it('queues writes off the JS thread: reads see them at once, close lets them land, sync reports their failure', async () => {
    const dir = tempDir();
    const d = FileDevice.open(dir);
    const segment = Buffer.alloc(2 * 1024 * 1024, 7);
    d.write(0, segment, 'log');
    segment.fill(9); // the caller may reuse its buffer once write returned: the device copied it
    d.write(100, Buffer.from('over'), 'log'); // a later overlapping write wins, landed or not
    const back = d.read(96, 12, 'log');
    expect([...back.subarray(0, 4)]).toEqual([7, 7, 7, 7]);
    expect(back.subarray(4, 8).toString()).toBe('over');
    await d.close(); // no sync: close still lets the queued writes land (the page cache's view)
    const again = FileDevice.open(dir);
    const landed = again.read(0, segment.length, 'log');
    expect(landed.subarray(100, 104).toString()).toBe('over');
    expect(landed[0]).toBe(7);
    expect(landed[segment.length - 1]).toBe(7);
    await again.close();
    // Every operation after close is refused with a typed error.
    expect(() => again.write(0, Buffer.from('x'), 'log')).toThrow(DeviceIoError);
    await expect(again.sync()).rejects.toThrow(DeviceIoError);
  });

  it('opens a store written with the legacy whole-file MANIFEST and migrates it', async () => {
    const dir = tempDir();
    const options = { dir, segmentBytes: 64 * 1024, l0Bytes: 16 * 1024, syncPolicy: 'always' as const };
    let store = await Store.open(options);
    for (let i = 0; i < 500; i++) await store.put(`key-${i}`, `value-${i}`);
    await store.close();
    // Rewrite it as the code before the manifest log left it: one MANIFEST file, no CURRENT.
    const device = FileDevice.open(dir);
    const data = readManifest(device)!;
    await device.close();
    for (const name of fs.readdirSync(dir))
      if (name.startsWith('MANIFEST') || name === 'CURRENT') fs.rmSync(path.join(dir, name));
    fs.writeFileSync(path.join(dir, 'MANIFEST'), encodeManifest(data));
    store = await Store.open(options);
    expect((await store.get('key-499'))?.toString()).toBe('value-499');
    await store.put('key-new', 'new');
    await store.close();
    expect(fs.existsSync(path.join(dir, 'MANIFEST'))).toBe(false);
    expect(fs.readFileSync(path.join(dir, 'CURRENT'), 'utf8')).toMatch(/^MANIFEST-\d{6}\n$/);
    store = await Store.open(options);
    expect((await store.scan()).length).toBe(501);
    await store.close();
  });

  it('refuses a directory locked by a live process and takes over a stale lock', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'LOCK'), String(process.ppid));
    expect(() => FileDevice.open(dir)).toThrow(DeviceLockedError);
    fs.writeFileSync(path.join(dir, 'LOCK'), '999999999');
    const d = FileDevice.open(dir);
    expect(fs.readFileSync(path.join(dir, 'LOCK'), 'utf8')).toBe(String(process.pid));
    await d.close();
    expect(fs.existsSync(path.join(dir, 'LOCK'))).toBe(false);
  });

  it('serves a Store end to end on real files', async () => {
    const dir = tempDir();
    const options = { dir, segmentBytes: 64 * 1024, l0Bytes: 16 * 1024, syncPolicy: 'always' as const };
    let store = await Store.open(options);
    for (let i = 0; i < 2000; i++) await store.put(`key-${i}`, `value-${i}`);
    await store.delete('key-7');
    await store.close();
    store = await Store.open(options);
    expect((await store.get('key-1999'))?.toString()).toBe('value-1999');
    expect(await store.get('key-7')).toBeUndefined();
    expect((await store.scan()).length).toBe(1999);
    expect(store.stats().levels[0]!.segmentCount + store.stats().levels[1]!.segmentCount).toBeGreaterThan(0);
    await store.close();
  });
});

/**
 * One directory, one open device (issue #17): a second open in this process or by a live other
 * process is refused with DeviceLockedError; close, a failed open and a dead owner release it.
 */
describe('FileDevice lock', () => {
  const small = { segmentBytes: 64 * 1024, l0Bytes: 16 * 1024, syncPolicy: 'always' as const };

  it('refuses a second open in this process, by any path to the directory, and keeps the first handle intact', async () => {
    const dir = tempDir();
    const first = await Store.open({ dir, ...small });
    await first.put('k', 'first');
    const link = `${dir}-link`;
    fs.symlinkSync(dir, link);
    tempDirs.push(link);
    for (const other of [dir, `${dir}/.`, link, path.relative(process.cwd(), dir)]) {
      const refused = await Store.open({ dir: other, ...small }).catch((err: unknown) => err);
      expect(refused).toBeInstanceOf(DeviceLockedError);
      expect((refused as DeviceLockedError).code).toBe('DEVICE_LOCKED');
      expect((refused as DeviceLockedError).ownerPid).toBe(process.pid);
      expect((refused as DeviceLockedError).message).toContain(other);
    }
    // The refusals released nothing of the first handle's: its lock and its writes stand.
    expect(fs.readFileSync(path.join(dir, 'LOCK'), 'utf8')).toBe(String(process.pid));
    await first.put('k2', 'after');
    expect((await first.get('k'))?.toString()).toBe('first');
    await first.close();
    const reopened = await Store.open({ dir, ...small });
    expect((await reopened.get('k'))?.toString()).toBe('first');
    expect((await reopened.get('k2'))?.toString()).toBe('after');
    await reopened.close();
  });

  it('reopens after close, for FileDevice and Store alike', async () => {
    const dir = tempDir();
    for (let round = 0; round < 3; round++) {
      const d = FileDevice.open(dir);
      expect(() => FileDevice.open(dir)).toThrow(DeviceLockedError);
      await d.close();
      await d.close(); // idempotent: the second close releases nothing a later open holds
      expect(fs.existsSync(path.join(dir, 'LOCK'))).toBe(false);
    }
    for (let round = 0; round < 3; round++) {
      const store = await Store.open({ dir, ...small });
      await store.put(`k${round}`, `v${round}`);
      await store.close();
    }
    const store = await Store.open({ dir, ...small });
    expect((await store.scan()).map((kv) => kv.key.toString())).toEqual(['k0', 'k1', 'k2']);
    await store.close();
  });

  it('a failed open leaves no lock behind', async () => {
    // The device fails after taking the lock: its data file cannot be opened.
    const dir = tempDir();
    fs.mkdirSync(path.join(dir, 'data'));
    expect(() => FileDevice.open(dir)).toThrow(expect.objectContaining({ code: 'EISDIR' }));
    expect(fs.existsSync(path.join(dir, 'LOCK'))).toBe(false);
    fs.rmdirSync(path.join(dir, 'data'));
    await FileDevice.open(dir).close();

    // The store fails after its device opened: an unreadable manifest.
    const storeDir = tempDir();
    const store = await Store.open({ dir: storeDir, ...small });
    await store.put('k', 'v');
    await store.close();
    const manifest = fs.readdirSync(storeDir).find((name) => name.startsWith('MANIFEST'));
    expect(manifest).toBeDefined();
    const good = fs.readFileSync(path.join(storeDir, manifest!));
    fs.writeFileSync(path.join(storeDir, manifest!), Buffer.from('not a manifest'));
    await expect(Store.open({ dir: storeDir, ...small })).rejects.toBeInstanceOf(CorruptManifestError);
    expect(fs.existsSync(path.join(storeDir, 'LOCK'))).toBe(false);
    fs.writeFileSync(path.join(storeDir, manifest!), good);
    const again = await Store.open({ dir: storeDir, ...small });
    expect((await again.get('k'))?.toString()).toBe('v');
    await again.close();
  });

  it('takes over a stale LOCK whose pid is dead (or unreadable)', async () => {
    const dir = tempDir();
    const exited = spawnSync(process.execPath, ['-e', '']);
    expect(exited.status).toBe(0);
    for (const stale of [String(exited.pid), '', 'garbage']) {
      fs.writeFileSync(path.join(dir, 'LOCK'), stale);
      const store = await Store.open({ dir, ...small });
      expect(fs.readFileSync(path.join(dir, 'LOCK'), 'utf8')).toBe(String(process.pid));
      await store.close();
      expect(fs.existsSync(path.join(dir, 'LOCK'))).toBe(false);
    }
  });

  it('refuses a directory a live other process holds, and takes it over once that process dies', async () => {
    const dir = tempDir();
    const child = spawnStoreHolder(dir, small);
    try {
      await waitForLine(child, 'ready');
      const refused = await Store.open({ dir, ...small }).catch((err: unknown) => err);
      expect(refused).toBeInstanceOf(DeviceLockedError);
      expect((refused as DeviceLockedError).ownerPid).toBe(child.pid);
      expect((refused as DeviceLockedError).message).toContain(dir);
    } finally {
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
    }
    // SIGKILL ran no close: the LOCK names a dead process now, and its write survives the takeover.
    expect(fs.readFileSync(path.join(dir, 'LOCK'), 'utf8')).toBe(String(child.pid));
    const store = await Store.open({ dir, ...small });
    expect((await store.get('held'))?.toString()).toBe('by-child');
    await store.close();
  });
});

const REPO_ROOT = path.resolve(__dirname, '../..');

/** A `node -e` child (TypeScript sources through test/support/ts-register.mjs) that opens a store on `dir` and waits. */
function spawnStoreHolder(dir: string, options: object): ChildProcess {
  const script = `
    const { Store } = await import(${JSON.stringify(path.join(REPO_ROOT, 'src/engine/store.ts'))});
    const store = await Store.open({ dir: ${JSON.stringify(dir)}, ...${JSON.stringify(options)} });
    await store.put('held', 'by-child');
    process.stdout.write('ready\\n');
    setInterval(() => {}, 1000);
  `;
  return spawn(
    process.execPath,
    ['--import', path.join(REPO_ROOT, 'test/support/ts-register.mjs'), '--input-type=module', '-e', script],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
}

function waitForLine(child: ChildProcess, line: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.split('\n').includes(line)) resolve();
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      err += chunk.toString();
    });
    child.once('exit', (code) => reject(new Error(`child exited (${code}) before "${line}": ${err}`)));
  });
}
