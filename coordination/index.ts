/**
 * Coordination (DESIGN §5, PROTOCOL §1, §6): the `Coordinator` port — lease-backed membership, the
 * region map with compare-and-set on a revision (epochs advance by exactly one per change),
 * controller election, suspect reports — and its implementations. `EmbeddedCoordinator` runs in
 * process on the injected clock (tests, simulator, single-process demos); `EtcdCoordinator` gives
 * the same semantics on an etcd cluster (etcd3 client). Both pass test/coordination/conformance.ts.
 * `startLocalEtcd` starts an etcd from its binary for tests; scripts/ start one or three members
 * for development.
 */
export * from './embedded.js';
export * from './etcd.js';
export * from './etcd-server.js';
export type * from './types.js';
