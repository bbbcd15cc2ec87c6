/**
 * The controller's reconfiguration rule (PROTOCOL §6), as a pure function: which backups leave a
 * configuration, and when nothing is due.
 */
import type { RegionConfig, SuspectReport } from '../../coordination/types.js';
import { planReconfiguration } from '../../src/actors/controller.js';

const config: RegionConfig = {
  regionId: 'r0',
  minKey: '',
  maxKey: '55',
  epoch: 4,
  primary: 'n1',
  backups: ['n2', 'n3'],
  state: 'active',
};
const report = (suspectNodeId: string, epoch = 4, regionId = 'r0'): SuspectReport => ({
  regionId,
  epoch,
  suspectNodeId,
  reporterNodeId: 'n1',
  reason: 'write failed',
});
const all = new Set(['n1', 'n2', 'n3']);

test('nothing is due while every replica is a live member and unsuspected', () => {
  expect(planReconfiguration(config, all, [])).toBeUndefined();
});

test('a backup whose lease is gone is removed at epoch + 1', () => {
  expect(planReconfiguration(config, new Set(['n1', 'n2']), [])).toEqual({
    ...config,
    epoch: 5,
    backups: ['n2'],
  });
});

test('a backup suspected at the current epoch is removed, even while its lease lives', () => {
  expect(planReconfiguration(config, all, [report('n3')])).toEqual({ ...config, epoch: 5, backups: ['n2'] });
});

test('reports of an older epoch or another region are stale and ignored', () => {
  expect(planReconfiguration(config, all, [report('n3', 3), report('n2', 4, 'r1')])).toBeUndefined();
});

test('joining backups that are gone leave too; the last backup can go (the primary acknowledges alone)', () => {
  const withJoining = { ...config, joining: ['n4'] };
  expect(planReconfiguration(withJoining, new Set(['n1']), [])).toEqual({
    ...config,
    epoch: 5,
    backups: [],
    joining: [],
  });
});

test('a primary whose lease is gone is replaced by its first live backup (promotion)', () => {
  expect(planReconfiguration(config, new Set(['n2', 'n3']), [])).toEqual({
    ...config,
    epoch: 5,
    primary: 'n2',
    backups: ['n3'],
  });
  // n2 suspected: n3 is promoted; nobody left alive: the region waits.
  expect(planReconfiguration(config, new Set(['n2', 'n3']), [report('n2')])).toMatchObject({
    primary: 'n3',
    backups: [],
  });
  expect(planReconfiguration(config, new Set(['n4']), [])).toBeUndefined();
});

test('a suspected primary whose lease lives is not replaced', () => {
  expect(planReconfiguration(config, all, [report('n1')])).toBeUndefined();
});

test('a region short of copies gains live members holding none, in id order; suspects are not added', () => {
  const short = { ...config, backups: ['n2'] };
  const live = new Set(['n1', 'n2', 'n3', 'n4']);
  expect(planReconfiguration(short, live, [], 3)).toEqual({ ...config, epoch: 5, backups: ['n2', 'n3'] });
  expect(planReconfiguration(short, live, [report('n3')], 3)).toEqual({
    ...config,
    epoch: 5,
    backups: ['n2', 'n4'],
  });
  // Full: nothing to add.
  expect(planReconfiguration(config, live, [], 3)).toBeUndefined();
});

test('a gone backup is replaced by a free member in the same step', () => {
  expect(planReconfiguration(config, new Set(['n1', 'n2', 'n4']), [], 3)).toEqual({
    ...config,
    epoch: 5,
    backups: ['n2', 'n4'],
  });
});

test('a backup reported at the current epoch that rejoined since gets a new epoch with it back in', () => {
  // n3 failed, restarted and joined again before the controller acted: it is trusted again (not
  // distrusted), but the primary that reported it waits for a new epoch to re-sync it.
  expect(planReconfiguration(config, all, [report('n3')], 3, new Set())).toEqual({
    ...config,
    epoch: 5,
    backups: ['n2', 'n3'],
  });
});
