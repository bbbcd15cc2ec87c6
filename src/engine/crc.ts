import { crc32c as nativeCrc32c } from '@node-rs/crc32';

/** CRC32C (Castagnoli) of `bytes`, optionally continuing from `initial`. SIMD-accelerated. */
export function crc32c(bytes: Uint8Array, initial = 0): number {
  return nativeCrc32c(bytes, initial) >>> 0;
}
