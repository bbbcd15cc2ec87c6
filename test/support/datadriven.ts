/**
 * Data-driven tests in the style of etcd/raft's `testdata/*.txt` (cockroachdb/datadriven): a file
 * is a sequence of cases, each a directive line (`name key=value …`), a `----` line, and the
 * expected output up to a blank line. `runDataDriven` feeds each directive to a handler, in order
 * (the cases of one file share state: they are a script), and compares what it returns with the
 * expected block. `TALOS_REWRITE=1` writes the actual outputs back into the file instead (then
 * review the diff), as datadriven's -rewrite does.
 */
import { readFileSync, writeFileSync } from 'node:fs';

export interface Directive {
  name: string;
  args: Record<string, string>;
  /** `file:line` of the directive, for failure messages. */
  where: string;
}

interface Case {
  directive: Directive;
  line: string;
  expected: string;
}

function parse(path: string): { cases: Case[]; comments: Map<number, string[]> } {
  const lines = readFileSync(path, 'utf8').split('\n');
  const cases: Case[] = [];
  const comments = new Map<number, string[]>();
  let pending: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '' || line.startsWith('#')) {
      if (line.startsWith('#')) pending.push(line);
      continue;
    }
    const [name, ...rest] = line.trim().split(/\s+/);
    const args: Record<string, string> = {};
    for (const token of rest) {
      const eq = token.indexOf('=');
      if (eq < 0) args[token] = '';
      else args[token.slice(0, eq)] = token.slice(eq + 1);
    }
    if (lines[i + 1] !== '----') throw new Error(`${path}:${i + 1}: expected '----' after the directive`);
    const expected: string[] = [];
    let j = i + 2;
    while (j < lines.length && lines[j] !== '') expected.push(lines[j++]!);
    comments.set(cases.length, pending);
    pending = [];
    cases.push({
      directive: { name: name!, args, where: `${path}:${i + 1}` },
      line,
      expected: expected.join('\n'),
    });
    i = j;
  }
  return { cases, comments };
}

/** Runs every case of `path` through `handle`; returns the mismatches (empty when all match). */
export async function runDataDriven(
  path: string,
  handle: (directive: Directive) => Promise<string> | string,
): Promise<string[]> {
  const { cases, comments } = parse(path);
  const mismatches: string[] = [];
  const actual: string[] = [];
  for (const c of cases) {
    const out = (await handle(c.directive)).trimEnd();
    actual.push(out);
    if (out !== c.expected)
      mismatches.push(`${c.directive.where}: ${c.line}\n--- expected\n${c.expected}\n--- actual\n${out}`);
  }
  if (process.env.TALOS_REWRITE === '1') {
    const text = cases
      .map((c, i) => [...(comments.get(i) ?? []), c.line, '----', actual[i]!, ''].join('\n'))
      .join('\n');
    writeFileSync(path, text);
    return [];
  }
  return mismatches;
}

/**
 * An actor scenario step's output: once the invoked promises settled and the events they sent
 * back ran, the effects logged since `before`, then `state: <value>` (`(done)` when final) and the
 * context's error, if any.
 */
export async function actorStepOutput(
  log: readonly string[],
  before: number,
  snapshot: () => { value: unknown; status: string; context: { error: unknown } },
): Promise<string> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  const s = snapshot();
  const error = s.context.error === undefined ? '' : `\nerror: ${String(s.context.error)}`;
  return [
    ...log.slice(before),
    `state: ${JSON.stringify(s.value)}${s.status === 'done' ? ' (done)' : ''}${error}`,
  ].join('\n');
}
