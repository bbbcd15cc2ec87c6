/**
 * An in-process cluster served over the client protocol, for TalosClient tests: one client
 * endpoint (real TCP) per node, serving the node's PrimarySessions; the nodes and the cluster's
 * region map listed in a real etcd under a cluster name of their own, as node processes list them.
 * The map is copied once (tests that use this do not fail over).
 */
import { EtcdCoordinator } from '../../coordination/etcd.js';
import type { Membership } from '../../coordination/types.js';
import type { TalosClientOptions } from '../../src/client/talos-client.js';
import type { LocalCluster } from '../../src/cluster/local-cluster.js';
import { type ClientServer, startClientServer } from '../../src/server/client-server.js';

export interface ServedCluster {
  /** Options for TalosClient.connect (or TalosClusterLevel's `talos`). */
  talos: TalosClientOptions;
  servers: ClientServer[];
  /** Stops the endpoints and leaves etcd (not the cluster). */
  close(): Promise<void>;
}

let served = 0;

export async function serveCluster(
  cluster: LocalCluster,
  etcdEndpoints: string[],
  options: { handleLeaseMs?: number; name?: string } = {},
): Promise<ServedCluster> {
  const name = options.name ?? `served-${process.pid}-${served++}`;
  const coordinator = new EtcdCoordinator({ endpoints: etcdEndpoints, cluster: name });
  const servers: ClientServer[] = [];
  const memberships: Membership[] = [];
  for (const nodeId of cluster.nodeIds()) {
    const server = await startClientServer({
      address: 'tcp://127.0.0.1:0',
      nodeId,
      session: (regionId) => cluster.session(nodeId, regionId),
      ...(options.handleLeaseMs === undefined ? {} : { handleLeaseMs: options.handleLeaseMs }),
    });
    servers.push(server);
    memberships.push(
      await coordinator.join(
        { nodeId, fabricAddress: 'tcp://127.0.0.1:1', clientAddress: server.address },
        10_000,
      ),
    );
  }
  for (const region of cluster.regions()) {
    const result = await coordinator.compareAndSetRegion(0, region);
    if (!result.ok) throw new Error(`region ${region.regionId} is listed already`);
  }
  return {
    talos: { etcd: etcdEndpoints, cluster: name },
    servers,
    close: async () => {
      await Promise.all(servers.map((s) => s.close()));
      await Promise.all(memberships.map((m) => m.leave()));
      await coordinator.close();
    },
  };
}
