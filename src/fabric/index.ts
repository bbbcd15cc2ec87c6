/**
 * Fabrics (DESIGN §4): the port through which replication moves bytes — registered regions,
 * one-sided writes, ordered control messages, revocation. `MemoryFabric` runs in process; the tcp
 * and rdma fabrics satisfy the same contract (test/fabric/conformance.ts).
 */
export * from './memory.js';
export * from './transfer.js';
export type * from './types.js';
