/**
 * Crash points (PROTOCOL §4–7): a node dies at a chosen device call — inside a seal, an index
 * segment write, between shipped index segments and their level install, at a manifest edit's
 * sync, in the middle of a joining backup's re-sync — while clients keep writing. Then the cluster moves on (reconfigure or
 * promote), the node comes back with its disk (simulated: unsynced writes lost) and is re-synced.
 * Checked every time: no acknowledged write is lost (unknown outcomes may go either way), and
 * after healing every backup reads exactly like its primary (in Send-Index, level by level
 * through its segment map too).
 */

import type { Role } from '../../src/actors/work.js';
import type { DeviceOp } from '../../src/cluster/incarnation-device.js';
import type { LocalCluster } from '../../src/cluster/local-cluster.js';
import { OutcomeLedger } from '../../src/cluster/outcome-ledger.js';
import type { ReplicationMode } from '../../src/replication/messages.js';
import { expectNothingLost, expectReplicasEqual, faultCluster, waitWhole } from '../support/cluster.js';

jest.setTimeout(60_000);

type Op = DeviceOp & { regionId: string; role: Role };

const keyOf = (k: number): string => `${'0123456789abcdef'[k % 16]}${k % 3}-key-${k}`;

interface CrashPoint {
  name: string;
  modes: ReplicationMode[];
  /** Arms the crash; may also inject a first fault. Resolves with the node that will die. */
  arm(c: LocalCluster): { victim: string; crashed: Promise<void>; also?: string[] };
}

const r0 = (c: LocalCluster) => c.regions().find((r) => r.regionId === 'r0')!;
const on =
  (regionId: string, role: Role, match: (op: Op) => boolean) =>
  (op: Op): boolean =>
    op.regionId === regionId && op.role === role && match(op);

const POINTS: CrashPoint[] = [
  {
    name: 'a backup persisting a sealed log segment',
    modes: ['send-index', 'build-index'],
    arm: (c) => {
      const victim = r0(c).backups[0]!;
      const when = on('r0', 'backup', (op) => op.kind === 'write' && op.category === 'log');
      return { victim, crashed: c.crashWhen(victim, when) };
    },
  },
  {
    name: 'the primary syncing its log (a seal or a tail sync)',
    modes: ['send-index', 'build-index'],
    arm: (c) => {
      const victim = r0(c).primary;
      return {
        victim,
        crashed: c.crashWhen(
          victim,
          on('r0', 'primary', (op) => op.kind === 'sync'),
        ),
      };
    },
  },
  {
    name: 'the primary writing an index segment (a flush or compaction about to ship it)',
    modes: ['send-index', 'build-index'],
    arm: (c) => {
      const victim = r0(c).primary;
      const when = on('r0', 'primary', (op) => op.kind === 'write' && op.category === 'index');
      return { victim, crashed: c.crashWhen(victim, when) };
    },
  },
  {
    name: 'a backup persisting a shipped index segment',
    modes: ['send-index'],
    arm: (c) => {
      const victim = r0(c).backups[1]!;
      const when = on('r0', 'backup', (op) => op.kind === 'write' && op.category === 'index');
      return { victim, crashed: c.crashWhen(victim, when) };
    },
  },
  {
    name: 'a backup between shipped index segments and their level install (manifest write)',
    modes: ['send-index', 'build-index'],
    arm: (c) => {
      const victim = r0(c).backups[0]!;
      let indexWritten = false;
      let manifests = 0;
      const when = on('r0', 'backup', (op) => {
        if (op.kind === 'write' && op.category === 'index') indexWritten = true;
        // A manifest commit: an edit's append (or a rotation's new snapshot file), not its sync.
        if (op.kind === 'meta' && indexWritten && (op.action === 'append' || op.name.startsWith('MANIFEST-')))
          manifests++;
        return manifests === 2;
      });
      return { victim, crashed: c.crashWhen(victim, when) };
    },
  },
  {
    name: 'a backup syncing a manifest edit (a shipped log segment or a level install)',
    modes: ['send-index', 'build-index'],
    arm: (c) => {
      const victim = r0(c).backups[1]!;
      let syncs = 0;
      const when = on('r0', 'backup', (op) => op.kind === 'meta' && op.action === 'sync' && ++syncs === 3);
      return { victim, crashed: c.crashWhen(victim, when) };
    },
  },
  {
    name: 'a joining backup in the middle of its online re-sync',
    modes: ['send-index', 'build-index'],
    arm: (c) => {
      // r0's backup n2 dies first; the free node n4 joins r0 and dies while being caught up.
      const first = r0(c).backups[0]!;
      const free = c.nodeIds().find((n) => n !== r0(c).primary && !r0(c).backups.includes(n))!;
      let writes = 0;
      const crashed = c.crashWhen(
        free,
        on('r0', 'backup', (op) => op.kind === 'write' && op.category === 'log' && ++writes === 2),
      );
      void c.killNode(first);
      return { victim: free, crashed, also: [first] };
    },
  },
];

