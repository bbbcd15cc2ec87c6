import {
  CorruptSegmentError,
  KeyTooLargeError,
  StoreClosedError,
  TalosError,
  ValueTooLargeError,
} from '../../src/errors.js';

describe('typed errors', () => {
  it('carry a stable code and are TalosErrors', () => {
    const cases: [TalosError, string][] = [
      [new KeyTooLargeError(2000, 1024), 'KEY_TOO_LARGE'],
      [new ValueTooLargeError(5, 4), 'VALUE_TOO_LARGE'],
      [new CorruptSegmentError('log@0', 'crc mismatch'), 'CORRUPT_SEGMENT'],
      [new StoreClosedError(), 'STORE_CLOSED'],
    ];
    for (const [err, code] of cases) {
      expect(err).toBeInstanceOf(TalosError);
      expect(err).toBeInstanceOf(Error);
      expect(err.code).toBe(code);
      expect(err.name).toBe(err.constructor.name);
    }
  });

  it('name the offending sizes and segments in their messages', () => {
    expect(new KeyTooLargeError(2000, 1024).message).toContain('2000');
    expect(new CorruptSegmentError('index@4096', 'block 3 crc mismatch').message).toContain('index@4096');
  });
});
