/**
 * Summarises V8 CPU profiles (`.cpuprofile`, from `bench:paper --profile DIR`): self time per
 * function, top N, so the doc can say where a node spends its CPU; and where the JS thread waited
 * in the kernel on files (`ioShares`, issue 15's "synchronous fs calls ≤ 2 % of non-idle samples").
 * `node dist/bench/paper/profile-summary.js FILE... [--top N]`.
 *
 * Classifying a sample (ioShares): V8 names a native binding by its function (writeBuffer,
 * fdatasync, read, open, ...) whatever called it — `writeBuffer` is a socket write as well as a
 * file write. So a sample is attributed by its callers: the nearest `node:fs` frame decides it is
 * a file call, and that frame's name decides whether it is synchronous (`writeSync`, `readSync`,
 * `openSync`, `readFileSync`, `rmSync`, ... — the thread waited for the disk) or the dispatch of an
 * asynchronous one (`write`, `fdatasync`, `open` with a callback: the thread only queued it for
 * libuv's pool). A `node:net` frame first makes it a socket write. Module loading (`node:internal/
 * modules`) is startup, counted apart.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
export interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Shares of a profile's non-idle samples (0..1) by what the JS thread was doing in the kernel. */
export interface IoShares {
  nonIdleMs: number;
  /** Synchronous file calls: the thread waited for the file system. */
  syncFs: number;
  /** Starting asynchronous file calls (the work itself runs in libuv's pool). */
  asyncFsDispatch: number;
  /** Socket writes (net streams write synchronously when the kernel takes the bytes at once). */
  socketWrite: number;
  /** File reads while loading modules (startup). */
  moduleLoad: number;
}

type IoClass = 'syncFs' | 'asyncFsDispatch' | 'socketWrite' | 'moduleLoad';

/** What a sample whose leaf is `leaf` was doing, from its callers (see the header). */
function classify(
  leaf: number,
  byId: Map<number, ProfileNode>,
  parent: Map<number, number>,
): IoClass | undefined {
  for (let id: number | undefined = parent.get(leaf), depth = 0; id !== undefined && depth < 12; depth++) {
    const frame = byId.get(id)!.callFrame;
    if (frame.url.startsWith('node:internal/modules')) return 'moduleLoad';
    if (frame.url === 'node:net' || frame.url === 'node:internal/stream_base_commons') return 'socketWrite';
    if (frame.url === 'node:fs' || frame.url === 'node:internal/fs/promises') {
      return /Sync$/.test(frame.functionName) ? 'syncFs' : 'asyncFsDispatch';
    }
    id = parent.get(id);
  }
  return undefined;
}

export function ioShares(profiles: Profile[]): IoShares {
  const ms = { total: 0, idle: 0, syncFs: 0, asyncFsDispatch: 0, socketWrite: 0, moduleLoad: 0 };
  for (const profile of profiles) {
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const cls = new Map<number, IoClass | undefined>();
    profile.samples.forEach((id, i) => {
      const us = profile.timeDeltas[i] ?? 0;
      ms.total += us;
      const node = byId.get(id);
      if (node === undefined) return;
      if (node.callFrame.functionName === '(idle)') {
        ms.idle += us;
        return;
      }
      if (node.callFrame.url !== '') return; // JS code: not a native binding
      if (!cls.has(id)) cls.set(id, classify(id, byId, parent));
      const c = cls.get(id);
      if (c !== undefined) ms[c] += us;
    });
  }
  const nonIdle = ms.total - ms.idle;
  const share = (us: number): number => (nonIdle <= 0 ? 0 : Number((us / nonIdle).toFixed(4)));
  return {
    nonIdleMs: Math.round(nonIdle / 1000),
    syncFs: share(ms.syncFs),
    asyncFsDispatch: share(ms.asyncFsDispatch),
    socketWrite: share(ms.socketWrite),
    moduleLoad: share(ms.moduleLoad),
  };
}

/** The `.cpuprofile` files directly under `dir`, parsed. */
export function readProfiles(dir: string): Profile[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as Profile);
}

export function selfTimes(profile: Profile): Map<string, number> {
  const names = new Map<number, string>();
  for (const n of profile.nodes) {
    const f = n.callFrame;
    names.set(n.id, `${f.functionName || '(anonymous)'} ${f.url === '' ? '' : basename(f.url)}`.trim());
  }
  const out = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const name = names.get(id) ?? '?';
    out.set(name, (out.get(name) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  return out;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) main();

function main(): void {
  const args = process.argv.slice(2);
  const topAt = args.indexOf('--top');
  const top = topAt >= 0 ? Number(args[topAt + 1]) : 25;
  const files = args.filter((a, i) => a !== '--top' && i !== topAt + 1);
  const totals = new Map<string, number>();
  for (const file of files) {
    for (const [name, us] of selfTimes(JSON.parse(readFileSync(file, 'utf8')) as Profile))
      totals.set(name, (totals.get(name) ?? 0) + us);
  }
  const all = [...totals.values()].reduce((a, b) => a + b, 0);
  for (const [name, us] of [...totals].sort((a, b) => b[1] - a[1]).slice(0, top))
    process.stdout.write(
      `${((100 * us) / all).toFixed(1).padStart(5)} %  ${(us / 1000).toFixed(0).padStart(7)} ms  ${name}\n`,
    );
  const shares = ioShares(files.map((file) => JSON.parse(readFileSync(file, 'utf8')) as Profile));
  process.stdout.write(
    `I/O on the JS thread, of ${shares.nonIdleMs} ms non-idle: ${JSON.stringify(shares)}\n`,
  );
}
