/**
 * `talos-kv/level`: abstract-level adapters. `TalosLevel` embeds a Store (as classic-level embeds
 * LevelDB); `TalosClusterLevel` reads and writes a cluster through its client.
 */

export { TalosClusterLevel, type TalosClusterLevelOptions } from './cluster-level.js';
export {
  TALOS_LEVEL_MANIFEST,
  TalosLevel,
  type TalosLevelOptions,
  type TalosLevelStoreOptions,
} from './talos-level.js';
