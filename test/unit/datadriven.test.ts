/** The data-driven runner (test/support/datadriven.ts): matches, mismatches, rewrites, bad files. */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runDataDriven } from '../support/datadriven.js';

const file = (text: string): string => {
  const path = join(mkdtempSync(join(tmpdir(), 'dd-')), 'case.txt');
  writeFileSync(path, text);
  return path;
};
const echo = (d: { name: string; args: Record<string, string> }) => `${d.name} ${JSON.stringify(d.args)}`;

test('each directive runs in order and its output is compared with the expected block', async () => {
  const path = file('# a comment\nadd x=1 flag\n----\nadd {"x":"1","flag":""}\n\nsub\n----\nsub {}\n');
  expect(await runDataDriven(path, echo)).toEqual([]);
});

test('a different output is a mismatch naming the file, line, expected and actual', async () => {
  const path = file('add x=1\n----\nsomething else\n');
  const [mismatch] = await runDataDriven(path, echo);
  expect(mismatch).toContain(`${path}:1: add x=1`);
  expect(mismatch).toContain('--- expected\nsomething else\n--- actual\nadd {"x":"1"}');
});

test('TALOS_REWRITE=1 writes the actual outputs back, keeping comments', async () => {
  const path = file('# keep me\nadd x=1\n----\nstale\n');
  process.env.TALOS_REWRITE = '1';
  try {
    expect(await runDataDriven(path, echo)).toEqual([]);
  } finally {
    delete process.env.TALOS_REWRITE;
  }
  expect(readFileSync(path, 'utf8')).toBe('# keep me\nadd x=1\n----\nadd {"x":"1"}\n');
  expect(await runDataDriven(path, echo)).toEqual([]);
});

test('a directive without its ---- line is a clear error', async () => {
  await expect(runDataDriven(file('add x=1\nnope\n'), echo)).rejects.toThrow(/:1: expected '----'/);
});
