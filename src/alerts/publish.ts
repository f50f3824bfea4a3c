import type { RegistryClient } from '../codec/registry.ts';
import type { Config } from '../config/config.ts';
import { TxstreamError } from '../errors.ts';
import { createProducer } from '../producers/producer.ts';
import type { TopicProducer } from '../producers/batching.ts';
import type { Alert } from './model.ts';

// Alert events onto txstream.alerts.v1 as Avro `Alert` records, keyed by dedup_key (the catalogue's key
// field for the topic), so every state change of one alert lands in one partition, in order. The
// producer is idempotent with acks=all; publish resolves only when the broker accepted every event.

export interface AlertPublisher {
  readonly topic: string;
  publish(alerts: readonly Alert[]): Promise<void>;
  close(): Promise<void>;
}

export interface AlertPublisherOptions {
  config: Readonly<Config>;
  registry: RegistryClient;
  /** Prefix of the topic names, as given to `txstream init --topic-prefix`. */
  topicPrefix?: string;
}

/** Wraps a producer of the `alerts` topic (tests pass their own). */
export function alertPublisherOf(producer: TopicProducer<Alert>): AlertPublisher {
  return {
    topic: producer.topic,
    async publish(alerts) {
      if (alerts.length === 0) return;
      const results = await producer.send(alerts);
      const failed = results.filter((r) => r.status !== 'sent');
      if (failed.length === 0) return;
      const first = failed[0]!;
      const why =
        first.status === 'rejected'
          ? first.errors.map((e) => `${e.field}: ${e.message}`).join('; ')
          : first.status === 'failed'
            ? first.error.message
            : '';
      throw new TxstreamError(
        first.status === 'failed' ? first.error.code : 'INVALID_RECORD',
        `${failed.length} of ${alerts.length} alerts were not published to ${producer.topic}: ${why}`,
        { retriable: first.status === 'failed' && first.error.retriable },
      );
    },
    close: () => producer.close(),
  };
}

/** A publisher on the configured cluster; the Alert schema must be registered (`txstream init`). */
export async function createAlertPublisher(o: AlertPublisherOptions): Promise<AlertPublisher> {
  const producer = await createProducer({
    config: o.config,
    topic: 'alerts',
    registry: o.registry,
    ...(o.topicPrefix ? { topicPrefix: o.topicPrefix } : {}),
    // A handful of events per minute: no reason to wait for a batch to fill.
    lingerMs: 0,
  });
  return alertPublisherOf(producer);
}
