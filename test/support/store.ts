import { SimDevice } from '../../src/engine/sim-device.js';
import { Store, type StoreOptions } from '../../src/engine/store.js';

/** Tiny sizes so that seals, flushes and compactions through several levels happen constantly. */
export const TINY: Omit<StoreOptions, 'device' | 'dir'> = {
  segmentBytes: 4096,
  l0Bytes: 1024,
  growthFactor: 2,
  maxLevels: 4,
  maxKeyBytes: 64,
  blockCacheBytes: 64 * 1024,
};

export async function openTiny(device: SimDevice = new SimDevice(), extra: Partial<StoreOptions> = {}) {
  const store = await Store.open({ ...TINY, device, ...extra });
  return { store, device };
}

/** Full scan of a store as a Map of hex key → hex value. */
export async function dump(store: Store): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const { key, value } of await store.scan()) out.set(key.toString('hex'), value.toString('hex'));
  return out;
}

export function sortedEntries(model: Map<string, string>): [string, string][] {
  return [...model.entries()].sort((a, b) =>
    Buffer.compare(Buffer.from(a[0], 'hex'), Buffer.from(b[0], 'hex')),
  );
}
