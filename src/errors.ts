/**
 * Typed errors. Every failure a caller can act on is a `TalosError` subclass with a stable `code`,
 * so callers branch on `err.code` (or `instanceof`) instead of parsing messages.
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

/** An option or argument outside its domain. */
export class InvalidArgumentError extends TalosError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
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
