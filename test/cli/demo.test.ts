/**
 * The main job end to end, small: a 3-node cluster on real files loads, updates and verifies every
 * acknowledged write on primaries and backups, in both modes side by side.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { demoKey, runDemo } from '../../src/cli/demo.js';

test('demo --compare: a primary dies mid-load and comes back; every acknowledged write is verified in both modes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'talos-demo-test-'));
  const lines: string[] = [];
  try {
    const summary = await runDemo({
      keys: 4000,
      compare: true,
      dir,
      out: (l) => lines.push(l),
      progress: false,
    });
    expect(summary.mode).toBe('send-index');
    expect(summary.compare?.mode).toBe('build-index');
    for (const result of [summary, summary.compare!]) {
      // A primary was killed mid-load: writes in flight then have unknown outcomes, never "lost".
      expect(result.acknowledged + result.unknownOutcomes).toBeGreaterThanOrEqual(4000);
      expect(result.verified).toBe(4000);
      expect(result.failoverMs).toBeGreaterThan(0);
      expect(result.lost).toBe(0);
      expect(result.backupMismatches).toBe(0);
      expect(result.backupIoBytes).toBeGreaterThan(0);
      expect(result.primaryIoBytes).toBeGreaterThan(0);
    }
    expect(summary.shippedIndexSegments).toBeGreaterThan(0);
    expect(summary.compare!.shippedIndexSegments).toBe(0);
    expect(summary.ratios!.fabric).toBeLessThan(1); // Build-Index ships no index
    // Real files: one directory per node, one per region it holds, kept under --dir.
    expect(readdirSync(join(dir, 'send-index')).sort()).toEqual(['n1', 'n2', 'n3']);
    expect(existsSync(join(dir, 'build-index', 'n1', 'r0'))).toBe(true);
    expect(lines.some((l) => l.startsWith('  r1 '))).toBe(true);
    expect(lines.some((l) => /n2 promoted to primary of r0 at epoch 2/.test(l))).toBe(true);
    expect(lines.some((l) => /n1 is back: a backup of every region again/.test(l))).toBe(true);
    expect(lines.at(-1)).toMatch(/^verified: every acknowledged write/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('demo keys are 24 bytes and spread over the hex-prefixed regions', () => {
  const keys = Array.from({ length: 3000 }, (_, i) => demoKey(i));
  expect(new Set(keys.map((k) => k.length))).toEqual(new Set([24]));
  expect(new Set(keys).size).toBe(keys.length);
  const firstDigit = new Set(keys.map((k) => k[0]));
  expect(firstDigit.size).toBe(16);
});
