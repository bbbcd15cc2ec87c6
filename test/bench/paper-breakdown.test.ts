/**
 * The pure parts of `bench:paper --breakdown` (bench/paper/breakdown.ts): the RubbleDB-form CPU
 * phases derived from the nodes' role accounting, the ratios between deployments, the targets and
 * the tables. The benchmark itself (node processes, etcd) is not run here.
 */
import {
  type BreakdownRun,
  breakdownTargets,
  cpuPhases,
  cpuPhaseTable,
  deploymentRatios,
  deploymentTable,
  jsThreadTable,
  PHASES,
  processRolePhases,
  processRoleTable,
} from '../../bench/paper/breakdown.js';
import { BREAKDOWN_MATRIX } from '../../bench/paper/breakdown-run.js';
import { CODE_PATHS, type CodePath, codePathMs } from '../../bench/paper/profile-summary.js';

function run(over: Partial<BreakdownRun>): BreakdownRun {
  return {
    kind: 'processes',
    nodes: 3,
    replicas: 3,
    mode: 'send-index',
    ops: 1000,
    opsPerSec: 1000,
    p50Us: 1000,
    p99Us: 4000,
    nodeCpuUsPerOp: 100,
    clientCpuUsPerOp: 20,
    eventLoop: [{ nodeId: 'n1', p99Ms: 3, maxMs: 9 }],
    cpu: null,
    jsThreadMs: null,
    ...over,
  };
}

test('Send-Index: shipped index segments and installs are backup compaction, seals are request handling', () => {
  const c = cpuPhases({
    process: 10,
    primaryRole: 2,
    backupRole: 3,
    backupByMessage: { SegmentSealed: 1, OpenBackup: 0.25, IndexSegment: 1.5, CompactionCommit: 0.25 },
  });
  expect(c).toEqual({
    primaryRequest: 5,
    primaryCompaction: 2,
    backupRequest: 1.25,
    backupCompaction: 1.75,
    total: 10,
    attributedShare: 0.5,
  });
  expect(PHASES.reduce((sum, p) => sum + c[p], 0)).toBeCloseTo(c.total, 9);
});

test("Build-Index: the backup role's CPU outside message handlers (own flushes + compactions) is backup compaction", () => {
  const c = cpuPhases({
    process: 12,
    primaryRole: 2,
    backupRole: 6,
    backupByMessage: { SegmentSealed: 2.5, InstallLevels: 0.5 },
  });
  expect(c.backupRequest).toBe(2.5);
  expect(c.backupCompaction).toBe(3.5); // 6 − 2.5 − 0.5 own work + 0.5 install
  expect(c.primaryRequest).toBe(4);
  expect(PHASES.reduce((sum, p) => sum + c[p], 0)).toBeCloseTo(12, 9);
});

test('overlapping accounting is visible: roles over process CPU give a negative remainder and a share above 1', () => {
  const c = cpuPhases({ process: 4, primaryRole: 3, backupRole: 2, backupByMessage: { SegmentSealed: 2 } });
  expect(c.primaryRequest).toBe(-1);
  expect(c.attributedShare).toBe(1.25);
  expect(
    cpuPhases({ process: 0, primaryRole: 0, backupRole: 0, backupByMessage: {} }).attributedShare,
  ).toBeNull();
});

test('deployment ratios: three processes ÷ in-process, RF 3 ÷ RF 1, Build ÷ Send', () => {
  const runs = [
    run({ kind: 'in-process', opsPerSec: 30_000, nodeCpuUsPerOp: 25, clientCpuUsPerOp: null }),
    run({ nodes: 1, replicas: 1, opsPerSec: 12_000, nodeCpuUsPerOp: 50 }),
    run({ opsPerSec: 9000, nodeCpuUsPerOp: 100, clientCpuUsPerOp: 25 }),
    run({ mode: 'build-index', opsPerSec: 8000, nodeCpuUsPerOp: 150 }),
    run({ replicas: 2, nodeCpuUsPerOp: 80 }),
    run({ replicas: 2, mode: 'build-index', nodeCpuUsPerOp: 100 }),
  ];
  expect(deploymentRatios(runs)).toEqual({
    processesVsInProcessThroughput: 0.3,
    processesVsInProcessCpu: 4,
    processesVsInProcessTotalCpu: 5,
    rf3VsRf1Throughput: 0.75,
    rf3VsRf1Cpu: 2,
    buildVsSendCpuRf3: 1.5,
    buildVsSendCpuRf2: 1.25,
  });
  const targets = breakdownTargets(runs, deploymentRatios(runs));
  expect(targets.map((t) => [t.value, t.met])).toEqual([
    [100, false],
    [0.3, false],
    [4, true],
  ]);
});

test('a missing configuration gives null ratios and missed targets, never a number', () => {
  const runs = [run({ nodes: 1, replicas: 1 })];
  const ratios = deploymentRatios(runs);
  expect(Object.values(ratios).every((v) => v === null)).toBe(true);
  expect(breakdownTargets(runs, ratios).every((t) => t.value === null && !t.met)).toBe(true);
  // One-region runs (a process per role) are not today's deployment: never in the ratios.
  const oneRegion = BREAKDOWN_MATRIX.map((c) => run({ ...c, rolePerProcess: true }));
  expect(Object.values(deploymentRatios(oneRegion)).every((v) => v === null)).toBe(true);
});

