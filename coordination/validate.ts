/**
 * Argument checks and canonical copies shared by the coordinator implementations (embedded and
 * etcd): both must refuse the same inputs with the same typed errors, and store and hand out the
 * same canonical shapes (only known fields, undefined optionals dropped — a JSON round trip).
 */
import { InvalidArgumentError, InvalidConfigurationError } from '../src/errors.js';
import { compareKeys } from '../src/keys.js';
import type { BackupProgress, NodeInfo, RegionConfig, RegionEntry, SuspectReport } from './types.js';

export const nonEmptyString = (v: unknown): v is string => typeof v === 'string' && v.length > 0;

export function copyNodeInfo(info: NodeInfo): NodeInfo {
  const out: NodeInfo = { nodeId: info.nodeId, fabricAddress: info.fabricAddress };
  if (info.clientAddress !== undefined) out.clientAddress = info.clientAddress;
  if (info.metricsAddress !== undefined) out.metricsAddress = info.metricsAddress;
  if (info.joinedRevision !== undefined) out.joinedRevision = info.joinedRevision;
  return out;
}

/** A canonical copy (only the known fields, undefined optionals dropped), as a JSON round trip through etcd. */
export function copyConfig(config: RegionConfig): RegionConfig {
  const out: RegionConfig = {
    regionId: config.regionId,
    minKey: config.minKey,
    epoch: config.epoch,
    primary: config.primary,
    backups: [...config.backups],
    state: config.state,
  };
  if (config.maxKey !== undefined) out.maxKey = config.maxKey;
  if (config.joining !== undefined) out.joining = [...config.joining];
  return out;
}

export const copyEntry = (entry: RegionEntry): RegionEntry => ({
  config: copyConfig(entry.config),
  revision: entry.revision,
});

export const copyReport = (r: SuspectReport): SuspectReport => ({
  regionId: r.regionId,
  epoch: r.epoch,
  suspectNodeId: r.suspectNodeId,
  reporterNodeId: r.reporterNodeId,
  reason: r.reason,
  ...(r.kind === undefined ? {} : { kind: r.kind }),
});

/** The shape rules of PROTOCOL §1 that do not depend on the current entry. */
export function validateRegionConfig(next: RegionConfig): void {
  const bad = (why: string): never => {
    throw new InvalidConfigurationError(`region ${String(next?.regionId)}: ${why}`);
  };
  if (typeof next !== 'object' || next === null) bad('configuration must be an object');
  if (!nonEmptyString(next.regionId)) bad('regionId must be a non-empty string');
  if (!Number.isSafeInteger(next.epoch) || next.epoch < 1)
    bad(`epoch must be an integer ≥ 1, got ${next.epoch}`);
  if (typeof next.minKey !== 'string') bad('minKey must be a string');
  if (next.maxKey !== undefined) {
    if (typeof next.maxKey !== 'string') bad('maxKey must be a string or undefined');
    if (!(compareKeys(next.minKey, next.maxKey) < 0))
      bad(`minKey must sort before maxKey (${next.minKey} ≥ ${next.maxKey})`);
  }
  if (!nonEmptyString(next.primary)) bad('primary must be a non-empty node id');
  if (!Array.isArray(next.backups) || !next.backups.every(nonEmptyString)) {
    bad('backups must be an array of node ids');
  }
  if (new Set(next.backups).size !== next.backups.length) bad(`duplicate backups ${next.backups.join(',')}`);
  if (next.backups.includes(next.primary)) bad(`primary ${next.primary} is also listed as a backup`);
  if (next.state !== 'active' && next.state !== 'reconfiguring') bad(`unknown state ${String(next.state)}`);
  if (next.joining !== undefined) {
    if (!Array.isArray(next.joining) || !next.joining.every(nonEmptyString)) {
      bad('joining must be an array of node ids');
    }
    if (new Set(next.joining).size !== next.joining.length) bad('duplicate joining backups');
    for (const j of next.joining) {
      if (next.backups.includes(j) || j === next.primary) bad(`joining ${j} already holds a copy`);
    }
  }
}

export function validateNodeInfo(member: NodeInfo): void {
  if (typeof member !== 'object' || member === null)
    throw new InvalidArgumentError('member must be an object');
  if (!nonEmptyString(member.nodeId))
    throw new InvalidArgumentError('member.nodeId must be a non-empty string');
  if (typeof member.fabricAddress !== 'string') {
    throw new InvalidArgumentError('member.fabricAddress must be a string');
  }
  if (member.clientAddress !== undefined && typeof member.clientAddress !== 'string') {
    throw new InvalidArgumentError('member.clientAddress must be a string or undefined');
  }
  if (member.metricsAddress !== undefined && typeof member.metricsAddress !== 'string') {
    throw new InvalidArgumentError('member.metricsAddress must be a string or undefined');
  }
}

export function validateReport(report: SuspectReport): void {
  if (typeof report !== 'object' || report === null)
    throw new InvalidArgumentError('report must be an object');
  for (const field of ['regionId', 'suspectNodeId', 'reporterNodeId'] as const) {
    if (!nonEmptyString(report[field]))
      throw new InvalidArgumentError(`report.${field} must be a non-empty string`);
  }
  if (!Number.isSafeInteger(report.epoch) || report.epoch < 0) {
    throw new InvalidArgumentError(`report.epoch must be a non-negative integer, got ${report.epoch}`);
  }
  if (typeof report.reason !== 'string') throw new InvalidArgumentError('report.reason must be a string');
  if (report.kind !== undefined && report.kind !== 'suspect' && report.kind !== 'caught-up') {
    throw new InvalidArgumentError(
      `report.kind must be 'suspect' or 'caught-up', got ${String(report.kind)}`,
    );
  }
}

export function validateProgress(progress: BackupProgress): void {
  if (typeof progress !== 'object' || progress === null)
    throw new InvalidArgumentError('progress must be an object');
  for (const field of ['regionId', 'nodeId'] as const) {
    if (!nonEmptyString(progress[field]))
      throw new InvalidArgumentError(`progress.${field} must be a non-empty string`);
  }
  for (const field of ['epoch', 'usedBytes'] as const) {
    if (!Number.isSafeInteger(progress[field]) || progress[field] < 0)
      throw new InvalidArgumentError(`progress.${field} must be a non-negative integer`);
  }
  if (!Number.isSafeInteger(progress.seq) || progress.seq < -1)
    throw new InvalidArgumentError('progress.seq must be an integer ≥ −1');
}

export const copyProgress = (p: BackupProgress): BackupProgress => ({
  regionId: p.regionId,
  nodeId: p.nodeId,
  epoch: p.epoch,
  seq: p.seq,
  usedBytes: p.usedBytes,
});
