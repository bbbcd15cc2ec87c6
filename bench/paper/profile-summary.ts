/**
 * Summarises V8 CPU profiles (`.cpuprofile`, from `bench:paper --profile DIR`): self time per
 * function, top N, so the doc can say where a node spends its CPU.
 * `node dist/bench/paper/profile-summary.js FILE... [--top N]`.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export function selfTimes(profile: Profile): Map<string, number> {
  const names = new Map<number, string>();
  for (const n of profile.nodes) {
    const f = n.callFrame;
    names.set(n.id, `${f.functionName || '(anonymous)'} ${f.url === '' ? '' : basename(f.url)}`.trim());
  }
  const out = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const name = names.get(id) ?? '?';
    out.set(name, (out.get(name) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  return out;
}

const args = process.argv.slice(2);
const topAt = args.indexOf('--top');
const top = topAt >= 0 ? Number(args[topAt + 1]) : 25;
const files = args.filter((a, i) => a !== '--top' && i !== topAt + 1);
const totals = new Map<string, number>();
for (const file of files) {
  for (const [name, us] of selfTimes(JSON.parse(readFileSync(file, 'utf8')) as Profile))
    totals.set(name, (totals.get(name) ?? 0) + us);
}
const all = [...totals.values()].reduce((a, b) => a + b, 0);
for (const [name, us] of [...totals].sort((a, b) => b[1] - a[1]).slice(0, top))
  process.stdout.write(
    `${((100 * us) / all).toFixed(1).padStart(5)} %  ${(us / 1000).toFixed(0).padStart(7)} ms  ${name}\n`,
  );
