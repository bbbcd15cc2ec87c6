/**
 * Protocol trace: the events the simulator's checkers read to check PROTOCOL §8 from what the
 * protocol *did*, not only from what clients saw (src/sim/events.ts). This module is the
 * vocabulary only: events go to the sink of the Probe the producer was given (src/probe.ts), which
 * only src/sim sets, one per schedule; production passes none, and nothing is built then.
 *
 * - `ack`: a primary acknowledged a write (§8.4: one acknowledging node per region per epoch,
 *   epochs never decrease).
 * - `link-open`: a primary opened a backup (new buffers: what the old ones held no longer counts).
 * - `log-write`: a primary issued a one-sided write of segment `seq` into a backup's log buffer
 *   (§4.3 / §8.1: a buffer is overwritten only after the backup persisted what it held).
 * - `log-persisted`: a backup persisted (a prefix of) a log segment; `primarySegment` is the map key.
 * - `segment-map`: the keys of a backup's segment map after an open, a rebase or a levels install.
 * - `index-received`: a backup is about to translate an index segment pointing into these primary
 *   segments (§8.6: every one of them must already be persisted there).
 * - `fenced`: a backup fenced (revoked) the buffers of an epoch; `placed`: the fabric put bytes into
 *   a registered region (§8.4: nothing lands in a fenced buffer — one writer per epoch).
 * - `phase`: a recovery step begins on `node` (with `peer`, the other node it involves): a
 *   backup's promotion, a primary's rebase or re-sync of a backup, a backup's install of shipped
 *   levels, a new epoch starting to serve. The simulator strikes faults on these (`Fault.during`),
 *   so that faults land inside recovery, not only between recoveries.
 * - `lease`: the coordinator granted (`live`) or ended a node's lease, on its own (true) clock;
 *   `read`: a primary answered a read (get or scan) of a region at an epoch (§6: a primary
 *   acknowledges and serves reads only while the coordinator still holds its lease).
 */
export const PHASES = ['promotion', 'rebase', 'resync', 'level-install', 'serve'] as const;
export type Phase = (typeof PHASES)[number];

export type TraceEvent =
  | { kind: 'ack'; node: string; regionId: string; epoch: number; key: string }
  | { kind: 'link-open'; primary: string; backup: string; regionId: string; epoch: number }
  | {
      kind: 'log-write';
      primary: string;
      backup: string;
      regionId: string;
      epoch: number;
      seq: number;
      buffer: number;
    }
  | {
      kind: 'log-persisted';
      backup: string;
      primary: string;
      regionId: string;
      epoch: number;
      seq: number;
      primarySegment: number;
      partial: boolean;
    }
  | { kind: 'segment-map'; backup: string; regionId: string; primarySegments: number[] }
  | { kind: 'index-received'; backup: string; regionId: string; epoch: number; primarySegments: number[] }
  | { kind: 'fenced'; node: string; regionId: string; epoch: number; regionKeys: number[] }
  | { kind: 'placed'; node: string; regionKey: number }
  | { kind: 'phase'; phase: Phase; node: string; peer?: string; regionId: string }
  | { kind: 'lease'; node: string; leaseId: number; live: boolean }
  | { kind: 'read'; node: string; regionId: string; epoch: number };
