/**
 * L0's key filter (src/engine/key-filter.ts): never a false negative — whatever the keys, however
 * often it grew — and few false positives (about 1 % by design; asserted under 3 %).
 */
import * as fc from 'fast-check';
import { KeyFilter } from '../../src/engine/key-filter.js';
import { propertyParams } from '../support/property.js';

describe('KeyFilter', () => {
  test('every added key may be contained, across growth (property)', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ unit: 'binary', maxLength: 40 }), { maxLength: 3000 }),
        (keys) => {
          const held: string[] = [];
          const filter = new KeyFilter(() => held, 16); // tiny: it grows several times
          for (const key of keys) {
            held.push(key);
            filter.add(key);
          }
          for (const key of keys) expect(filter.mayContain(key)).toBe(true);
        },
      ),
      propertyParams('key filter', 40),
    );
  });

  test('false positives stay rare, grown or sized up front', () => {
    for (const capacity of [16, 200_000]) {
      const held: string[] = [];
      const filter = new KeyFilter(() => held, capacity);
      for (let i = 0; i < 100_000; i++) {
        const key = `user${String(i * 7919).padStart(12, '0')}`;
        held.push(key);
        filter.add(key);
      }
      let falsePositives = 0;
      for (let i = 0; i < 100_000; i++) if (filter.mayContain(`miss${i}`)) falsePositives++;
      expect(falsePositives / 100_000).toBeLessThan(0.03);
    }
  });
});
