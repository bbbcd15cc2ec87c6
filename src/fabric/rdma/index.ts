/**
 * The rdma fabric (fabric.ts) and the native addon it runs on (addon.ts): load the addon lazily,
 * so importing this module never fails where RDMA is unavailable; using it then throws
 * RdmaUnavailableError.
 */
export {
  loadRdmaAddon,
  type NativeDeviceInfo,
  type RdmaAddon,
  rdmaAddonAvailable,
  rdmaAddonPath,
  rdmaDevices,
} from './addon.js';
export { parseRdmaAddress, RdmaConnection, RdmaFabric, type RdmaFabricOptions } from './fabric.js';
