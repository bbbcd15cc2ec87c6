/**
 * Coordination (DESIGN §5, PROTOCOL §1, §6): the `Coordinator` port — lease-backed membership, the
 * region map with compare-and-set on a revision (epochs advance by exactly one per change),
 * controller election, suspect reports — and its implementations. `EmbeddedCoordinator` runs in
 * process on the injected clock (tests, simulator, single-process demos); the etcd implementation
 * gives the same semantics on an etcd cluster. Both pass test/coordination/conformance.ts.
 */
export * from './embedded.js';
export type * from './types.js';
