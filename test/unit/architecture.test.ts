/**
 * Layering rules of DESIGN §2 that keep the simulator out of production, checked on the import
 * graph of src/ and coordination/ (every `import`, `export … from` and `import()`, type-only ones
 * included, as TypeScript's pre-processor reports them):
 * - no production module — engine, replication, fabric, actors, server, client, cluster, clock,
 *   level, coordination, the top-level modules — reaches src/sim, directly or through others;
 *   outside src/sim only the CLI (its `check` command) imports it;
 * - the simulator's switches are a port (src/probe.ts), not globals: no module keeps a trace sink
 *   or a mutant in module state, and none exports a setter for one (src/mutants.ts and the
 *   `setTraceSink`/`setMutant` switches are gone for good).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

const ROOT = process.cwd();

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const path = join(dir, name);
    if (statSync(join(ROOT, path)).isDirectory()) out.push(...sourceFiles(path));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

/** A relative specifier as the repository path it names (`.js` → `.ts`, a folder → its index). */
function resolveSpecifier(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith('.')) return undefined; // a package or a node: builtin
  const base = resolve(ROOT, dirname(from), specifier);
  const candidates = [base.replace(/\.js$/, '.ts'), `${base}.ts`, join(base, 'index.ts')];
  const found = candidates.find((c) => existsSync(c) && statSync(c).isFile());
  return relative(ROOT, found ?? base.replace(/\.js$/, '.ts'));
}

/** Every module of src/ and coordination/ → the repository modules it imports. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of [...sourceFiles('src'), ...sourceFiles('coordination')]) {
    const info = ts.preProcessFile(readFileSync(join(ROOT, file), 'utf8'), true, true);
    const targets = info.importedFiles
      .map((f) => resolveSpecifier(file, f.fileName))
      .filter((t): t is string => t !== undefined);
    graph.set(file, [...new Set(targets)]);
  }
  return graph;
}

const graph = importGraph();
const isSim = (path: string): boolean => path.startsWith('src/sim/');
const isCli = (path: string): boolean => path.startsWith('src/cli/');

/** The import chain from `start` to the first module `bad` accepts, if any (breadth first). */
function chainTo(start: string, bad: (path: string) => boolean): string[] | undefined {
  const parent = new Map<string, string | undefined>([[start, undefined]]);
  const queue = [start];
  while (queue.length > 0) {
    const at = queue.shift()!;
    if (bad(at)) {
      const chain: string[] = [];
      for (let p: string | undefined = at; p !== undefined; p = parent.get(p)) chain.unshift(p);
      return chain;
    }
    for (const next of graph.get(at) ?? []) {
      if (parent.has(next)) continue;
      parent.set(next, at);
      queue.push(next);
    }
  }
  return undefined;
}

test('the scanner sees value, type-only, re-export and multi-line imports', () => {
  expect(graph.get('src/cli/check.ts')).toContain('src/sim/check.ts');
  expect(graph.get('src/sim/recording.ts')).toContain('src/trace.ts'); // `import type`
  expect(graph.get('src/sim/check.ts')).toContain('src/sim/faults.ts'); // `import {⏎ … ⏎} from`
  expect(graph.get('src/index.ts')).toContain('src/actors/node-runtime.ts'); // `export … from`
  expect(graph.get('src/index.ts')).toContain('src/engine/index.ts'); // `export * from`
  expect(graph.get('src/engine/recovery.ts')).toContain('src/probe.ts');
  expect(graph.get('coordination/embedded.ts')).toContain('src/probe.ts'); // across the two roots
  expect(graph.size).toBeGreaterThan(100);
});

test('no production module reaches the simulator (src/sim), directly or transitively', () => {
  const production = [...graph.keys()].filter((f) => !isSim(f) && !isCli(f));
  expect(production.some((f) => f.startsWith('src/engine/'))).toBe(true);
  const offending = production
    .map((f) => chainTo(f, isSim))
    .filter((chain): chain is string[] => chain !== undefined)
    .map((chain) => chain.join(' → '));
  expect(offending).toEqual([]);
});

test('outside src/sim only the CLI imports the simulator', () => {
  const importers = [...graph]
    .filter(([file, targets]) => !isSim(file) && targets.some(isSim))
    .map(([file]) => file);
  expect(importers.filter((f) => !isCli(f))).toEqual([]);
});

test('defects and the trace sink are a port, not global switches', () => {
  // The old global switch modules are gone, and nothing imports a module of that name.
  expect(existsSync(join(ROOT, 'src/mutants.ts'))).toBe(false);
  const importsMutants = [...graph]
    .filter(([, targets]) => targets.some((t) => /(^|\/)mutants\.ts$/.test(t)))
    .map(([file]) => file);
  expect(importsMutants).toEqual([]);
  const setters: string[] = [];
  const state: string[] = [];
  for (const file of graph.keys()) {
    if (isSim(file)) continue;
    const text = readFileSync(join(ROOT, file), 'utf8');
    // A setter of a process-wide sink or defect: what a global switch is made of.
    for (const m of text.matchAll(/export\s+function\s+(set\w*(?:Sink|Mutant|Defect|Probe|Trace)\w*)/g))
      setters.push(`${file}: ${m[1]}`);
    if (file === 'src/probe.ts' || file === 'src/trace.ts') {
      // The port's own modules hold no module state at all (a `let` at top level would be a global).
      const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest);
      for (const statement of source.statements) {
        if (ts.isVariableStatement(statement) && !(statement.declarationList.flags & ts.NodeFlags.Const))
          state.push(`${file}: ${statement.getText(source).split('\n')[0]}`);
      }
    }
  }
  expect(setters).toEqual([]);
  expect(state).toEqual([]);
});
