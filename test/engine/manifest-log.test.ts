/**
 * The manifest log (manifest-log.ts): snapshot + version edits, rotation, CURRENT, the legacy
 * whole-file manifest, torn tails; and crashes at every metadata operation of a commit sequence
 * (each append, each sync, each step of a rotation): recovery returns exactly the last durable
 * manifest, or the one being committed when the crash hit its sync (the append may have landed).
 */
import * as fc from 'fast-check';
import { crc32c } from '../../src/engine/crc.js';
import { encodeManifest, type ManifestData } from '../../src/engine/manifest.js';
import {
  applyEdit,
  CURRENT_NAME,
  diffManifest,
  encodeEditRecord,
  encodeSnapshotRecord,
  LEGACY_MANIFEST_NAME,
  ManifestLog,
  manifestFileName,
  readManifest,
  replayManifestLog,
} from '../../src/engine/manifest-log.js';
import { DeviceCrashedError, SimDevice } from '../../src/engine/sim-device.js';
import { CorruptManifestError } from '../../src/errors.js';
import { canon, emptyManifest, evolve, lcg, MetaCrashView } from '../support/manifest.js';
import { propertyParams } from '../support/property.js';

function sequence(seed: number, length: number, start = emptyManifest()): ManifestData[] {
  const rand = lcg(seed);
  const out = [start];
  for (let i = 0; i < length; i++) out.push(evolve(out.at(-1)!, rand));
  return out;
}

const liveFile = (device: SimDevice): string => device.readMeta(CURRENT_NAME)!.toString('latin1').trim();

describe('version edits', () => {
  it('snapshot + applied edits equal the last manifest, in memory and through a device (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer(),
        fc.integer({ min: 1, max: 80 }),
        fc.constantFrom(256, 2048, 1 << 20),
        async (seed, length, rotateBytes) => {
          const states = sequence(seed, length);
          let replayed = states[0]!;
          for (let i = 1; i < states.length; i++)
            replayed = applyEdit(replayed, diffManifest(states[i - 1]!, states[i]!));
          expect(canon(replayed)).toBe(canon(states.at(-1)));
          // Through the log, with reopens in between.
          const device = new SimDevice({ seed });
          let log = ManifestLog.open(device, { rotateBytes });
          for (const [i, s] of states.entries()) {
            await log.commit(s);
            if (i % 17 === 16) log = ManifestLog.open(device, { rotateBytes });
          }
          expect(canon(readManifest(device))).toBe(canon(states.at(-1)));
          const bytes = device.readMeta(liveFile(device))!;
          expect(canon(replayManifestLog(bytes, 'test').data)).toBe(canon(states.at(-1)));
        },
      ),
      propertyParams('manifest edits replay', 200),
    );
  });

  it('an edit adding one segment-map entry is small, whatever the manifest size', async () => {
    let data = emptyManifest('backup');
    const rand = lcg(7);
    for (let i = 0; i < 400; i++) data = evolve(data, rand);
    const next = { ...data, segmentMap: [...data.segmentMap, [123 * 4096, 456 * 4096] as [number, number]] };
    const edit = encodeEditRecord(diffManifest(data, next));
    const whole = encodeSnapshotRecord(next);
    expect(edit.length).toBeLessThan(100);
    expect(whole.length).toBeGreaterThan(20 * edit.length);
    // A sealed segment on a backup (log entry + map entry + high-water mark): still small.
    const sealed = {
      ...next,
      allocatedSegmentCount: next.allocatedSegmentCount + 1,
      log: [...next.log, { seq: 99_999, offset: next.allocatedSegmentCount * 4096, usedBytes: 4000 }],
      segmentMap: [...next.segmentMap, [777 * 4096, next.allocatedSegmentCount * 4096] as [number, number]],
    };
    expect(encodeEditRecord(diffManifest(next, sealed)).length).toBeLessThan(160);
  });

  it('one commit is one append and one sync; an unchanged manifest writes nothing', async () => {
    const device = new SimDevice();
    const log = ManifestLog.open(device);
    const [a, b] = sequence(3, 1);
    await log.commit(a!);
    const before = device.io();
    await log.commit(b!);
    const after = device.io();
    expect(after.syncCount - before.syncCount).toBe(1);
    expect(after.writeCount - before.writeCount).toBe(1);
    await log.commit(b!);
    expect(device.io().writeCount).toBe(after.writeCount);
    expect(log.stats.unchanged).toBe(1);
  });

  it('rotates: a new file starting with a snapshot, CURRENT moved, the old file removed', async () => {
    const device = new SimDevice();
    const log = ManifestLog.open(device, { rotateBytes: 512 });
    const states = sequence(11, 60);
    for (const s of states) await log.commit(s);
    expect(log.stats.snapshots).toBeGreaterThan(2);
    const live = liveFile(device);
    expect(live).toBe(manifestFileName(log.stats.snapshots));
    expect(device.readMeta(manifestFileName(log.stats.snapshots - 1))).toBeUndefined();
    expect(canon(readManifest(device))).toBe(canon(states.at(-1)));
  });

  it('ignores a torn or crc-bad last record, then rotates before appending again', async () => {
    const states = sequence(5, 6);
    for (const damage of ['truncate', 'flip', 'zeros'] as const) {
      const device = new SimDevice();
      const log = ManifestLog.open(device);
      for (const s of states) await log.commit(s);
      const name = liveFile(device);
      const bytes = device.readMeta(name)!;
      const lastEdit = encodeEditRecord(diffManifest(states.at(-2)!, states.at(-1)!)).length;
      let damaged: Buffer;
      if (damage === 'truncate') damaged = bytes.subarray(0, bytes.length - 3);
      else if (damage === 'flip') {
        damaged = Buffer.from(bytes);
        damaged[bytes.length - 2]! ^= 0x40;
      } else damaged = Buffer.concat([bytes.subarray(0, bytes.length - lastEdit), Buffer.alloc(lastEdit)]);
      device.corruptMeta(name, damaged);
      const reopened = ManifestLog.open(device);
      expect(canon(reopened.data)).toBe(canon(states.at(-2)));
      const next = evolve(states.at(-1)!, lcg(1));
      await reopened.commit(next);
      expect(liveFile(device)).not.toBe(name); // never appended after the torn record
      expect(canon(readManifest(device))).toBe(canon(next));
    }
  });

  it('a bad record followed by good ones, a bad snapshot or a missing file is CorruptManifestError', async () => {
    const states = sequence(9, 5);
    const build = async () => {
      const device = new SimDevice();
      const log = ManifestLog.open(device);
      for (const s of states) await log.commit(s);
      return { device, name: liveFile(device), bytes: Buffer.from(device.readMeta(liveFile(device))!) };
    };
    {
      // Flip a byte of the first edit (right after the snapshot).
      const { device, name, bytes } = await build();
      const snapshot = encodeSnapshotRecord(states[0]!).length;
      bytes[snapshot + 10]! ^= 1;
      device.corruptMeta(name, bytes);
      expect(() => ManifestLog.open(device)).toThrow(CorruptManifestError);
    }
    {
      const { device, name, bytes } = await build();
      bytes[12]! ^= 1;
      device.corruptMeta(name, bytes);
      expect(() => ManifestLog.open(device)).toThrow(CorruptManifestError);
    }
    {
      const { device, name } = await build();
      device.removeMeta(name);
      expect(() => ManifestLog.open(device)).toThrow(CorruptManifestError);
    }
    {
      const { device } = await build();
      device.corruptMeta(CURRENT_NAME, Buffer.from('garbage'));
      expect(() => ManifestLog.open(device)).toThrow(CorruptManifestError);
    }
    {
      // A valid frame whose body is not an edit.
      const { device, name, bytes } = await build();
      const body = Buffer.from([2, ...Buffer.from('[not json')]);
      const header = Buffer.alloc(8);
      header.writeUInt32LE(body.length, 0);
      header.writeUInt32LE(crc32c(body), 4);
      device.corruptMeta(
        name,
        Buffer.concat([bytes, header, body, encodeEditRecord({ nextCompactionId: 9 })]),
      );
      expect(() => ManifestLog.open(device)).toThrow(CorruptManifestError);
    }
  });

  it('migrates a legacy whole-file MANIFEST at its first commit', async () => {
    const device = new SimDevice();
    const [a, b] = sequence(13, 1);
    await device.writeMetaAtomic(LEGACY_MANIFEST_NAME, encodeManifest(a!));
    const log = ManifestLog.open(device);
    expect(canon(log.data)).toBe(canon(a));
    await log.commit(b!);
    expect(device.readMeta(LEGACY_MANIFEST_NAME)).toBeUndefined();
    expect(liveFile(device)).toBe(manifestFileName(1));
    expect(canon(readManifest(device))).toBe(canon(b));
  });
});

