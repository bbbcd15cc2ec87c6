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

test('a region short of copies gains live members holding none as joiners, in id order; suspects are not added', () => {
  const short = { ...config, backups: ['n2'] };
  const live = new Set(['n1', 'n2', 'n3', 'n4']);
  expect(planReconfiguration(short, live, [], 3)).toEqual({
    ...config,
    epoch: 5,
    backups: ['n2'],
    joining: ['n3'],
  });
  expect(planReconfiguration(short, live, [report('n3')], 3)).toEqual({
    ...config,
    epoch: 5,
    backups: ['n2'],
    joining: ['n4'],
  });
  // A joiner counts as a copy on its way: no second one is added while it catches up.
  expect(planReconfiguration({ ...short, joining: ['n3'] }, live, [], 3)).toBeUndefined();
  // Full: nothing to add.
  expect(planReconfiguration(config, live, [], 3)).toBeUndefined();
});

test('a gone backup is replaced in the same step by a free member, which joins (re-synced online)', () => {
  expect(planReconfiguration(config, new Set(['n1', 'n2', 'n4']), [], 3)).toEqual({
    ...config,
    epoch: 5,
    backups: ['n2'],
    joining: ['n4'],
  });
});

test('a joining backup its primary reported caught up at the current epoch becomes a backup', () => {
  const joiningConfig = { ...config, backups: ['n2'], joining: ['n4'] };
  const live = new Set(['n1', 'n2', 'n4']);
  const caughtUp = (epoch: number): SuspectReport => ({ ...report('n4', epoch), kind: 'caught-up' });
  expect(planReconfiguration(joiningConfig, live, [], 3)).toBeUndefined();
  expect(planReconfiguration(joiningConfig, live, [caughtUp(3)], 3)).toBeUndefined(); // stale
  const joined = planReconfiguration(joiningConfig, live, [caughtUp(4)], 3);
  expect(joined).toEqual({ ...config, epoch: 5, backups: ['n2', 'n4'] });
  expect(joined).not.toHaveProperty('joining');
  // A caught-up report does not make the node a suspect: it is not distrusted.
  expect(planReconfiguration({ ...config, backups: ['n2'] }, live, [caughtUp(3)], 3)).toEqual({
    ...config,
    epoch: 5,
    backups: ['n2'],
    joining: ['n4'],
  });
});

test('a joining backup is never promoted; after a promotion it keeps joining the new primary', () => {
  const joiningConfig = { ...config, backups: ['n2'], joining: ['n4'] };
  expect(planReconfiguration(joiningConfig, new Set(['n2', 'n4']), [], 3)).toEqual({
    ...config,
    epoch: 5,
    primary: 'n2',
    backups: [],
    joining: ['n4'],
  });
  // Only the joiner is left alive: no copy holds every acknowledged write, the region waits.
  expect(planReconfiguration(joiningConfig, new Set(['n4']), [], 3)).toBeUndefined();
});

test('promotion picks the live backup with the highest persisted position (ties: configuration order)', () => {
  const three = { ...config, backups: ['n2', 'n3', 'n4'] };
  const live = new Set(['n2', 'n3', 'n4']);
  const promote = (progress: [string, number][]) =>
    planReconfiguration(three, live, [], 4, new Set(), new Map(progress))?.primary;
  expect(promote([])).toBe('n2');
  expect(promote([['n3', 7]])).toBe('n3');
  expect(
    promote([
      ['n2', 5],
      ['n3', 9],
      ['n4', 9],
    ]),
  ).toBe('n3');
  expect(
    promote([
      ['n2', 5],
      ['n4', 6],
    ]),
  ).toBe('n4');
});

test('a backup reported at the current epoch that rejoined since gets a new epoch with it back in', () => {
  // n3 failed, restarted and joined again before the controller acted: it is trusted again (not
  // distrusted), but the primary that reported it waits for a new epoch to re-sync it.
  expect(planReconfiguration(config, all, [report('n3')], 3, new Set())).toEqual({
    ...config,
    epoch: 5,
    backups: ['n2'],
    joining: ['n3'],
  });
});

test('roles of a node that rejoined as a new incarnation are void: its primary role goes to a backup, it may rejoin', () => {
  const live = new Set(['n1', 'n2', 'n3']);
  // n1 restarted (its buffers and unsynced tail are gone) although it is a live member again.
  expect(planReconfiguration(config, live, [], 3, new Set(), new Map(), new Set(['n1']))).toEqual({
    ...config,
    epoch: 5,
    primary: 'n2',
    backups: ['n3'],
    joining: ['n1'],
  });
  // A voided backup leaves and comes straight back as a joining backup.
  expect(planReconfiguration(config, live, [], 3, new Set(), new Map(), new Set(['n3']))).toEqual({
    ...config,
    epoch: 5,
    backups: ['n2'],
    joining: ['n3'],
  });
  // A voided primary with no live backup keeps the region at the next epoch (its disk is all left).
  const alone = { ...config, backups: [] };
  expect(planReconfiguration(alone, new Set(['n1']), [], 1, new Set(), new Map(), new Set(['n1']))).toEqual({
    ...alone,
    epoch: 5,
  });
});
