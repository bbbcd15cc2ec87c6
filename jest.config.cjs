// Jest runs the TypeScript sources through swc (CommonJS output); `tsc --noEmit` type-checks
// separately (npm run typecheck). ESM-style `.js` import suffixes are mapped back to the sources.
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.(t|j)s$': [
      '@swc/jest',
      { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' } },
    ],
  },
  // `talos-kv` (the package's own name, as a user imports it) is its entry point's source:
  // test/package/ imports it that way; tsc resolves the same name through package.json `exports`.
  moduleNameMapper: {
    '^(\\.{1,2}/.*)\\.js$': '$1',
    '^talos-kv$': '<rootDir>/src/index.ts',
    '^talos-kv/level$': '<rootDir>/src/level/index.ts',
  },
  testTimeout: 120000,
  // A test that times out abandons its in-process cluster (timers, leases); exit anyway rather than
  // hang CI. Leaks on passing paths are caught by the afterEach/finally closes in each suite.
  forceExit: true,
  reporters: ['default', '<rootDir>/test/support/summary-reporter.cjs'],
};
