/**
 * The `talos` command line. Subcommands are added as the layers beneath them land.
 */
import { Command } from 'commander';
import { runDemo } from './demo.js';

const program = new Command();
program
  .name('talos')
  .description('Talos: replicated LSM key-value store with index shipping')
  .version('0.1.0');

program
  .command('demo')
  .description('run the engine demo: load keys, read them back, crash-free reopen, print stats')
  .option('--quick', 'a short run')
  .option('--json', 'print one JSON summary object as the last line')
  .option('--dir <path>', 'data directory (default: a fresh temporary directory)')
  .option('--keys <n>', 'number of keys to write', (v) => Number.parseInt(v, 10))
  .action(async (options: { quick?: boolean; json?: boolean; dir?: string; keys?: number }) => {
    await runDemo(options);
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`talos: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
