import { Command, CommanderError } from 'commander';
import { releaseEarlySignals } from './signals.ts';
import { registerAlerts } from './alerts.ts';
import { registerDemo } from './demo.ts';
import { registerInit } from './init.ts';
import { registerConsume } from './consume.ts';
import { registerProduce } from './produce.ts';
import { registerQuery } from './query.ts';
import { registerSchedule } from './schedule.ts';
import { registerStack } from './stack.ts';
import { registerViews } from './views.ts';
import { CliError } from './errors.ts';

export function buildProgram(): Command {
  const program = new Command('txstream')
    .description('Banking transactions and RPA job runs from Kafka into BigQuery, with schedules and alerts.')
    .showHelpAfterError()
    .exitOverride();
  registerStack(program);
  registerProduce(program);
  registerConsume(program);
  registerQuery(program);
  registerDemo(program);
  registerInit(program);
  registerSchedule(program);
  registerViews(program);
  registerAlerts(program);
  return program;
}

/** Runs the CLI and returns the process exit code; expected failures print one clear message. */
export async function main(argv: string[]): Promise<number> {
  // consume, schedule and alerts forward take over the signals kept since start-up (they stop cleanly
  // on one that came early); every other command gives them back to Node at once, and one that
  // already came ends the process as it would have.
  const [command, sub] = argv.slice(2);
  const keepsSignals =
    command === 'consume' || command === 'schedule' || (command === 'alerts' && sub === 'forward');
  if (!keepsSignals) {
    const early = releaseEarlySignals();
    if (early) process.kill(process.pid, early);
  }
  try {
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    // Commander has already printed its message and the usage. Its errors all carry exit code 1, but
    // they are bad usage (missing argument, unknown option, invalid choice), which is 2 here; help and
    // --version keep their 0.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof CliError) {
      process.stderr.write(`txstream: ${err.message}\n`);
      return err.exitCode;
    }
    process.stderr.write(`txstream: unexpected error: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv);
}
