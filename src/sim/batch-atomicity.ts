/**
 * Batch atomicity (issue 19 item 2): a batch is all or nothing, across crashes and failovers.
 *
 * The workload's batches put values unique to the batch on two or three keys of one region; the
 * history holds one write entry per key, all with the batch's id and its call, return and outcome
 * (so the per-key linearizability check treats each as a write). What per-key checks cannot see is
 * a batch applied in part — say an unknown-outcome batch whose first record survived a crash and
 * whose second did not. This checker reads the final reads (after the heal, the cluster whole):
 *
 * if some key of batch B reads B's value, B was applied; then every other key k of B must read
 * either B's value too, or a value that a later write could have put over it — a put of that
 * value or a delete (for absent) on k that was not complete before B was invoked. Anything else —
 * k absent with no such delete, or holding a value written and complete before B began — is B
 * torn: a violation.
 *
 * (Reads during the workload are not used: the final reads, after every fault healed, are where a
 * torn batch stays visible. A batch every key of which was overwritten later proves nothing.)
 */

/** The fields of a history entry this checker reads (check.ts's HistoryEntry). */
export interface BatchHistoryEntry {
  client: number;
  op: 'put' | 'get' | 'delete' | 'scan';
  key: string;
  value: string | undefined;
  call: number;
  ret: number;
  outcome: 'ok' | 'fail' | 'info';
  batch?: number;
}

export function batchAtomicity(history: readonly BatchHistoryEntry[]): string[] {
  const finals = new Map<string, string | undefined>();
  for (const e of history) if (e.client === -1 && e.op === 'get') finals.set(e.key, e.value);
  const batches = new Map<number, BatchHistoryEntry[]>();
  for (const e of history) {
    if (e.batch === undefined || e.outcome === 'fail') continue;
    const entries = batches.get(e.batch) ?? [];
    entries.push(e);
    batches.set(e.batch, entries);
  }
  const out: string[] = [];
  for (const [id, entries] of batches) {
    if (!entries.some((e) => finals.has(e.key) && finals.get(e.key) === e.value)) continue;
    const call = entries[0]!.call;
    for (const e of entries) {
      const final = finals.get(e.key);
      if (!finals.has(e.key) || final === e.value) continue;
      // Could a write on this key after B (not complete before B began) have left `final`?
      const overwritten = history.some(
        (w) =>
          w.key === e.key &&
          w.client !== -1 &&
          w.outcome !== 'fail' &&
          w.batch !== id &&
          (w.op === 'delete' ? final === undefined : w.op === 'put' && w.value === final) &&
          (w.outcome === 'info' || w.ret > call),
      );
      if (!overwritten) {
        out.push(
          `batch atomicity: batch ${id} (${entries.map((x) => x.key).join(', ')}) applied in part: ` +
            `${e.key} reads ${final === undefined ? 'absent' : JSON.stringify(final.slice(0, 24))}, not the batch's value`,
        );
        break;
      }
    }
  }
  return out;
}
