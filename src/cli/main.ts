/**
 * The `talos` command line. Subcommands are added as the layers beneath them land.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { type DemoOptions, runDemo } from './demo.js';

const program = new Command();
program
  .name('talos')
  .description('Talos: replicated LSM key-value store with index shipping')
  .version('0.1.0');

const integer = (v: string): number => {
  const n = Number.parseInt(v, 10);
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new InvalidArgumentError(`expected a positive integer, got ${v}`);
  return n;
};

program
  .command('demo', { isDefault: true })
  .description(
    'run a 3-node replicated cluster in this process (real files), load a YCSB-style workload, verify every acknowledged write on primaries and backups',
  )
  .option('--quick', 'a short run (under 30 s)')
  .option('--json', 'print one JSON summary object as the last line')
  .option('--compare', 'run the other replication mode too and print both side by side')
  .addOption(
    new Option('--mode <mode>', 'replication mode')
      .choices(['send-index', 'build-index'])
      .default('send-index'),
  )
  .option('--dir <path>', 'parent data directory, kept afterwards (default: a temporary one, removed)')
  .option('--keys <n>', 'number of keys to load', integer)
  .option('--concurrency <n>', 'operations in flight', integer)
  .option('--value-bytes <n>', 'value size in bytes', integer)
  .option('--no-failover', 'do not kill and bring back a primary mid-load')
  .option('--lease-ttl-ms <n>', 'lease TTL of the nodes (how long a dead primary holds its region)', integer)
  .action(async (options: DemoOptions) => {
    await runDemo(options);
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`talos: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
