/**
 * abstract-level's whole test suite against TalosLevel and TalosClusterLevel (in-process, and over
 * TalosClient and the client protocol), run by its own runner (tape) in a child
 * process (abstract-suite.ts). Fails on any failed assertion, on a suite that did not finish, and
 * on one that ran suspiciously few assertions; the failures' TAP is in the message.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';

const REPO_ROOT = path.resolve(__dirname, '../..');

interface TapSummary {
  exitCode: number | null;
  passCount: number;
  failCount: number;
  failures: string[];
}

function runSuite(script: string): Promise<TapSummary> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', path.join(REPO_ROOT, 'test/support/ts-register.mjs'), path.join(REPO_ROOT, script)],
      { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
    });
    child.on('error', reject);
    child.on('close', (exitCode) => {
      const count = (label: string): number =>
        Number(new RegExp(`^# ${label}\\s+(\\d+)$`, 'm').exec(out)?.[1] ?? 0);
      const lines = out.split('\n');
      const failures: string[] = [];
      lines.forEach((line, i) => {
        if (line.startsWith('not ok')) failures.push(lines.slice(Math.max(0, i - 1), i + 8).join('\n'));
      });
      resolve({ exitCode, passCount: count('pass'), failCount: count('fail'), failures });
    });
  });
}

describe('abstract-level suite', () => {
  it.each([
    ['TalosLevel', 'test/level/abstract-suite.ts'],
    ['TalosClusterLevel', 'test/level/abstract-suite-cluster.ts'],
    ['TalosClusterLevel over TalosClient', 'test/level/abstract-suite-remote.ts'],
  ])(
    '%s passes every case',
    async (_name, script) => {
      const summary = await runSuite(script);
      const report = `${summary.passCount} passed, ${summary.failCount} failed\n${summary.failures.slice(0, 20).join('\n')}`;
      expect({ failCount: summary.failCount, exitCode: summary.exitCode, report }).toEqual({
        failCount: 0,
        exitCode: 0,
        report: `${summary.passCount} passed, 0 failed\n`,
      });
      // The whole suite (its sublevel rerun included) is some 5 000 assertions.
      expect(summary.passCount).toBeGreaterThan(4000);
    },
    600_000,
  );
});
