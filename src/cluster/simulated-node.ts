/**
 * SimulatedNode: one incarnation of a LocalCluster node — its NodeRuntime — with the faults the
 * cluster injects into it, each through a port the runtime already has rather than a test hook on
 * the runtime:
 * - `crash()` aborts the runtime's `killed` signal (the process died: NodeRuntimeOptions.killed);
 * - `setPaused()` refuses incoming connections at the node's view of the fabric (its listener's
 *   handshake check), as a stopped process's kernel would leave them unanswered;
 * - `setPersistDelay()` waits before each backup-side persist (NodeRuntimeOptions.persistDelay),
 *   on the node's clock: a slow disk, since the Device port itself is synchronous.
 * The rest of a node's faults (partitions, stalls, clocks, disks) live in the shared fabric,
 * coordinator, clocks and devices, where LocalCluster injects them.
 */
import { NodeRuntime, type NodeRuntimeOptions } from '../actors/node-runtime.js';
import type { Fabric } from '../fabric/types.js';

export type SimulatedNodeOptions = Omit<NodeRuntimeOptions, 'killed' | 'persistDelay'>;

export class SimulatedNode {
  readonly runtime: NodeRuntime;
  private readonly killed = new AbortController();
  private paused = false;
  private persistDelayMs = 0;

  constructor(options: SimulatedNodeOptions) {
    const { clock, nodeId } = options;
    this.runtime = new NodeRuntime({
      ...options,
      fabric: this.fabricView(options.fabric, nodeId),
      killed: this.killed.signal,
      persistDelay: () =>
        this.persistDelayMs > 0
          ? new Promise<void>((resolve) => clock.setTimeout(resolve, this.persistDelayMs))
          : undefined,
    });
  }

  /**
   * The node stops dead, as a crash would (NodeRuntimeOptions.killed): no goodbye, the lease left
   * to run out, unsynced writes the device's to lose.
   */
  crash(): void {
    this.killed.abort();
  }

  /** While paused the node accepts no connection (LocalCluster.pauseNode holds the rest). */
  setPaused(paused: boolean): void {
    this.paused = paused;
  }

  /** Virtual ms before each backup-side persist (LocalCluster.slowDevice); 0 ends it. */
  setPersistDelay(ms: number): void {
    this.persistDelayMs = ms;
  }

  /** The shared fabric as this node sees it: its listener refuses handshakes while it is paused. */
  private fabricView(fabric: Fabric, nodeId: string): Fabric {
    return {
      kind: fabric.kind,
      listen: (address, options, onConnection) => {
        const accept = options.accept;
        return fabric.listen(
          address,
          {
            ...options,
            accept: (handshake) => {
              const verdict = accept === undefined ? true : accept(handshake);
              return verdict === true && this.paused ? `node ${nodeId} is paused` : verdict;
            },
          },
          onConnection,
        );
      },
      connect: (address, handshake) => fabric.connect(address, handshake),
      // The fabric is the cluster's, shared by every node: the cluster closes it.
      close: async () => {},
    };
  }
}
