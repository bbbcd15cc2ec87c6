/**
 * What a client may read back after writes with uncertain outcomes (PROTOCOL §3.4, §6): for each
 * key the last acknowledged value, plus the values of later writes whose outcome is unknown (their
 * primary died or lost its lease after appending them: they may or may not have been applied). A
 * key never acknowledged may also be absent. The demo and the fault property check reads with it.
 */
const ABSENT = '\u0000absent';

export class OutcomeLedger {
  private readonly acceptable = new Map<string, string[]>();
  /** Keys with at least one acknowledged write. */
  readonly ackedKeys = new Set<string>();
  /** Writes whose outcome was unknown. */
  unknownOutcomes = 0;

  /** The write of `value` to `key` was acknowledged: earlier values are no longer acceptable. */
  ack(key: string, value: string): void {
    this.acceptable.set(key, [value]);
    this.ackedKeys.add(key);
  }

  /** The write of `value` to `key` may or may not have been applied. */
  unknown(key: string, value: string): void {
    const list = this.acceptable.get(key) ?? [ABSENT];
    list.push(value);
    this.acceptable.set(key, list);
    this.unknownOutcomes++;
  }

  /** Whether reading `got` (undefined: absent) for `key` is consistent with what was written. */
  accepts(key: string, got: string | undefined): boolean {
    const list = this.acceptable.get(key);
    return list === undefined ? got === undefined : list.includes(got ?? ABSENT);
  }

  /** Every key written (acknowledged or not). */
  keys(): string[] {
    return [...this.acceptable.keys()];
  }
}