const cases = POINTS.flatMap((point) => point.modes.map((mode) => [point.name, mode, point] as const));

test.each(cases)(
  'crash point: %s (%s) — nothing acknowledged is lost, replicas converge',
  async (_name, mode, point) => {
    const c = await faultCluster({ mode });
    try {
      const client = c.client({ operationTimeoutMs: 20_000 });
      const ledger = new OutcomeLedger();
      let version = 0;
      const write = async (k: number): Promise<void> => {
        const key = keyOf(k);
        const value = `v${version++}-${'x'.repeat(40 + (k % 40))}`;
        try {
          await client.put(key, value);
          ledger.ack(key, value);
        } catch {
          ledger.unknown(key, value);
        }
      };
      // Concurrent writers, one write per key in flight: "the last acknowledged value" is defined.
      const batch = async (from: number): Promise<void> => {
        await Promise.all(Array.from({ length: 16 }, (_, i) => write((from + i) % 900)));
      };
      for (let i = 0; i < 20; i++) await batch(i * 16);
      const { victim, crashed, also = [] } = point.arm(c);
      let dead = false;
      void crashed.then(() => {
        dead = true;
      });
      let next = 0;
      for (let i = 0; !dead; i++) {
        if (i > 2_000) throw new Error(`crash point "${point.name}" was never reached`);
        await batch(next);
        next += 16;
      }
      await crashed;
      for (let i = 0; i < 20; i++, next += 16) await batch(next);
      for (const node of [...also, victim]) await c.restartNode(node);
      await waitWhole(c);
      for (let i = 0; i < 20; i++, next += 16) await batch(next);
      await expectNothingLost(client, ledger);
      await expectReplicasEqual(c, { levels: mode === 'send-index' });
    } finally {
      await c.close();
    }
  },
);

test('a backup that returns after two promotions (maps of an older lineage) is reset and re-synced from scratch', async () => {
  const c = await faultCluster();
  try {
    const client = c.client({ operationTimeoutMs: 20_000 });
    const ledger = new OutcomeLedger();
    let version = 0;
    const writes = async (rounds: number): Promise<void> => {
      for (let r = 0; r < rounds; r++) {
        await Promise.all(
          Array.from({ length: 16 }, async (_, i) => {
            const key = keyOf((version + i) % 600);
            const value = `v${version + i}-${'y'.repeat(50)}`;
            try {
              await client.put(key, value);
              ledger.ack(key, value);
            } catch {
              ledger.unknown(key, value);
            }
          }),
        );
        version += 16;
      }
    };
    const served = (predicate: (r: ReturnType<typeof r0>) => boolean) =>
      c.waitForRegions(() => predicate(r0(c)) && c.session(r0(c).primary, 'r0') !== undefined, 30_000);
    await writes(30);
    expect(r0(c)).toMatchObject({ primary: 'n1', backups: ['n2', 'n3'] });
    // n3 leaves with maps keyed by n1; n4 joins r0 in its place.
    await c.killNode('n3');
    await served((r) => r.backups.length === 2 && !r.backups.includes('n3'));
    await writes(20);
    // First promotion: n1 dies, a backup of n1 takes over (its maps' owner: n1).
    await c.killNode('n1');
    await served((r) => r.primary !== 'n1');
    await writes(20);
    await c.restartNode('n1');
    await served((r) => r.backups.length === 2);
    // Second promotion: the current primary dies; the next one's lineage no longer knows n1.
    const second = r0(c).primary;
    await c.killNode(second);
    await served((r) => r.primary !== second);
    expect(c.session(r0(c).primary, 'r0')!.store.replica.mapOwner()).toBe(second);
    await writes(20);
    // n3 returns: its r0 maps are keyed by n1, which no rebase can reach any more.
    await c.restartNode('n3');
    await c.restartNode(second);
    await waitWhole(c);
    expect(c.runtime('n3').demotions).toContain('r0');
    await writes(20);
    await expectNothingLost(client, ledger);
    await expectReplicasEqual(c, { levels: true });
  } finally {
    await c.close();
  }
});

