/** Talos public API: re-exports only. */
export * from './errors.js';
