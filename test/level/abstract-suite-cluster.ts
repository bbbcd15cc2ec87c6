/**
 * abstract-level's whole test suite against TalosClusterLevel over an in-process cluster (two
 * nodes, three regions, two copies each, so keys of one test spread over regions and every write
 * is replicated), with the suite's own runner, tape. See abstract-suite.ts; jest runs it from
 * abstract-suite.test.ts.
 */
import { createRequire } from 'node:module';
import { TalosClusterLevel } from '../../src/level/index.js';

const require = createRequire(import.meta.url);
const test = require('tape');
const suite = require('abstract-level/test');

const cluster = {
  nodes: 2,
  regions: 3,
  replicas: 2,
  leaseTtlMs: 5000,
  store: { segmentBytes: 64 * 1024, l0Bytes: 2 * 1024, blockCacheBytes: 1024 * 1024 },
};

suite({
  test,
  factory(options?: Record<string, unknown>) {
    return new TalosClusterLevel({ ...options, cluster });
  },
});
