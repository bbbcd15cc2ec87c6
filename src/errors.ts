/**
 * Typed errors. Every failure a caller can act on is a `TalosError` subclass with a stable `code`,
 * so callers branch on `err.code` (or `instanceof`) instead of parsing messages.
 *
 * The contract for writes (put/delete): an error is a **definite failure** only when the write
 * certainly had no effect — it was refused before its record reached the log. Anything that may
 * have been appended ends acknowledged or with `OUTCOME_UNKNOWN`. What a client can see:
 *
 * | code                | class          | when                                                        |
 * | ------------------- | -------------- | ----------------------------------------------------------- |
 * | KEY_TOO_LARGE       | definite       | validation, before the append                               |
 * | VALUE_TOO_LARGE     | definite       | validation, before the append                               |
 * | INVALID_ARGUMENT    | definite       | validation, before the append                               |
 * | BATCH_TOO_LARGE     | definite       | validation: a batch's records exceed one log segment         |
 * | CROSS_REGION_BATCH  | definite       | validation: a batch's keys lie in more than one region       |
 * | SNAPSHOT_RELEASED   | (reads)        | a read through a snapshot its owner already released         |
 * | WRONG_PRIMARY       | definite       | the node does not serve the region (or its lease ran out)   |
 * | UNKNOWN_REGION      | definite       | no region covers the key                                     |
 * | STORE_CLOSED        | definite       | the store was closed or closing before the append            |
 * | STORE_FAILED        | definite       | the store had fail-stopped before the append                 |
 * | STALE_EPOCH         | definite       | refused by epoch before anything was appended               |
 * | UNREACHABLE         | definite       | the request never left (no connection to the node)          |
 * | OPERATION_TIMEOUT   | definite       | the budget ran out and no attempt may have been applied     |
 * | UNAUTHENTICATED     | definite       | credentials refused; nothing was served                     |
 * | DEVICE_LOCKED       | definite       | (opening a store) the directory is open elsewhere           |
 * | DISK_FULL           | definite       | the device refused the write that had to precede the append |
 * | DEVICE_IO           | definite       | the device failed (EIO...) the write that had to precede it |
 * | OUTCOME_UNKNOWN     | unknown        | appended, then replication, sync, the lease or the reply failed |
 *
 * The engine itself rejects a write whose record is in the log as OUTCOME_UNKNOWN (Store's
 * `rejectAppended`), whatever the cause, so no later layer can mistake it for a definite failure.
 * DISK_FULL and DEVICE_IO reach a writer only when the device failed while the store made room for
 * its record (sealing the full segment first); the store has fail-stopped then, and every later
 * write gets STORE_FAILED (its `cause` is the device error) until the node reopens it.
 */
export class TalosError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A key longer than the store's `maxKeyBytes`. Nothing was written. */
export class KeyTooLargeError extends TalosError {
  constructor(
    readonly keyBytes: number,
    readonly maxKeyBytes: number,
  ) {
    super('KEY_TOO_LARGE', `key of ${keyBytes} bytes exceeds maxKeyBytes=${maxKeyBytes}`);
  }
}

/** A value longer than the store's `maxValueBytes` (or than fits a log segment). Nothing was written. */
export class ValueTooLargeError extends TalosError {
  constructor(
    readonly valueBytes: number,
    readonly maxValueBytes: number,
  ) {
    super('VALUE_TOO_LARGE', `value of ${valueBytes} bytes exceeds maxValueBytes=${maxValueBytes}`);
  }
}

/** Bytes on a device (or shipped to a backup) failed a checksum or structural check. */
export class CorruptSegmentError extends TalosError {
  constructor(
    readonly segment: string,
    detail: string,
  ) {
    super('CORRUPT_SEGMENT', `corrupt segment ${segment}: ${detail}`);
  }
}

/** The manifest is unreadable: the store cannot know its levels, so it refuses to open. */
export class CorruptManifestError extends TalosError {
  constructor(path: string, detail: string) {
    super('CORRUPT_MANIFEST', `corrupt manifest ${path}: ${detail}`);
  }
}

/** An operation on a store after `close()`. */
export class StoreClosedError extends TalosError {
  constructor() {
    super('STORE_CLOSED', 'the store is closed');
  }
}

/**
 * A device's directory is already held: by an open device of this process (`ownerPid` is our own
 * pid) or by a live other process (its pid, read from the directory's `LOCK` file). Nothing was
 * opened and nothing was locked by the refused call.
 */
export class DeviceLockedError extends TalosError {
  constructor(
    readonly path: string,
    readonly ownerPid: number,
  ) {
    super(
      'DEVICE_LOCKED',
      ownerPid === process.pid
        ? `${path} is already open in this process (pid ${ownerPid})`
        : `${path} is locked by live process ${ownerPid}`,
    );
  }
}

/** A device operation as device errors name it. */
export type DeviceOperation = 'read' | 'write' | 'sync' | 'meta';

/**
 * The device is out of space (ENOSPC, or EDQUOT: the quota is): `operation` on device `device`
 * was refused. A store that sees it fail-stops (nothing after it is acknowledged); the node
 * reopens the store from what it synced once space is back.
 */
