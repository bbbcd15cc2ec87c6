import { OutcomeLedger } from '../../src/cluster/outcome-ledger.js';

describe('OutcomeLedger', () => {
  test('an acknowledged write makes only its value acceptable', () => {
    const ledger = new OutcomeLedger();
    ledger.ack('k', 'v1');
    ledger.ack('k', 'v2');
    expect(ledger.accepts('k', 'v2')).toBe(true);
    expect(ledger.accepts('k', 'v1')).toBe(false);
    expect(ledger.accepts('k', undefined)).toBe(false);
    expect([...ledger.ackedKeys]).toEqual(['k']);
  });

  test('an unknown outcome keeps the last acknowledged value acceptable, or absence when none', () => {
    const ledger = new OutcomeLedger();
    ledger.ack('a', 'v1');
    ledger.unknown('a', 'v2');
    expect(ledger.accepts('a', 'v1')).toBe(true);
    expect(ledger.accepts('a', 'v2')).toBe(true);
    expect(ledger.accepts('a', 'v3')).toBe(false);
    ledger.unknown('b', 'x');
    expect(ledger.accepts('b', undefined)).toBe(true);
    expect(ledger.accepts('b', 'x')).toBe(true);
    expect(ledger.ackedKeys.has('b')).toBe(false);
    expect(ledger.unknownOutcomes).toBe(2);
    expect(ledger.keys().sort()).toEqual(['a', 'b']);
  });

  test('a key never written must be absent', () => {
    const ledger = new OutcomeLedger();
    expect(ledger.accepts('none', undefined)).toBe(true);
    expect(ledger.accepts('none', 'v')).toBe(false);
  });
});
