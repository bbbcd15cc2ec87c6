/**
 * Runs abstract-level's own test suite (the one classic-level, memory-level and browser-level run)
 * against TalosLevel with the suite's own runner, tape. Run as a child process (TypeScript through
 * test/support/ts-register.mjs): `node --import ./test/support/ts-register.mjs test/level/abstract-suite.ts`;
 * it prints TAP and exits non-zero on any failed assertion. abstract-suite.test.ts runs it from jest.
 *
 * Small segments and a small L0 (TALOS_SUITE_STORE) make the suite's data cross flushes and levels,
 * so seeks and snapshots are exercised over index segments too, not only over L0.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TalosLevel } from '../../src/level/index.js';

const require = createRequire(import.meta.url);
const test = require('tape');
const suite = require('abstract-level/test');

const root = mkdtempSync(join(tmpdir(), 'talos-level-suite-'));
let dbCount = 0;
const store = { segmentBytes: 64 * 1024, l0Bytes: 2 * 1024, blockCacheBytes: 1024 * 1024 };

test.onFinish(() => rmSync(root, { recursive: true, force: true }));

suite({
  test,
  factory(options?: Record<string, unknown>) {
    return new TalosLevel(join(root, `db-${++dbCount}`), { ...options, store });
  },
});