test.each(['send-index', 'build-index'] as const)(
  'a primary restarted within its old lease never resumes its epoch: a backup is promoted, nothing acknowledged is lost (%s)',
  async (mode) => {
    const c = await faultCluster({ mode, leaseTtlMs: 2_000 });
    try {
      const client = c.client({ operationTimeoutMs: 20_000 });
      const acked = new Map<string, string>();
      let n = 0;
      const writes = async (count: number): Promise<void> => {
        for (let i = 0; i < count; i++, n++) {
          const key = keyOf(n % 300);
          await client.put(key, `v${n}`);
          acked.set(key, `v${n}`);
        }
      };
      await writes(500);
      const before = r0(c);
      // Its simulated disk loses the unsynced tail of the active segment (acknowledged writes the
      // backups hold in memory); the new incarnation joins while the old lease still lives.
      await c.killNode(before.primary);
      await c.restartNode(before.primary, 30_000, { afterLeaseExpiry: false });
      await c.waitForRegions(
        (map) =>
          map.find((r) => r.regionId === 'r0')!.epoch > before.epoch &&
          c.session(r0(c).primary, 'r0') !== undefined,
        30_000,
      );
      expect(r0(c).primary).not.toBe(before.primary);
      await writes(200);
      for (const [key, v] of acked) expect((await client.get(key))?.toString()).toBe(v);
      await waitWhole(c);
      await expectReplicasEqual(c);
    } finally {
      await c.close();
    }
  },
);

test('a new epoch whose primary dies before taking over its backups: the promotion takes the tail from the epoch before', async () => {
  const c = await faultCluster({ store: { segmentBytes: 64 * 1024, l0Bytes: 256 * 1024, growthFactor: 4 } });
  try {
    const client = c.client({ operationTimeoutMs: 20_000 });
    const acked = new Map<string, string>();
    for (let i = 0; i < 300; i++) {
      const key = `0${i % 3}-key-${i}`;
      await client.put(key, `v${i}`);
      acked.set(key, `v${i}`);
    }
    const before = r0(c);
    const [primary, kept, reported] = [before.primary, before.backups[1]!, before.backups[0]!];
    // The acknowledged tail of the active segment is only in the backups' buffers of this epoch.
    expect(c.session(primary, 'r0')!.store.logSegments().at(-1)!.usedBytes).toBeNull();
    // From now on the primary's connections to `kept` carry only the OpenBackup rendezvous: its
    // next open registers fresh buffers there but never takes over (no one-sided write lands, no
    // seal arrives).
    c.fabric.watchConnections((connection) => {
      if (connection.localNodeId !== primary || connection.peerNodeId !== kept) return;
      const silent = connection as unknown as {
        send: (bytes: Uint8Array) => void;
        write: () => Promise<void>;
      };
      const send = silent.send.bind(connection);
      let sent = 0;
      silent.send = (bytes) => {
        if (sent++ === 0) send(bytes);
      };
      silent.write = () => new Promise<void>(() => {});
    });
    // A report moves r0 to the next epoch (without `reported`): the primary reopens and hangs.
    await c.coordinator.client().reportSuspect({
      regionId: 'r0',
      epoch: before.epoch,
      suspectNodeId: reported,
      reporterNodeId: primary,
      reason: 'test',
    });
    // (waitForRegions also waits for every region to be served: r0 is not, by design.)
    for (let t = 0; t < 400 && r0(c).epoch === before.epoch; t++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(r0(c).epoch).toBe(before.epoch + 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(c.session(primary, 'r0')).toBeUndefined(); // never served the new epoch
    await c.killNode(primary);
    await c.waitForRegions((map) => {
      const r = map.find((x) => x.regionId === 'r0')!;
      return r.primary === kept && c.session(kept, 'r0') !== undefined;
    }, 30_000);
    for (const [key, v] of acked) expect((await client.get(key))?.toString()).toBe(v);
  } finally {
    await c.close();
  }
});
