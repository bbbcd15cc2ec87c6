/**
 * IoLane: a device's queue of file operations that run off the JS thread (each one an `fs`
 * callback call, executed by libuv's thread pool), one at a time, in the order they were queued —
 * so two writes to one range land in issue order, and an append is never overtaken by a later
 * append to the same file.
 *
 * The first failure is kept (`failure`): every operation queued after it is refused with it and
 * `drained()` rejects with it, so a device whose write failed never reports a later sync as
 * durable (the store fail-stops on the error).
 */
export class IoLane {
  private tail: Promise<void> = Promise.resolve();
  private queued = 0;
  /** The first operation failure; undefined while every operation succeeded. */
  failure: unknown;

  /** Queues `op` after every operation queued before it; the promise settles with it. */
  push(op: () => Promise<void>): Promise<void> {
    this.queued++;
    const run = this.tail.then(() => {
      if (this.failure !== undefined) throw this.failure;
      return op();
    });
    this.tail = run.then(
      () => {
        this.queued--;
      },
      (err: unknown) => {
        this.queued--;
        this.failure ??= err;
      },
    );
    return run;
  }

  /** Whether an operation is queued or running. */
  get busy(): boolean {
    return this.queued > 0;
  }

  /** Resolves once every operation queued before this call completed; rejects with the lane's failure. */
  async drained(): Promise<void> {
    await this.tail;
    if (this.failure !== undefined) throw this.failure;
  }

  /** Settles (never rejects) once every operation queued before this call completed. */
  async settled(): Promise<void> {
    await this.tail;
  }
}
