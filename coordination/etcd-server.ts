/**
 * A local etcd server started from the `etcd` binary (Debian: `apt-get install etcd-server`), for
 * tests and development: free loopback ports, its own data directory, readiness through the
 * /health endpoint, and stop / kill / restart for fault tests. Never waits forever: a missing
 * binary is EtcdBinaryMissingError at once, a server that does not become healthy is
 * EtcdStartError after `startTimeoutMs`, with the tail of what it printed.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { TalosError } from '../src/errors.js';

export class EtcdBinaryMissingError extends TalosError {
  constructor(binary: string) {
    super(
      'ETCD_MISSING',
      `the etcd binary (${binary}) was not found: install it with "apt-get install etcd-server" (Debian/Ubuntu) or set TALOS_ETCD_BIN to its path`,
    );
  }
}

export class EtcdStartError extends TalosError {
  constructor(detail: string) {
    super('ETCD_START_FAILED', `etcd did not start: ${detail}`);
  }
}

export interface LocalEtcdOptions {
  /** Path or name of the binary (default: TALOS_ETCD_BIN or `etcd` on PATH). */
  binary?: string;
  /** Data directory (default: a new temporary one, removed by `stop({ removeData: true })`). */
  dataDir?: string;
  name?: string;
  startTimeoutMs?: number;
}

export interface LocalEtcd {
  readonly endpoints: string[];
  readonly dataDir: string;
  /** Whether the process is running. */
  readonly running: boolean;
  /** SIGTERM and wait; `removeData` deletes a data directory this helper created. */
  stop(options?: { removeData?: boolean }): Promise<void>;
  /** SIGKILL (a crash) and wait. */
  kill(): Promise<void>;
  /** Starts it again on the same ports and data (after stop or kill). */
  restart(): Promise<void>;
  /** SIGSTOP / SIGCONT: a frozen server (its clients' calls hang until their deadline). */
  pause(): void;
  resume(): void;
}

/** Resolves `binary` on PATH, or undefined. */
export function findBinary(binary: string): string | undefined {
  if (binary.includes('/')) return existsSync(binary) ? binary : undefined;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, binary);
    if (dir !== '' && existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** A free TCP port on loopback (closed again before it is returned: a small race, fine for tests). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export async function startLocalEtcd(options: LocalEtcdOptions = {}): Promise<LocalEtcd> {
  const requested = options.binary ?? process.env.TALOS_ETCD_BIN ?? 'etcd';
  const binary = findBinary(requested);
  if (binary === undefined) throw new EtcdBinaryMissingError(requested);
  const ownsData = options.dataDir === undefined;
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'talos-etcd-'));
  const name = options.name ?? 'talos-test';
  const clientPort = await freePort();
  const peerPort = await freePort();
  const clientUrl = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const startTimeoutMs = options.startTimeoutMs ?? 20_000;
  let child: ChildProcess | undefined;
  let output = '';

  const launch = async (): Promise<void> => {
    output = '';
    const proc = spawn(
      binary,
      [
        '--name',
        name,
        '--data-dir',
        dataDir,
        '--listen-client-urls',
        clientUrl,
        '--advertise-client-urls',
        clientUrl,
        '--listen-peer-urls',
        peerUrl,
        '--initial-advertise-peer-urls',
        peerUrl,
        '--initial-cluster',
        `${name}=${peerUrl}`,
        '--initial-cluster-state',
        'new',
        '--log-level',
        'warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = proc;
    const keep = (chunk: Buffer): void => {
      output = (output + chunk.toString()).slice(-4000);
    };
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    const exited = new Promise<string>((resolve) => {
      proc.once('exit', (code, signal) => resolve(`exited (${signal ?? code})`));
      proc.once('error', (err) => resolve(`failed to spawn: ${err.message}`));
    });
    const deadline = Date.now() + startTimeoutMs;
    for (;;) {
      const early = await Promise.race([
        exited,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 50)),
      ]);
      if (early !== undefined) throw new EtcdStartError(`${early}: ${output.trim().slice(-1000)}`);
      if (await healthy(clientUrl)) return;
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new EtcdStartError(`not healthy after ${startTimeoutMs} ms: ${output.trim().slice(-1000)}`);
      }
    }
  };

  const waitExit = (signal: NodeJS.Signals): Promise<void> => {
    const proc = child;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill(signal);
    });
  };

  await launch();
  return {
    endpoints: [clientUrl],
    dataDir,
    get running() {
      return child !== undefined && child.exitCode === null && child.signalCode === null;
    },
    async stop(stopOptions = {}) {
      child?.kill('SIGCONT');
      await waitExit('SIGTERM');
      if (stopOptions.removeData && ownsData) rmSync(dataDir, { recursive: true, force: true });
    },
    async kill() {
      await waitExit('SIGKILL');
    },
    async restart() {
      child?.kill('SIGCONT');
      await waitExit('SIGTERM');
      await launch();
    },
    pause() {
      child?.kill('SIGSTOP');
    },
    resume() {
      child?.kill('SIGCONT');
    },
  };
}

async function healthy(clientUrl: string): Promise<boolean> {
  try {
    const response = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(500) });
    const body = (await response.json()) as { health?: string };
    return body.health === 'true';
  } catch {
    return false;
  }
}
