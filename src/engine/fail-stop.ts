/**
 * Fail-stop (LevelDB's background error, PostgreSQL's fsync rule). The first error of a mutation —
 * a device failure (DiskFullError, DeviceIoError from the device: ENOSPC, EIO... on a write, a sync
 * or a manifest replace), a corrupt segment, a broken invariant — is kept as the store's `error`
 * and the `failed` hook fires once. From then on nothing is acknowledged: writes not yet appended
 * are refused (the device error itself while the store made room for the record, STORE_FAILED
 * afterwards), and writes already appended — pending, at the commit gate, or gated and released
 * later — are rejected as OutcomeUnknownError (`rejectAppended`): their record may be on the
 * device or on every backup. After a failed sync the page cache cannot be trusted, so the store
 * never retries: its owner reopens it, and recovery keeps what was synced.
 */
import { OutcomeUnknownError, StoreClosedError, TalosError } from '../errors.js';
import type { StoreHooks } from './hooks.js';
import type { StoreRole } from './manifest.js';

/** The store stopped after a device or invariant failure; `cause` is the first error. Reopen to recover. */
export class StoreFailedError extends TalosError {
  constructor(cause: unknown) {
    super(
      'STORE_FAILED',
      `the store stopped after an earlier failure: ${cause instanceof Error ? cause.message : String(cause)}`,
      {
        cause,
      },
    );
  }
}

/** A write refused because the store is a backup (it only takes shipped segments). */
export class NotWritableError extends TalosError {
  constructor(role: StoreRole) {
    super('NOT_WRITABLE', `a ${role} store does not accept writes`);
  }
}

/** The store's lifecycle and first failure: closed or failed stores refuse every operation. */
export class FailStop {
  /** The first device or invariant failure: the store is fail-stop after it. */
  error: unknown;
  closed = false;

  constructor(private readonly hooks: StoreHooks) {}

  /** Runs a mutation; any error it throws makes the store fail-stop, then propagates. */
  run<T>(mutation: () => T): T {
    try {
      return mutation();
    } catch (err) {
      this.note(err);
      throw err;
    }
  }

  /** `run` for an asynchronous mutation: a rejection fail-stops the store as a throw does. */
  async runAsync<T>(mutation: () => Promise<T>): Promise<T> {
    try {
      return await mutation();
    } catch (err) {
      this.note(err);
      throw err;
    }
  }

  /** Keeps the first failure (the store is fail-stop from now on) and announces it once. */
  note(err: unknown): void {
    if (this.error !== undefined) return;
    this.error = err;
    try {
      this.hooks.emit('failed', { error: err });
    } catch {
      // A listener's failure must not hide the store's own error.
    }
  }

  /** Throws unless the store is open and has not failed. */
  check(): void {
    if (this.closed) throw new StoreClosedError();
    if (this.error !== undefined) throw new StoreFailedError(this.error);
  }
}

/** An appended write waiting for acknowledgement; see rejectAppended. */
export interface AppendedWrite {
  key: string;
  reject: (err: unknown) => void;
}

/**
 * Fails a group whose records are already in the log: they may survive (the log bytes are on this
 * device or on every backup) and reappear at recovery or promotion, so the outcome is unknown —
 * never a definite failure (the error contract, src/errors.ts).
 */
export function rejectAppended(batch: readonly AppendedWrite[], err: unknown): void {
  for (const p of batch) {
    p.reject(
      err instanceof OutcomeUnknownError
        ? err
        : new OutcomeUnknownError(
            `write of ${JSON.stringify(p.key)} was appended to the log but not applied`,
            {
              cause: err,
            },
          ),
    );
  }
}
