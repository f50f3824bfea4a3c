import type { Command } from 'commander';
import { ConfigError, consumerProblems, loadConfig } from '../config/config.ts';
import { buildConsumerApp } from '../app.ts';
import { isTxstreamError } from '../errors.ts';
import { asCliError, CliError } from './errors.ts';
import { releaseEarlySignals } from './signals.ts';
import { exitIfLingering } from './lingering.ts';

// `txstream consume`: the warehouse consumer group. Runs until SIGTERM/SIGINT, then stops fetching,
// writes and commits what it holds, leaves the group and exits 0.

interface ConsumeOptions {
  group: string;
  topicPrefix: string;
}

export function registerConsume(program: Command): void {
  program
    .command('consume')
    .description('stream the fact topics into BigQuery (consumer group; Ctrl-C or SIGTERM stops cleanly)')
    .option('--group <id>', 'consumer group id', 'txstream-warehouse')
    .option('--topic-prefix <prefix>', 'prefix of the topic names (as given to txstream init)', '')
    .action(async (opts: ConsumeOptions) => {
      let config;
      try {
        config = loadConfig();
        const problems = consumerProblems(config);
        if (problems.length) throw new ConfigError(problems);
      } catch (err) {
        throw asCliError(err);
      }
      let stop: (why: string) => void = () => undefined;
      let failure: Error | undefined;
      const app = await buildConsumerApp({
        config,
        groupId: opts.group,
        topicPrefix: opts.topicPrefix,
        onFatal: (err) => {
          failure = err;
          stop('fatal error');
        },
      });
      const stopped = new Promise<void>((resolve) => {
        let once = false;
        stop = (why: string) => {
          if (once) return;
          once = true;
          app.logger.info({ why }, 'stopping: flushing and committing before leaving the group');
          app
            .stop()
            .catch((err: unknown) => {
              // Exit non-zero: what was not committed is read again, and a supervisor should see it.
              failure ??= err as Error;
              app.logger.error({ err: (err as Error).message }, 'unclean stop');
            })
            .finally(resolve);
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
      // Stopped before it started (a supervisor's SIGTERM while the modules loaded): nothing was taken,
      // so nothing is left to commit; a clean stop, exit 0.
      const early = releaseEarlySignals();
      if (early) {
        stop(`${early} before the consumer started`);
        await stopped;
        return;
      }
      try {
        await app.start();
      } catch (err) {
        // A refused certificate or password, an unreachable broker: one line, not a stack trace.
        await app.stop().catch(() => undefined);
        if (isTxstreamError(err)) throw new CliError(`cannot start: ${err.code}: ${err.message}`, 1);
        const cause = (err as { cause?: { message?: string } }).cause?.message;
        const message = (err as Error).message;
        // kafkajs' words for a topic that does not exist, which says nothing about what to do.
        const hint = /does not host this topic-partition|unknown topic/i.test(`${message} ${cause ?? ''}`)
          ? ` (do the topics ${app.topics.join(', ')} exist? \`txstream init\` creates them, with the same --topic-prefix)`
          : '';
        throw new CliError(
          `cannot start: ${message}${cause && cause !== message ? `: ${cause}` : ''}${hint}`,
          1,
        );
      }
      app.logger.info({ group: opts.group, topics: app.topics }, 'consuming');
      await stopped;
      app.logger.info({}, 'stopped');
      exitIfLingering(app.logger);
      // Exit non-zero so a supervisor (Kubernetes, systemd) shows the failure and restarts it.
      if (failure) throw new CliError(`stopped on a fatal error: ${failure.message}`, 1);
    });
}
