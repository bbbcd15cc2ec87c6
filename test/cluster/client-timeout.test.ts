/**
 * The routed client's budget (`operationTimeoutMs`): when every attempt is refused or never
 * leaves, the operation ends with OperationTimeoutError (definite failure, the last attempt's
 * error as its cause) — never with that last WrongPrimaryError; errors that are not worth a retry
 * pass through at once; each attempt is told the operation's deadline. First on hand-made ports
 * (every path, exact counts), then on a real LocalCluster whose primary was killed.
 */
import type { RegionConfig } from '../../coordination/types.js';
import { SystemClock } from '../../src/clock/index.js';
import { LocalClient, type RegionSession } from '../../src/cluster/client.js';
import { createLocalCluster } from '../../src/cluster/local-cluster.js';
import {
  OperationTimeoutError,
  OutcomeUnknownError,
  StaleEpochError,
  TalosError,
  UnreachableError,
  WrongPrimaryError,
} from '../../src/errors.js';

const REGIONS: RegionConfig[] = [
  { regionId: 'r0', minKey: '', epoch: 1, primary: 'n1', backups: [], state: 'active' },
];

/** A client whose only session fails with `fail(attempt)` (or succeeds when it returns undefined). */
function clientWith(
  fail: (attempt: number) => Error | undefined,
  options: { operationTimeoutMs: number; serving?: boolean } = { operationTimeoutMs: 100 },
) {
  const deadlines: (number | undefined)[] = [];
  let attempts = 0;
  const run = async (deadlineMs?: number): Promise<void> => {
    deadlines.push(deadlineMs);
    const err = fail(++attempts);
    if (err !== undefined) throw err;
  };
  const session: RegionSession = {
    isServing: options.serving ?? true,
    put: (_k, _v, deadlineMs) => run(deadlineMs),
    delete: (_k, deadlineMs) => run(deadlineMs),
    get: async (_k, deadlineMs) => {
      await run(deadlineMs);
      return Buffer.from('v');
    },
    scan: async (_o, deadlineMs) => {
      await run(deadlineMs);
      return [];
    },
  };
  const clock = new SystemClock();
  const client = new LocalClient(
    { regions: () => REGIONS, session: () => session, clock },
    { operationTimeoutMs: options.operationTimeoutMs, initialBackoffMs: 1, maxBackoffMs: 10 },
  );
  return { client, clock, deadlines, attempts: () => attempts };
}

describe('LocalClient: the retry budget ends in a timeout error', () => {
  test.each([
    ['WRONG_PRIMARY', () => new WrongPrimaryError('r0', 'n1')],
    ['STALE_EPOCH', () => new StaleEpochError('r0', 1, 2)],
    ['UNREACHABLE', () => new UnreachableError('tcp://n1')],
  ])(
    'every attempt refused with %s: OperationTimeoutError, its cause the last refusal',
    async (code, make) => {
      const { client, attempts } = clientWith(() => make(), { operationTimeoutMs: 150 });
      const started = Date.now();
      const err = await client.put('k', 'v').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(OperationTimeoutError);
      const timeout = err as OperationTimeoutError;
      expect(timeout.code).toBe('OPERATION_TIMEOUT');
      expect(timeout).toBeInstanceOf(TalosError);
      expect(timeout).not.toBeInstanceOf(WrongPrimaryError);
      expect((timeout.cause as TalosError).code).toBe(code);
      expect(timeout.operationTimeoutMs).toBe(150);
      expect(timeout.attemptCount).toBe(attempts());
      expect(attempts()).toBeGreaterThan(3);
      expect(timeout.message).toContain('put of "k"');
      // It used its budget (within the backoff's granularity), not less and not much more.
      expect(Date.now() - started).toBeGreaterThanOrEqual(150 - 10 - 5); // minus the last backoff
      expect(Date.now() - started).toBeLessThan(1000);
    },
  );

  test('a region whose primary serves nowhere (no session): get, delete and scan time out the same way', async () => {
    const { client } = clientWith(() => undefined, { operationTimeoutMs: 50, serving: false });
    for (const op of [() => client.get('k'), () => client.delete('k'), () => client.scan()]) {
      const err = await op().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(OperationTimeoutError);
      expect((err as OperationTimeoutError).cause).toBeInstanceOf(WrongPrimaryError);
    }
  });

  test('an unknown outcome is not retried and not turned into a timeout', async () => {
    const unknown = new OutcomeUnknownError('write of k');
    const { client, attempts } = clientWith(() => unknown, { operationTimeoutMs: 1000 });
    await expect(client.put('k', 'v')).rejects.toBe(unknown);
    expect(attempts()).toBe(1);
  });

  test('refusals within the budget are retried until an attempt succeeds; every attempt carries the same deadline', async () => {
    const { client, clock, deadlines, attempts } = clientWith(
      (n) => (n < 4 ? new WrongPrimaryError('r0', 'n1') : undefined),
      { operationTimeoutMs: 5000 },
    );
    const before = clock.now();
    await client.put('k', 'v');
    expect(attempts()).toBe(4);
    expect(new Set(deadlines).size).toBe(1);
    expect(deadlines[0]).toBeGreaterThanOrEqual(before + 5000);
    expect(deadlines[0]).toBeLessThanOrEqual(clock.now() + 5000);
  });
});

test('LocalCluster: a killed primary whose lease still holds its region: the write times out with OperationTimeoutError, then succeeds after failover', async () => {
  const c = await createLocalCluster({ nodes: 3, regions: 1, replicas: 3, leaseTtlMs: 2000 });
  try {
    const client = c.client({ operationTimeoutMs: 300 });
    await client.put('a', '1');
    const primary = c.regions()[0]!.primary;
    await c.killNode(primary);
    const err = await client.put('b', '2').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(OperationTimeoutError);
    expect((err as OperationTimeoutError).cause).toBeInstanceOf(WrongPrimaryError);
    // A definite failure: once the region moved on, 'b' is absent and 'a' is there.
    await c.waitForRegions((map) => map[0]!.primary !== primary, 20_000);
    const patient = c.client({ operationTimeoutMs: 10_000 });
    expect(await patient.get('b')).toBeUndefined();
    expect((await patient.get('a'))?.toString()).toBe('1');
  } finally {
    await c.close();
  }
});
