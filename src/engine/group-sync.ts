/**
 * Group sync (issue 15 item 2): concurrent durability requests on one file share one fdatasync.
 *
 * A request made while no sync of the file is in flight starts one at once. A request made while
 * one is in flight cannot be served by it (that sync may have started before the request's
 * writes were issued), so it joins the NEXT sync, and every request waiting for the next sync is
 * served by that one call: however many requests arrive during a sync, the file costs one more
 * sync. Rounds run one at a time and settle in order; a failed round rejects exactly its
 * requests (the store fail-stops on the first).
 */
export class GroupSync {
  private running: Promise<void> | undefined;
  private waiting:
    | { promise: Promise<void>; resolve: () => void; reject: (err: unknown) => void }
    | undefined;

  /** `syncOnce` performs one sync of the file (an fdatasync); it covers every write issued before it was called. */
  constructor(private readonly syncOnce: () => Promise<void>) {}

  /** Resolves once a sync that started after this call completed. */
  request(): Promise<void> {
    if (this.running === undefined) return this.start();
    if (this.waiting === undefined) {
      let resolve!: () => void;
      let reject!: (err: unknown) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.waiting = { promise, resolve, reject };
    }
    return this.waiting.promise;
  }

  /** Whether a sync is in flight (an fd must not be closed under it). */
  get busy(): boolean {
    return this.running !== undefined;
  }

  /** Settles (never rejects) once no sync is in flight or waiting. */
  async idle(): Promise<void> {
    while (this.running !== undefined) await this.running.catch(() => {});
  }

  private start(): Promise<void> {
    let round: Promise<void>;
    try {
      round = this.syncOnce();
    } catch (err) {
      round = Promise.reject(err);
    }
    this.running = round;
    const next = (): void => {
      this.running = undefined;
      const waiting = this.waiting;
      if (waiting === undefined) return;
      this.waiting = undefined;
      this.start().then(waiting.resolve, waiting.reject);
    };
    round.then(next, next);
    return round;
  }
}