describe('crash at every metadata operation of a commit sequence', () => {
  const crashCases = [
    { keepProbability: 0, tearProbability: 0 },
    { keepProbability: 1, tearProbability: 0 },
    { keepProbability: 1, tearProbability: 1 },
    { keepProbability: 0.5, tearProbability: 0.5 },
  ];

  it('recovers exactly the last durable manifest (or the in-flight one at a sync), and keeps working', async () => {
    const states = sequence(21, 40);
    // Count the metadata operations of the whole sequence (a small bound: rotations happen).
    const probe = new MetaCrashView(new SimDevice(), undefined);
    const probeLog = ManifestLog.open(probe, { rotateBytes: 600 });
    for (const s of states) await probeLog.commit(s);
    expect(probeLog.stats.snapshots).toBeGreaterThan(2);
    const total = probe.metaOps;
    const actionsHit = new Set<string>();
    for (const [c, crash] of crashCases.entries()) {
      for (let at = 1; at <= total; at++) {
        const sim = new SimDevice({ seed: at * 31 + c });
        const view = new MetaCrashView(sim, at, crash);
        const log = ManifestLog.open(view, { rotateBytes: 600 });
        let done = 0;
        try {
          for (const s of states) {
            await log.commit(s);
            done++;
          }
        } catch (err) {
          expect(err).toBeInstanceOf(DeviceCrashedError);
        }
        expect(view.crashed).toBeDefined();
        actionsHit.add(
          `${view.crashed!.action}:${view.crashed!.name.startsWith('MANIFEST-') ? 'file' : view.crashed!.name}`,
        );
        const recovered = ManifestLog.open(sim, { rotateBytes: 600 });
        const got = canon(recovered.data);
        const allowed = view.allowed.map(canon);
        if (!allowed.includes(got)) {
          throw new Error(
            `crash at op ${at} (${view.crashed!.action} ${view.crashed!.name}, ${JSON.stringify(crash)}): recovered a manifest that was not durable`,
          );
        }
        // The last acknowledged commit is never lost: the recovered state is at or after it.
        const acked = done === 0 ? 'none' : canon(states[done - 1]);
        expect([acked, canon(states[done])]).toContain(got);
        // Works after recovery: the rest of the sequence commits and reopens.
        for (const s of states.slice(done)) await recovered.commit(s);
        expect(canon(readManifest(sim))).toBe(canon(states.at(-1)));
      }
    }
    expect([...actionsHit].sort()).toEqual([
      'append:file',
      'remove:file',
      'replace:CURRENT',
      'replace:file',
      'sync:file',
    ]);
  });
});
