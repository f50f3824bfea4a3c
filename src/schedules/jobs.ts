import type { RegistryClient } from '../codec/registry.ts';
import type { Config } from '../config/config.ts';
import { kafkaConnection } from '../kafka/client.ts';
import { createTopicCatalogue } from '../topics.ts';
import { createDimensionsJob } from './dimensions.ts';
import type { ScheduledJob } from './job.ts';
import { createMlJobs } from './ml.ts';
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
}

export function scheduledJobs(deps: JobDependencies): ScheduledJob[] {
  const catalogue = createTopicCatalogue({ prefix: deps.topicPrefix ?? '' });
  return [
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
}
