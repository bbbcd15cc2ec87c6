/** Talos public API: re-exports only. */

export { EmbeddedCoordinator } from '../coordination/embedded.js';
export { EtcdCoordinator, type EtcdCoordinatorOptions } from '../coordination/etcd.js';
export type {
  CasResult,
  Coordinator,
  Membership,
  NodeInfo,
  RegionConfig,
  RegionEntry,
} from '../coordination/types.js';
export { compactionMachine } from './actors/compaction.js';
export {
  type ClusterLayout,
  controllerMachine,
  initialPlacement,
  type RegionSpec,
} from './actors/controller.js';
export { flushMachine } from './actors/flush.js';
export { nodeMachine } from './actors/node.js';
export { NodeRuntime, type NodeRuntimeOptions } from './actors/node-runtime.js';
export { regionBackupMachine } from './actors/region-backup.js';
export { regionPrimaryMachine } from './actors/region-primary.js';
export {
  TalosClient,
  type TalosClientOptions,
  type TalosClientTlsOptions,
} from './client/talos-client.js';
export { type Clock, ManualClock, SystemClock } from './clock/index.js';
export { type ClientScanOptions, LocalClient, type LocalClientOptions } from './cluster/client.js';
export {
  type ClusterStats,
  type ClusterStoreOptions,
  createLocalCluster,
  LocalCluster,
  type LocalClusterOptions,
  type NodeStats,
  type RoleStats,
} from './cluster/local-cluster.js';
export { hexRegionSpecs, regionOf } from './cluster/regions.js';
export * from './engine/index.js';
export * from './errors.js';
export * from './fabric/index.js';
export { RdmaFabric, type RdmaFabricOptions, rdmaDevices } from './fabric/rdma/index.js';
export { TcpFabric, type TcpFabricOptions } from './fabric/tcp.js';
export type { TlsCredentials } from './fabric/tls.js';
export { compareKeys, type KeyLike } from './keys.js';
export { BackupRefusedError } from './replication/backup-link.js';
export type { ReplicationMode } from './replication/messages.js';
export { PrimarySession, ResyncRequiredError } from './replication/primary-session.js';
