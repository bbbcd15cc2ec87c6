/**
 * Linearizability of one key's history against a register (Wing & Gong's search with Lowe's
 * memoization, as in porcupine): is there a total order of the operations, each taking effect at
 * one instant between its invocation and its completion, in which every read returns the value of
 * the latest write before it?
 *
 * Operations carry logical times (`call` < `ret`, from one counter of events). A write whose
 * outcome is unknown has `ret = Infinity`: it may take effect at any time after its call, or never.
 * Reads that failed are left out by the caller (they observed nothing). The search is bounded by
 * `budget` visited states: past it the answer is 'unknown', never 'ok'.
 */
export interface RegisterOp {
  kind: 'write' | 'read';
  /** Written value, or the value the read returned (undefined: absent). */
  value: string | undefined;
  call: number;
  ret: number;
}

export type Verdict = 'ok' | 'violation' | 'unknown';

export function checkRegister(
  ops: readonly RegisterOp[],
  initial: string | undefined,
  budget = 200_000,
): Verdict {
  const n = ops.length;
  if (n === 0) return 'ok';
  const sorted = [...ops].sort((a, b) => a.call - b.call);
  const required = sorted.map((op) => op.ret !== Number.POSITIVE_INFINITY);
  const seen = new Set<string>();
  let visited = 0;
  // Depth-first over (linearized set, register value); the set as a bit string.
  const stack: { done: boolean[]; value: string | undefined }[] = [
    { done: new Array(n).fill(false), value: initial },
  ];
  while (stack.length > 0) {
    const { done, value } = stack.pop()!;
    if (done.every((d, i) => d || !required[i])) return 'ok';
    const key = `${done.map((d) => (d ? 1 : 0)).join('')}|${value ?? '\u0000absent'}`;
    if (seen.has(key)) continue;
    seen.add(key);
    if (++visited > budget) return 'unknown';
    // An operation can go next only if it was invoked before every pending operation returned.
    let minRet = Number.POSITIVE_INFINITY;
    for (let i = 0; i < n; i++) if (!done[i] && sorted[i]!.ret < minRet) minRet = sorted[i]!.ret;
    for (let i = 0; i < n; i++) {
      const op = sorted[i]!;
      if (done[i] || op.call > minRet) continue;
      if (op.kind === 'read' && op.value !== value) continue;
      const next = [...done];
      next[i] = true;
      stack.push({ done: next, value: op.kind === 'write' ? op.value : value });
    }
  }
  return 'violation';
}
