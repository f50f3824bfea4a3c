import type { Command } from 'commander';
import { buildForwarderApp, routesFromRules } from '../alerts/forward.ts';
import { loadRules, RulesError } from '../alerts/rules.ts';
import { loadConfig } from '../config/config.ts';
import { asCliError, CliError } from './errors.ts';
import { exitIfLingering } from './lingering.ts';
import { releaseEarlySignals } from './signals.ts';

// `txstream alerts forward`: the consumer group that delivers alerts from txstream.alerts.v1 to Slack,
// PagerDuty and e-mail. Refuses to start on an invalid rules file; runs until SIGTERM/SIGINT, then lets
// the delivery in flight finish, commits, leaves the group and exits 0. A crash kafkajs does not
// restart (a refused ACL or password) stops it with exit 1 and the cause.

interface ForwardOptions {
  group?: string;
  topicPrefix: string;
}

export function registerAlertsForward(alerts: Command): void {
  alerts
    .command('forward')
    .description(
      'deliver alerts from txstream.alerts.v1 to Slack, PagerDuty and e-mail (consumer group; Ctrl-C or SIGTERM stops cleanly)',
    )
    .option('--group <id>', 'consumer group id (default: ALERTS_FORWARDER_GROUP)')
    .option('--topic-prefix <prefix>', 'prefix of the topic names (as given to txstream init)', '')
    .action(async (opts: ForwardOptions) => {
      let config;
      try {
        config = loadConfig();
      } catch (err) {
        throw asCliError(err);
      }
      let rules;
      try {
        rules = await loadRules(config.alerts.rulesFile, {
          defaultRepeatIntervalMs: config.alerts.repeatIntervalMs,
        });
      } catch (err) {
        if (err instanceof RulesError) throw new CliError(`invalid rules file:\n${err.message}`, 1);
        const code = (err as NodeJS.ErrnoException).code;
        if (code) throw new CliError(`cannot read the rules file ${config.alerts.rulesFile} (${code})`, 1);
        throw err;
      }
      let stop: (why: string) => void = () => undefined;
      let fatal: Error | undefined;
      const app = buildForwarderApp({
        config,
        routesFor: routesFromRules(rules.byName, config.alerts.repeatIntervalMs),
        ...(opts.group ? { groupId: opts.group } : {}),
        topicPrefix: opts.topicPrefix,
        onFatal: (err) => {
          fatal ??= err;
          stop('fatal error');
        },
      });
      let failure: Error | undefined;
      const stopped = new Promise<void>((resolve) => {
        let once = false;
        stop = (why: string) => {
          if (once) return;
          once = true;
          app.logger.info({ why }, 'stopping: finishing the delivery in flight, then leaving the group');
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
      // A signal that came while the modules loaded: stop before starting (nothing to finish), exit 0.
      if (releaseEarlySignals()) return;
      if (app.channels.length === 0)
        app.logger.warn({}, 'no channel is configured: every routed alert will go to the DLQ');
      await app.start();
      app.logger.info(
        { topic: app.topic, channels: app.channels, rules: rules.byName.size, file: config.alerts.rulesFile },
        'forwarding alerts',
      );
      await stopped;
      app.logger.info({}, 'stopped');
      exitIfLingering(app.logger);
      // Exit non-zero so a supervisor (Kubernetes, systemd) shows the failure and restarts it.
      if (fatal) throw new CliError(`stopped on a fatal error: ${fatal.message}`, 1);
      if (failure) throw new CliError(`unclean stop: ${failure.message}`, 1);
    });
}
