import type { AlertRule } from '../alerts/model.ts';
import type { RegistryClient } from '../codec/registry.ts';
import type { Config } from '../config/config.ts';
import { kafkaConnection } from '../kafka/client.ts';
import { createTopicCatalogue } from '../topics.ts';
import { createDimensionsJob } from './dimensions.ts';
import type { ScheduledJob } from './job.ts';
import { createMlJobs } from './ml.ts';
import { createMonitorsJob } from './monitors.ts';
import { createQualityJob } from './quality.ts';
import { createViewsJob } from './views.ts';

// The jobs the scheduler knows, in the order `txstream schedule run all` runs them (dimensions first:
// views and checks join facts to them). Each job takes what it needs besides the warehouse here; the
// scheduler works with whatever this list holds.

export interface JobDependencies {
  config: Readonly<Config>;
  registry: RegistryClient;
  /** Prefix of the topic names, as given to `txstream init --topic-prefix`. */
  topicPrefix?: string;
  /**
   * The alert rules, loaded and validated at start-up (`txstream schedule` does, so a bad file stops
   * it); without them the monitors job loads config.alerts.rulesFile at its first run.
   */
  rules?: readonly AlertRule[];
}

export function scheduledJobs(deps: JobDependencies): ScheduledJob[] {
  const catalogue = createTopicCatalogue({ prefix: deps.topicPrefix ?? '' });
  const jobs: ScheduledJob[] = [
    createDimensionsJob({
      connection: kafkaConnection(deps.config, 'dimensions'),
      catalogue,
      registry: deps.registry,
      readTimeoutMs: deps.config.dimensions.readTimeoutMs,
    }),
    createViewsJob(),
    createQualityJob({
      settings: {
        transactionVolume: { maxDeviation: deps.config.quality.maxVolumeDeviation },
        jobFailureRate: {
          maxFailureRate: deps.config.quality.maxFailureRate,
          minExecutions: deps.config.quality.minExecutions,
        },
        freshness: { maxAgeSeconds: deps.config.quality.maxAgeSeconds },
      },
    }),
    // Forecast and detection read the facts the views and checks above have just been run over.
    ...createMlJobs({ ...deps.config.analytics }),
  ];
  // Last: it watches what the others produce. A rule's run_job action (the stale-view rule's refresh)
  // runs the named job in-process, inside the monitors run (not recorded as a run of its own); the
  // views job is idempotent, so meeting a scheduled run of it does no harm.
  const byName = new Map(jobs.map((j) => [j.name, j]));
  jobs.push(
    createMonitorsJob({
      ...(deps.rules ? { rules: deps.rules } : {}),
      registry: deps.registry,
      topicPrefix: deps.topicPrefix ?? '',
      runJob: (name, ctx) => {
        const job = byName.get(name);
        if (!job) return Promise.reject(new RangeError(`there is no job ${name}`));
        return job.run(ctx);
      },
    }),
  );
  return jobs;
}
