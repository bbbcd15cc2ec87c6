/**
 * The conformance env for EmbeddedCoordinator: a ManualClock, time passing only through `advance`,
 * notifications landing when the microtask queue is flushed.
 */
import { EmbeddedCoordinator, type EmbeddedCoordinatorClient } from '../../coordination/embedded.js';
import { ManualClock } from '../../src/clock/index.js';
import type { CoordinatorTestEnv } from './conformance.js';

/** Runs every queued microtask (deliveries, promise continuations) before resolving. */
export const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export interface EmbeddedTestEnv extends CoordinatorTestEnv {
  readonly clock: ManualClock;
  readonly coordinator: EmbeddedCoordinator;
  newClient(): EmbeddedCoordinatorClient;
}

export function makeEmbeddedEnv(leaseTtlMs = 1000): EmbeddedTestEnv {
  const clock = new ManualClock(1_000_000);
  const coordinator = new EmbeddedCoordinator({ clock, cluster: 'conformance' });
  const clients: EmbeddedCoordinatorClient[] = [];
  return {
    clock,
    coordinator,
    leaseTtlMs,
    expirySlackMs: 0,
    stepMs: Math.max(1, Math.floor(leaseTtlMs / 20)),
    now: () => clock.now(),
    newClient: () => {
      const client = coordinator.client();
      clients.push(client);
      return client;
    },
    advance: async (ms) => {
      clock.advance(ms);
      await flush();
    },
    settle: flush,
    revokeLease: async (membership) => {
      coordinator.expireLease(membership);
    },
    teardown: async () => {
      for (const client of clients) await client.close();
      await flush();
    },
  };
}
