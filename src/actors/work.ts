/**
 * Shared pieces of the actors: the CPU accounting port and the events every region actor's
 * children send back to it. CPU is charged per role so the cluster can report what backups spend
 * (the papers' headline metric); `cpuMicros` is process.cpuUsage in production and a fake in tests.
 */
import type { Store } from '../engine/store.js';

export type Role = 'primary' | 'backup';

/** Charges CPU time to a role: `measure` runs `job` and adds the CPU it used, across awaits. */
export interface CpuAccount {
  charge(role: Role, cpuMicros: number): void;
  now(): number;
}

/** Runs `job`, charging the process CPU spent between its start and end to `role`. */
export async function measured<T>(
  account: CpuAccount | undefined,
  role: Role,
  job: () => Promise<T>,
): Promise<T> {
  if (account === undefined) return job();
  const started = account.now();
  try {
    return await job();
  } finally {
    account.charge(role, account.now() - started);
  }
}

/** Input of the Flush and Compaction actors. */
export interface StoreWorkInput {
  store: Store;
  role: Role;
  cpu?: CpuAccount;
}

/** Events the Flush and Compaction actors send to their parent. */
export type StoreWorkEvent =
  | { type: 'FLUSHED' }
  | { type: 'COMPACTED'; level: number }
  | { type: 'WORK_FAILED'; what: 'flush' | 'compaction'; error: unknown };
