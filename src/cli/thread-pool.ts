/**
 * Sizes libuv's thread pool before anything uses it (this module is the CLI's first import, and
 * ES modules run in import order). Every disk call of a node runs there (FileDevice: writes,
 * fdatasyncs, manifest appends and replaces), beside DNS lookups and zlib; with the default four
 * threads, four slow fdatasyncs of four stores would hold every other file call of the process.
 * Eight by default; an explicit UV_THREADPOOL_SIZE wins.
 */
export const THREAD_POOL_SIZE = 8;

process.env.UV_THREADPOOL_SIZE ??= String(THREAD_POOL_SIZE);
