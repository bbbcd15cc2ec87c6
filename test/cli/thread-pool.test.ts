/**
 * The CLI sizes libuv's thread pool before anything uses it (src/cli/thread-pool.ts): eight
 * threads unless UV_THREADPOOL_SIZE says otherwise. Checked in a fresh process, where the module
 * runs first as it does in the CLI.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const REPO_ROOT = join(__dirname, '..', '..');
const poolModule = join(REPO_ROOT, 'src', 'cli', 'thread-pool.ts');

function poolSizeWith(env: Record<string, string>): string {
  const { UV_THREADPOOL_SIZE: _ignored, ...rest } = process.env;
  const run = spawnSync(
    process.execPath,
    [
      '--import',
      join(REPO_ROOT, 'test/support/ts-register.mjs'),
      '--input-type=module',
      '-e',
      `await import(${JSON.stringify(poolModule)}); console.log(process.env.UV_THREADPOOL_SIZE);`,
    ],
    { env: { ...rest, ...env }, encoding: 'utf8' },
  );
  return run.stdout.trim();
}

it('sets UV_THREADPOOL_SIZE to 8 by default; an explicit value wins', () => {
  expect(poolSizeWith({})).toBe('8');
  expect(poolSizeWith({ UV_THREADPOOL_SIZE: '3' })).toBe('3');
});
