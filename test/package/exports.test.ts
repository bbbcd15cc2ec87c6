/**
 * The package's entry point as a user imports it: `from 'talos-kv'`, the package name, not a
 * relative path. jest maps the name to src/index.ts (jest.config.cjs) and tsc resolves it through
 * package.json `exports` (a self-reference), so a missing export fails both the type-check and
 * this test. The client, its option types and its error types must be there.
 */

import * as talos from 'talos-kv';
import {
  OperationTimeoutError,
  OutcomeUnknownError,
  TalosClient,
  type TalosClientOptions,
  type TalosClientTlsOptions,
  TalosError,
  UnauthenticatedError,
  WrongPrimaryError,
} from 'talos-kv';

test('TalosClient, its options and its errors are exported from talos-kv', () => {
  expect(typeof TalosClient.connect).toBe('function');
  const tls: TalosClientTlsOptions = { ca: 'pem' };
  const options: TalosClientOptions = { etcd: ['http://127.0.0.1:2379'], tls, token: 't' };
  expect(options.token).toBe('t');
  const errors: [TalosError, string][] = [
    [new OperationTimeoutError('put of "k"', 100, 3), 'OPERATION_TIMEOUT'],
    [new UnauthenticatedError('no token'), 'UNAUTHENTICATED'],
  ];
  for (const [err, code] of errors) {
    expect(err).toBeInstanceOf(TalosError);
    expect(err.code).toBe(code);
  }
  expect(new OutcomeUnknownError('x').code).toBe('OUTCOME_UNKNOWN');
  expect(new WrongPrimaryError('r0', 'n1').code).toBe('WRONG_PRIMARY');
  // The names a user of the package reaches for.
  for (const name of [
    'TalosClient',
    'createLocalCluster',
    'LocalCluster',
    'EtcdCoordinator',
    'Store',
    'TcpFabric',
  ])
    expect(Object.keys(talos)).toContain(name);
});

test('talos-kv/level exports the abstract-level adapters', async () => {
  const level = await import('talos-kv/level');
  expect(typeof level.TalosLevel).toBe('function');
  const { AbstractLevel } = await import('abstract-level');
  expect(level.TalosLevel.prototype).toBeInstanceOf(AbstractLevel);
});