export class DiskFullError extends TalosError {
  constructor(
    readonly device: string,
    readonly operation: DeviceOperation,
    readonly errno: string,
    options?: { cause?: unknown },
  ) {
    super('DISK_FULL', `device ${device}: ${operation} failed, no space left (${errno})`, options);
  }
}

/**
 * The device failed an operation (EIO, EROFS, ENXIO...): `operation` on `device` may or may not
 * have reached the medium, and after a failed sync the kernel may have dropped the dirty pages —
 * nothing written since the last good sync can be trusted. A store that sees it fail-stops; the
 * node reopens it from what it synced before.
 */
export class DeviceIoError extends TalosError {
  constructor(
    readonly device: string,
    readonly operation: DeviceOperation,
    readonly errno: string,
    options?: { cause?: unknown },
  ) {
    super('DEVICE_IO', `device ${device}: ${operation} failed with ${errno}`, options);
  }
}

/** errno codes that mean "no space": a DiskFullError. */
const DISK_FULL_CODES = new Set(['ENOSPC', 'EDQUOT']);
/** errno codes that mean the device (or its filesystem) failed: a DeviceIoError. */
const DEVICE_IO_CODES = new Set(['EIO', 'EROFS', 'ENXIO', 'ENODEV', 'EREMOTEIO', 'EUCLEAN']);

/**
 * A Node fs error raised by `operation` on `device`, as a typed device error (DiskFullError,
 * DeviceIoError); any other error is returned unchanged. FileDevice passes every fs failure
 * through this, and the simulator's injected faults are made by it, so the store sees the same
 * classes from real and simulated disks.
 */
export function classifyDeviceError(err: unknown, device: string, operation: DeviceOperation): unknown {
  if (err instanceof DiskFullError || err instanceof DeviceIoError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== 'string') return err;
  if (DISK_FULL_CODES.has(code)) return new DiskFullError(device, operation, code, { cause: err });
  if (DEVICE_IO_CODES.has(code)) return new DeviceIoError(device, operation, code, { cause: err });
  return err;
}

/** Whether `err` is a device failure (DISK_FULL or DEVICE_IO). */
export function isDeviceError(err: unknown): err is DiskFullError | DeviceIoError {
  return err instanceof DiskFullError || err instanceof DeviceIoError;
}

/** An option or argument outside its domain. */
export class InvalidArgumentError extends TalosError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
  }
}

/**
 * An atomic batch whose records do not fit one log segment (a batch is one run of records inside
 * one segment: record.ts). Nothing of it was written.
 */
export class BatchTooLargeError extends TalosError {
  constructor(
    readonly batchBytes: number,
    readonly maxBatchBytes: number,
  ) {
    super(
      'BATCH_TOO_LARGE',
      `batch of ${batchBytes} record bytes exceeds one log segment (${maxBatchBytes})`,
    );
  }
}

/** A batch whose keys lie in more than one region: batches are atomic within a region only. */
export class CrossRegionBatchError extends TalosError {
  constructor(readonly regionIds: string[]) {
    super(
      'CROSS_REGION_BATCH',
      `batch spans regions ${regionIds.join(', ')}; a batch is atomic within one region only`,
    );
  }
}

/** A read through a snapshot (or an iterator) that was already released or closed. */
export class SnapshotReleasedError extends TalosError {
  constructor() {
    super('SNAPSHOT_RELEASED', 'the snapshot was released');
  }
}

/** A value pointer whose segment has no entry in the segment map: a protocol violation, never a guess. */
export class MissingSegmentMappingError extends TalosError {
  constructor(readonly primarySegmentOffset: number) {
    super(
      'MISSING_SEGMENT_MAPPING',
      `no segment-map entry for primary segment at offset ${primarySegmentOffset}`,
    );
  }
}

/** An invariant the code relies on does not hold: a bug, never a user error. */
export class AssertionFailedError extends TalosError {
  constructor(message: string) {
    super('ASSERTION_FAILED', message);
  }
}

// ───────────────────────────── replication, fabric, coordination ─────────────────────────────

/** A message or request carried an epoch lower than the receiver's for that region. */
export class StaleEpochError extends TalosError {
  constructor(
    readonly regionId: string,
    readonly epoch: number,
    readonly currentEpoch: number,
  ) {
    super(
      'STALE_EPOCH',
      `region ${regionId}: epoch ${epoch} is older than the current epoch ${currentEpoch}`,
    );
  }
}

/** The node asked is not the serving primary of the region (the client refreshes its map and retries). */
export class WrongPrimaryError extends TalosError {
  constructor(
    readonly regionId: string,
    readonly nodeId: string,
    readonly primaryHint?: string,
  ) {
    super(
      'WRONG_PRIMARY',
      `node ${nodeId} is not the serving primary of region ${regionId}${primaryHint === undefined ? '' : ` (try ${primaryHint})`}`,
    );
  }
}

