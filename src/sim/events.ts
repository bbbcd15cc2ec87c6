/**
 * Checkers over the protocol trace (src/trace.ts): PROTOCOL §8 from what the protocol did, event by
 * event, in the order the single-threaded simulation produced them — so a violation is caught where
 * it happens, even when no client read ever shows it.
 *
 * - §8.4 acknowledgments: for each region and epoch at most one node acknowledges writes, and the
 *   epochs of acknowledgments never decrease.
 * - §8.4 fencing (one writer per epoch): no byte is placed in a buffer after its backup fenced it.
 * - §8.1 buffer reuse (§4.3): a primary writes a segment into a backup's log buffer only once the
 *   backup persisted the full seal of the segment the buffer held before — otherwise acknowledged
 *   bytes of that segment exist in no log of that replica.
 * - §8.6: an index segment reaches a backup only after every log segment it points into is
 *   persisted there (the backup's segment-map keys, tracked through opens, seals and rebases).
 * - §6 leases: a node acknowledges writes and answers reads only while the coordinator holds a
 *   lease of it (on the coordinator's clock, which is true time in the simulator). This is what
 *   the lease margin buys when a node's clock drifts or loses time: without it a node whose clock
 *   runs slow still believes in a lease the coordinator already ended (the `no-lease-margin`
 *   mutant). Checked for nodes whose leases the trace shows.
 *
 * `record` is the trace sink; `violations()` lists what broke (each distinct violation once, at
 * most MAX_PER_KIND per kind) with the index of the event that broke it.
 */
import type { TraceEvent } from '../trace.js';

const MAX_PER_KIND = 3;

interface BufferState {
  /** Buffer index → the segment seq written into it last. */
  holds: Map<number, number>;
  /** Segments whose full seal this backup persisted (for this primary and epoch). */
  persistedFull: Set<number>;
}

export class TraceChecker {
  private count = 0;
  private readonly found = new Map<string, string[]>();
  /** region → epoch → the node that acknowledged in it. */
  private readonly ackers = new Map<string, Map<number, string>>();
  /** region → the highest epoch acknowledged so far. */
  private readonly ackedEpoch = new Map<string, number>();
  /** `${node}:${regionKey}` of fenced buffers → what fenced them. */
  private readonly fenced = new Map<string, string>();
  private readonly buffers = new Map<string, BufferState>();
  /** `${backup}|${region}` → primary segment offsets persisted there (segment-map keys). */
  private readonly mapped = new Map<string, Set<number>>();

  /** node → its leases the coordinator holds now (ids). Absent: no lease event seen. */
  private readonly leases = new Map<string, Set<number>>();
  /** node → when its last lease ended, for the message. */
  private readonly leaseEnded = new Map<string, string>();

  /** Virtual ms for the messages (the simulator sets its clock; events are numbered anyway). */
  nowMs: () => number = () => Number.NaN;

  /** The trace sink: checks one event. */
  readonly record = (event: TraceEvent): void => {
    const at = `event ${this.count++} at ${this.nowMs()} ms`;
    switch (event.kind) {
      case 'ack':
        this.leaseHeld(event.node, `acknowledged ${JSON.stringify(event.key)} of`, event, at);
        this.ack(event, at);
        break;
      case 'read':
        this.leaseHeld(event.node, 'answered a read of', event, at);
        break;
      case 'lease': {
        let live = this.leases.get(event.node);
        if (live === undefined) {
          live = new Set();
          this.leases.set(event.node, live);
        }
        if (event.live) live.add(event.leaseId);
        else {
          live.delete(event.leaseId);
          this.leaseEnded.set(event.node, `${this.nowMs()} ms`);
        }
        break;
      }
      case 'fenced':
        for (const key of event.regionKeys) {
          this.fenced.set(
            `${event.node}:${key}`,
            `${event.node} fenced region ${event.regionId} epoch ${event.epoch}`,
          );
        }
        break;
      case 'placed': {
        const fencedBy = this.fenced.get(`${event.node}:${event.regionKey}`);
        if (fencedBy !== undefined)
          this.add('fencing', `${at}: a write landed in buffer ${event.regionKey} after ${fencedBy}`);
        break;
      }
      case 'link-open':
        this.bufferState(event.primary, event.backup, event.regionId, event.epoch).holds.clear();
        break;
      case 'log-write':
        this.logWrite(event, at);
        break;
      case 'log-persisted': {
        if (!event.partial)
          this.bufferState(event.primary, event.backup, event.regionId, event.epoch).persistedFull.add(
            event.seq,
          );
        this.mapKeys(event.backup, event.regionId).add(event.primarySegment);
        break;
      }
      case 'segment-map':
        this.mapped.set(`${event.backup}|${event.regionId}`, new Set(event.primarySegments));
        break;
      case 'index-received': {
        const keys = this.mapKeys(event.backup, event.regionId);
        const missing = event.primarySegments.filter((s) => !keys.has(s));
        if (missing.length > 0) {
          this.add(
            'index-before-log',
            `${at}: ${event.backup} received an index segment of region ${event.regionId} (epoch ${event.epoch}) pointing into log segment(s) @${missing.join(', @')} it has not persisted`,
          );
        }
        break;
      }
    }
  };

