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

/**
 * Where a process's JS thread spent its non-idle samples, by code path (`bench:paper --breakdown
 * --profile`). Exclusive, unlike the actors' CPU accounting (which charges a job everything that
 * ran during its awaits): each sample goes to one path, by the talos source files on its stack
 * (`PATH_FILES`), the highest-priority path present winning — a put that ships log bytes is the put
 * path, a compaction that ships an index segment is flush + compaction, a backup handler that
 * appends through the engine's write path is the backup's (backup index: the handlers that keep the
 * backup's index — IndexSegment, CompactionCommit, InstallLevels, translation; backup handlers: the
 * rest, persisting the log); shipping is the primary's replication
 * work after the put returned (link chains, completions); storage I/O is engine I/O completions
 * and syncs reached from none of those. A stack with only fabric frames (a socket read or write
 * callback, the receive of a one-sided write) is the fabric's; grpc / etcd3 / coordination/ is the
 * etcd client (leases, watches). V8's garbage-collector samples are GC; module loading is startup;
 * the rest (metrics scrapes, xstate, logging, timers, `(program)` native code) is other. Only the
 * JS thread: libuv's pool threads are not sampled.
 */
export const CODE_PATHS = [
  'backup index',
  'backup handlers',
  'flush + compaction',
  'put path',
  'shipping',
  'storage I/O',
  'fabric',
  'etcd client',
  'gc',
  'startup',
  'other',
] as const;
export type CodePath = (typeof CODE_PATHS)[number];

/** Backup handlers that keep the backup's index (backup-region.ts): backup index, not backup handlers. */
const BACKUP_INDEX_HANDLERS = new Set(['indexSegment', 'commit', 'installLevels']);

/** Source files (under src/) that mark a path, highest priority first. */
export const PATH_FILES: readonly [CodePath, readonly string[]][] = [
  ['backup index', ['engine/index-translate']],
  [
    'backup handlers',
    [
      'replication/backup-region',
      'replication/backup-store',
      'engine/index-translate',
      'actors/region-backup',
    ],
  ],
  ['flush + compaction', ['engine/compaction', 'engine/merge', 'actors/compaction', 'actors/flush']],
  [
    'put path',
    [
      'server/client-server',
      'server/client-protocol',
      'replication/primary-session',
      'engine/write-path',
      'engine/group-commit',
      'engine/value-log',
      'engine/memtable',
    ],
  ],
  // The primary's side of replication once a put returned: link chains, write completions, seals.
  ['shipping', ['replication/backup-link', 'replication/region-replicator']],
  // Engine I/O completions and syncs reached from no path above (libuv callbacks, the manifest).
  [
    'storage I/O',
    [
      'engine/io-lane',
      'engine/file-device',
      'engine/manifest',
      'engine/group-sync',
      'engine/segment-allocator',
    ],
  ],
  ['fabric', ['fabric/']],
  ['etcd client', ['coordination/']],
];

function pathOfFrame(frame: { functionName: string; url: string }): CodePath | undefined {
  const path = pathOfUrl(frame.url);
  return path === 'backup handlers' &&
    frame.url.endsWith('replication/backup-region.js') &&
    BACKUP_INDEX_HANDLERS.has(frame.functionName)
    ? 'backup index'
    : path;
}

function pathOfUrl(url: string): CodePath | undefined {
  if (url.startsWith('node:internal/modules')) return 'startup';
  if (url.includes('/node_modules/@grpc/') || url.includes('/node_modules/etcd3/')) return 'etcd client';
  if (url.includes('/node_modules/')) return undefined;
  const at = url.lastIndexOf('/src/');
  const file = at >= 0 ? url.slice(at + 5) : url.includes('/coordination/') ? 'coordination/' : undefined;
  if (file === undefined) return undefined;
  for (const [path, files] of PATH_FILES) if (files.some((f) => file.startsWith(f))) return path;
  return undefined;
}

/** Milliseconds of non-idle JS-thread samples by code path, summed over `profiles`. */
export function codePathMs(profiles: Profile[]): Record<CodePath, number> {
  const us = Object.fromEntries(CODE_PATHS.map((p) => [p, 0])) as Record<CodePath, number>;
  const rank = (p: CodePath): number => CODE_PATHS.indexOf(p);
  for (const profile of profiles) {
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const memo = new Map<number, CodePath | undefined>();
    profile.samples.forEach((leaf, i) => {
      const node = byId.get(leaf);
      if (node === undefined) return;
      const name = node.callFrame.functionName;
      if (name === '(idle)' || name === '(root)') return; // (program): native code, counted as other
      let path: CodePath | undefined;
      if (name === '(garbage collector)') path = 'gc';
      else {
        if (!memo.has(leaf)) {
          let best: CodePath | undefined;
          for (let id: number | undefined = leaf; id !== undefined; id = parent.get(id)) {
            const p = pathOfFrame(byId.get(id)!.callFrame);
            if (p !== undefined && (best === undefined || rank(p) < rank(best))) best = p;
          }
          memo.set(leaf, best);
        }
        path = memo.get(leaf);
      }
      us[path ?? 'other'] += profile.timeDeltas[i] ?? 0;
    });
  }
  return Object.fromEntries(CODE_PATHS.map((p) => [p, Math.round(us[p] / 1000)])) as Record<CodePath, number>;
}
