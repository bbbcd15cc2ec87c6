/**
 * The simulator's side of the probe port (src/probe.ts): one Probe per schedule, built here and
 * handed to the world it runs in (SimWorld → LocalCluster → fabric, coordinator, nodes, stores).
 * Nothing is global, so schedules need no reset afterwards and may run side by side.
 */
import type { Mutant, Probe } from '../probe.js';
import type { TraceEvent } from '../trace.js';

/** A probe that sends every trace event to `trace` and turns on `mutant` (if any), nothing else. */
export function scheduleProbe(options: {
  trace?: ((event: TraceEvent) => void) | undefined;
  mutant?: Mutant | undefined;
}): Probe {
  const { trace, mutant } = options;
  return {
    ...(trace === undefined ? {} : { trace }),
    ...(mutant === undefined ? {} : { defect: (name: Mutant) => name === mutant }),
  };
}