  /** Every violation found, as readable lines prefixed with the invariant. */
  violations(): string[] {
    return [...this.found.entries()].flatMap(([kind, list]) => list.map((line) => `${kind}: ${line}`));
  }

  /** Events recorded so far. */
  get events(): number {
    return this.count;
  }

  private leaseHeld(
    node: string,
    what: string,
    event: { regionId: string; epoch: number },
    at: string,
  ): void {
    const live = this.leases.get(node);
    if (live === undefined || live.size > 0) return;
    this.add(
      'leases',
      `${at}: ${node} ${what} region ${event.regionId} (epoch ${event.epoch}) after its lease ended on the coordinator (at ${this.leaseEnded.get(node) ?? '?'})`,
    );
  }

  private ack(event: Extract<TraceEvent, { kind: 'ack' }>, at: string): void {
    let byEpoch = this.ackers.get(event.regionId);
    if (byEpoch === undefined) {
      byEpoch = new Map();
      this.ackers.set(event.regionId, byEpoch);
    }
    const other = byEpoch.get(event.epoch);
    if (other !== undefined && other !== event.node) {
      this.add(
        'epochs',
        `${at}: region ${event.regionId} epoch ${event.epoch} has two acknowledging nodes, ${other} and ${event.node}`,
      );
    }
    byEpoch.set(event.epoch, event.node);
    const highest = this.ackedEpoch.get(event.regionId) ?? 0;
    if (event.epoch < highest) {
      this.add(
        'epochs',
        `${at}: ${event.node} acknowledged ${JSON.stringify(event.key)} of region ${event.regionId} at epoch ${event.epoch} after epoch ${highest} acknowledged`,
      );
    }
    this.ackedEpoch.set(event.regionId, Math.max(highest, event.epoch));
  }

  private logWrite(event: Extract<TraceEvent, { kind: 'log-write' }>, at: string): void {
    const state = this.bufferState(event.primary, event.backup, event.regionId, event.epoch);
    const held = state.holds.get(event.buffer);
    if (held !== undefined && held !== event.seq && !state.persistedFull.has(held)) {
      this.add(
        'buffer-reuse',
        `${at}: ${event.primary} wrote segment ${event.seq} of region ${event.regionId} (epoch ${event.epoch}) into ${event.backup}'s log buffer ${event.buffer} before ${event.backup} persisted segment ${held} held there`,
      );
    }
    state.holds.set(event.buffer, event.seq);
  }

  private bufferState(primary: string, backup: string, regionId: string, epoch: number): BufferState {
    const key = `${primary}|${backup}|${regionId}|${epoch}`;
    let state = this.buffers.get(key);
    if (state === undefined) {
      state = { holds: new Map(), persistedFull: new Set() };
      this.buffers.set(key, state);
    }
    return state;
  }

  private mapKeys(backup: string, regionId: string): Set<number> {
    const key = `${backup}|${regionId}`;
    let keys = this.mapped.get(key);
    if (keys === undefined) {
      keys = new Set();
      this.mapped.set(key, keys);
    }
    return keys;
  }

  private add(kind: string, line: string): void {
    const list = this.found.get(kind) ?? [];
    if (list.length < MAX_PER_KIND && !list.includes(line)) list.push(line);
    this.found.set(kind, list);
  }
}