/** No region of the map covers the key or id asked for. */
export class UnknownRegionError extends TalosError {
  constructor(readonly what: string) {
    super('UNKNOWN_REGION', `no region for ${what}`);
  }
}

/** A fabric operation failed: the connection is closed or broken, the peer is unreachable, a write was refused. */
export class FabricError extends TalosError {}

/** The connection was closed (locally or by the peer) or broke; pending and later operations fail with this. */
export class ConnectionClosedError extends FabricError {
  constructor(detail: string) {
    super('CONNECTION_CLOSED', `connection closed: ${detail}`);
  }
}

/** No listener at the address, or the address is cut off from us. */
export class UnreachableError extends FabricError {
  constructor(readonly address: string) {
    super('UNREACHABLE', `fabric address ${address} is unreachable`);
  }
}

/** A one-sided write into a region the owner revoked (fencing) or never registered. */
export class RegionRevokedError extends FabricError {
  constructor(readonly regionKey: number) {
    super('REGION_REVOKED', `remote region ${regionKey} is revoked or unknown`);
  }
}

/** A one-sided write outside the remote region's bounds. Nothing was placed. */
export class WriteOutOfBoundsError extends FabricError {
  constructor(offset: number, length: number, regionBytes: number) {
    super(
      'WRITE_OUT_OF_BOUNDS',
      `write of ${length} bytes at ${offset} exceeds a region of ${regionBytes} bytes`,
    );
  }
}

/** The peer refused the connection handshake (bad credentials or a stale epoch). */
export class HandshakeRefusedError extends FabricError {
  constructor(detail: string) {
    super('HANDSHAKE_REFUSED', `handshake refused: ${detail}`);
  }
}

/**
 * The rdma fabric cannot run here: the native addon was not built (libibverbs/librdmacm headers
 * missing at `npm run build:native`) or does not load. Nothing else is affected.
 */
export class RdmaUnavailableError extends FabricError {
  constructor(detail: string, options?: { cause?: unknown }) {
    super(
      'RDMA_UNAVAILABLE',
      `RDMA is unavailable: ${detail} (install libibverbs-dev librdmacm-dev ibverbs-providers, then npm run build:native)`,
      options,
    );
  }
}

/** A verbs or rdma_cm call failed; `verbsCode` is the errno name (ENODEV, EINVAL...), `call` the function. */
export class RdmaVerbsError extends FabricError {
  constructor(
    readonly call: string,
    readonly verbsCode: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('RDMA_VERBS', message, options);
  }
}

/** No RDMA device of that name (or it cannot be opened). */
export class RdmaDeviceError extends RdmaVerbsError {}

/** The coordinator (etcd or embedded) cannot be reached or did not answer within its deadline. */
export class CoordinatorUnavailableError extends TalosError {
  constructor(detail: string, options?: { cause?: unknown }) {
    super('COORDINATOR_UNAVAILABLE', `coordinator unavailable: ${detail}`, options);
  }
}

/** A membership lease expired (or was revoked): the holder must stop acting as a member. */
export class LeaseExpiredError extends TalosError {
  constructor(readonly nodeId: string) {
    super('LEASE_EXPIRED', `the lease of node ${nodeId} expired`);
  }
}

/** A region-map change that does not advance the epoch by exactly one, or otherwise breaks the map's rules. */
export class InvalidConfigurationError extends TalosError {
  constructor(message: string) {
    super('INVALID_CONFIGURATION', message);
  }
}

/** An operation's outcome is unknown (timeout or lost reply after the request may have been applied). */
export class OutcomeUnknownError extends TalosError {
  constructor(detail: string, options?: { cause?: unknown }) {
    super('OUTCOME_UNKNOWN', `outcome unknown: ${detail}`, options);
  }
}

// ───────────────────────────── clients: budgets and credentials ─────────────────────────────

/**
 * A client operation ran out of its budget (`operationTimeoutMs`) while every attempt was refused
 * (WRONG_PRIMARY, STALE_EPOCH) or never left (the node could not be reached). **Definite failure**:
 * no attempt was applied. (A write that left and got no answer is an OutcomeUnknownError instead.)
 * `cause` is the last attempt's error.
 */
export class OperationTimeoutError extends TalosError {
  constructor(
    readonly operation: string,
    readonly operationTimeoutMs: number,
    readonly attemptCount: number,
    options?: { cause?: unknown },
  ) {
    super(
      'OPERATION_TIMEOUT',
      `${operation}: no serving primary within operationTimeoutMs=${operationTimeoutMs} (${attemptCount} attempts${
        options?.cause instanceof Error ? `; last: ${options.cause.message}` : ''
      })`,
      options,
    );
  }
}

/**
 * The connection could not be authenticated: the node requires a bearer token or a client
 * certificate and got none or a wrong one, or a TLS peer's certificate is not trusted (another CA,
 * expired, wrong name). **Definite failure**: the node served no request on that connection.
 */
export class UnauthenticatedError extends TalosError {
  constructor(detail: string, options?: { cause?: unknown }) {
    super('UNAUTHENTICATED', `unauthenticated: ${detail}`, options);
  }
}