test('the matrix runs every configuration the ratios need, and RF 2 and RF 3 in both modes', () => {
  const runs = BREAKDOWN_MATRIX.map((c) => run({ ...c, cpu: null }));
  expect(Object.values(deploymentRatios(runs)).every((v) => v !== null)).toBe(true);
  for (const replicas of [2, 3])
    for (const mode of ['send-index', 'build-index'] as const)
      expect(runs.some((r) => r.kind === 'processes' && r.replicas === replicas && r.mode === mode)).toBe(
        true,
      );
});

test('tables: one row per run, node processes only in the CPU table, every row as wide as its header', () => {
  const phases = cpuPhases({ process: 1, primaryRole: 0.5, backupRole: 0, backupByMessage: {} });
  const runs = [run({ kind: 'in-process', clientCpuUsPerOp: null }), run({ cpu: phases })];
  const width = (line: string): number => line.split(' | ').length;
  for (const table of [deploymentTable(runs), cpuPhaseTable(runs)]) {
    for (const line of table) expect(width(line)).toBe(width(table[0]!));
  }
  expect(deploymentTable(runs)).toHaveLength(4);
  const cpu = cpuPhaseTable(runs);
  expect(cpu).toHaveLength(3);
  expect(cpu[2]).toContain('RF 3, 3 processes, send-index | 0.5 | 0.5 | 0 | 0 | 1 | 100 | 0.5 |');
  expect(deploymentTable(runs)[2]).toContain('| – |'); // in-process: its client CPU is in node CPU
});

test('JS-thread samples go to one code path each, the highest-priority talos file on the stack winning', () => {
  const src = (file: string): string => `file:///w/dist/src/${file}.js`;
  const frames: [number, string, string, number[]][] = [
    [1, '(root)', '', [2, 5, 7, 8, 9, 10, 11]],
    [2, 'onData', src('fabric/tcp'), [3, 12, 14]],
    [3, 'handle', src('replication/backup-region'), [4]],
    [4, 'append', src('engine/value-log'), []], // a backup persisting through the write path
    [5, 'mergeInto', src('engine/compaction'), [6]],
    [6, 'ship', src('replication/region-replicator'), []], // a compaction shipping its index
    [7, '(garbage collector)', '', []],
    [8, '(idle)', '', []],
    [9, 'load', 'node:internal/modules/esm/loader', []],
    [10, 'emit', 'node:events', []],
    [11, 'put', src('server/client-server'), [13]],
    [12, 'copy', src('fabric/frames'), []], // only fabric frames: the receive of a one-sided write
    [13, 'send', src('fabric/tcp'), []], // a put shipping log bytes
    [14, 'commit', src('replication/backup-region'), []], // a backup installing a compaction
  ];
  const profile = {
    nodes: frames.map(([id, functionName, url, children]) => ({
      id,
      callFrame: { functionName, url, lineNumber: 0 },
      children,
    })),
    samples: [4, 6, 7, 8, 9, 10, 12, 13, 4, 14],
    timeDeltas: [1000, 2000, 3000, 50_000, 4000, 5000, 6000, 7000, 1000, 500],
  };
  expect(codePathMs([profile, profile])).toEqual({
    'backup index': 1,
    'backup handlers': 4,
    'flush + compaction': 4,
    'put path': 14,
    shipping: 0,
    'storage I/O': 0,
    fabric: 12,
    'etcd client': 0,
    gc: 6,
    startup: 8,
    other: 10,
  });
});

test('the JS-thread table: profiled runs only, shares of non-idle samples outside start-up', () => {
  const ms = Object.fromEntries(CODE_PATHS.map((p) => [p, 100])) as Record<CodePath, number>;
  expect(jsThreadTable([run({})])).toEqual([]);
  const table = jsThreadTable([run({}), run({ replicas: 2, jsThreadMs: { ...ms, startup: 1000, gc: 500 } })]);
  expect(table).toHaveLength(3);
  // 9 paths × 100 ms + 500 ms of GC outside start-up: GC is 500 / 1400.
  expect(table[2]).toBe(
    '| RF 2, 3 processes, send-index | 7.1 | 7.1 | 7.1 | 7.1 | 7.1 | 7.1 | 7.1 | 7.1 | 35.7 | 7.1 | 1400 |',
  );
});

test('one region: each process is its role, its /proc CPU split by its profile; mixed roles give null', () => {
  const zero = Object.fromEntries(CODE_PATHS.map((p) => [p, 0])) as Record<CodePath, number>;
  const primary = {
    nodeId: 'n1',
    cpuSeconds: 4,
    primary: true,
    backup: false,
    jsThreadMs: {
      ...zero,
      'flush + compaction': 100,
      'put path': 250,
      gc: 50,
      startup: 900,
      'backup index': 0,
    },
  };
  const backup = {
    nodeId: 'n2',
    cpuSeconds: 2,
    primary: false,
    backup: true,
    jsThreadMs: { ...zero, 'backup index': 30, 'flush + compaction': 20, 'backup handlers': 150 },
  };
  const idle = { nodeId: 'n3', cpuSeconds: 0.5, primary: false, backup: false, jsThreadMs: zero };
  expect(processRolePhases([primary, backup, idle])).toEqual({
    primaryRequest: 3, // 4 s × 300 / 400 (start-up left out)
    primaryCompaction: 1,
    backupRequest: 1.5, // 2 s × 150 / 200
    backupCompaction: 0.5,
    total: 6,
    attributedShare: null,
  });
  expect(processRolePhases([{ ...primary, backup: true }, backup])).toBeNull();
  expect(processRoleTable([run({ rolePerProcess: true, processCpu: processRolePhases([primary]) })])[2]).toBe(
    '| RF 3, 3 processes, 1 region, send-index | 3 | 1 | 0 | 0 | 4 | 1000 | 100 |',
  );
});
