import { AssertionFailedError } from './errors.js';

/** Asserts an invariant; a failure is a bug in Talos, reported with the message. */
export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new AssertionFailedError(typeof message === 'string' ? message : message());
}

/** Asserts that a device offset is an exact integer (pointers are numbers below 2^53). */
export function assertOffset(offset: number, what: string): void {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new AssertionFailedError(`${what} must be a non-negative safe integer, got ${offset}`);
  }
}
