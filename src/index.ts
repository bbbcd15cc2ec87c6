/** Talos public API: re-exports only. */
export * from './engine/index.js';
export * from './errors.js';
