import kafkajs from 'kafkajs';
import type { Admin } from 'kafkajs';
import { TxstreamError } from '../errors.ts';
import { createKafka, lazyAdmin } from './client.ts';
import type { KafkaConnection } from './client.ts';
import { classifyKafkaError } from './producer.ts';

// kafkajs' CommonJS exports after `logLevel` are invisible to Node's named-import detection, hence
// the default import for them.
const { ConfigResourceTypes } = kafkajs;

// Topic administration behind a small port, so `txstream init` is plain logic tested without kafkajs.

export interface TopicRequest {
  name: string;
  partitions: number;
  replicationFactor: number;
  configs: Record<string, string>;
}

export interface ExistingTopic {
  name: string;
  partitions: number;
  replicationFactor: number;
  /** The values of the configs asked for in describe(), as the broker reports them. */
  configs: Record<string, string>;
}

export interface ClusterSize {
  /** Brokers registered and unfenced now. */
  brokers: number;
  /** The brokers' default.replication.factor, when a broker answers for it. */
  defaultReplicationFactor?: number;
}

export interface TopicAdmin {
  /** The topics among `names` that exist, with partition count, replication and the given configs. */
  describe(names: readonly string[], configNames: readonly string[]): Promise<Map<string, ExistingTopic>>;
  /** Creates the topics and waits for their leaders; a topic created meanwhile by someone else is fine. */
  create(topics: readonly TopicRequest[]): Promise<void>;
  delete(names: readonly string[]): Promise<void>;
  /** What a replication factor of "auto" follows: the brokers up now and the cluster's own default. */
  clusterSize(): Promise<ClusterSize>;
  close(): Promise<void>;
}

const TRANSIENT_METADATA_ERRORS = new Set(['UNKNOWN_TOPIC_OR_PARTITION', 'LEADER_NOT_AVAILABLE']);

/** The transient metadata error anywhere in kafkajs' retry-wrapper chain, if that is what `err` is. */
function transientMetadataError(err: unknown): string | undefined {
  for (let e = err as { type?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 5; depth++) {
    if (typeof e.type === 'string' && TRANSIENT_METADATA_ERRORS.has(e.type)) return e.type;
    e = e.cause as typeof e;
  }
  return undefined;
}

/** Polls metadata until every partition of every topic has a leader, or gives up after `timeoutMs`. */
async function waitForLeaders(a: Admin, topics: readonly TopicRequest[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const names = topics.map((t) => t.name);
  const wanted = new Map(topics.map((t) => [t.name, t.partitions]));
  let last: string;
  for (;;) {
    try {
      const meta = await a.fetchTopicMetadata({ topics: names });
      const pending = meta.topics.filter(
        (t) => t.partitions.length < (wanted.get(t.name) ?? 0) || t.partitions.some((p) => p.leader < 0),
      );
      if (pending.length === 0 && meta.topics.length === names.length) return;
      last = `no leader yet for ${pending.map((t) => t.name).join(', ') || 'some topics'}`;
    } catch (err) {
      const type = transientMetadataError(err);
      if (!type) throw err;
      last = type;
    }
    if (Date.now() >= deadline) {
      throw new TxstreamError(
        'TOPIC_ERROR',
        `topics created but without leaders after ${timeoutMs} ms (${last})`,
      );
    }
    await new Promise<void>((r) => setTimeout(r, 100));
  }
}

export function createTopicAdmin(connection: KafkaConnection, leaderWaitMs = 30_000): TopicAdmin {
  const admin = lazyAdmin(createKafka(connection), (err) =>
    classifyKafkaError(err, `cannot connect to Kafka at ${connection.brokers.join(',')}`),
  );

  async function guarded<T>(what: string, fn: (a: Admin) => Promise<T>): Promise<T> {
    const a = await admin.get();
    try {
      return await fn(a);
    } catch (err) {
      const e = classifyKafkaError(err, what);
      throw e.code === 'BROKER_REJECTED' ? new TxstreamError('TOPIC_ERROR', e.message, { cause: err }) : e;
    }
  }

  return {
    describe: (names, configNames) =>
      guarded(`describing topics`, async (a) => {
        const existing = new Set(await a.listTopics());
        const found = names.filter((n) => existing.has(n));
        const out = new Map<string, ExistingTopic>();
        if (found.length === 0) return out;
        const meta = await a.fetchTopicMetadata({ topics: found });
        const configs = await a.describeConfigs({
          includeSynonyms: false,
          resources: found.map((name) => ({
            type: ConfigResourceTypes.TOPIC,
            name,
            configNames: [...configNames],
          })),
        });
        for (const t of meta.topics) {
          const resource = configs.resources.find((r) => r.resourceName === t.name);
          out.set(t.name, {
            name: t.name,
            partitions: t.partitions.length,
            replicationFactor: t.partitions[0]?.replicas.length ?? 0,
            configs: Object.fromEntries(
              (resource?.configEntries ?? []).map((e) => [e.configName, e.configValue]),
            ),
          });
        }
        return out;
      }),

    create: (topics) =>
      guarded(`creating topics ${topics.map((t) => t.name).join(', ')}`, async (a) => {
        if (topics.length === 0) return;
        // kafkajs' own leader wait retries only LEADER_NOT_AVAILABLE, but a KRaft broker also answers
        // UNKNOWN_TOPIC_OR_PARTITION for a moment after creating a topic: wait here instead.
        await a.createTopics({
          waitForLeaders: false,
          topics: topics.map((t) => ({
            topic: t.name,
            numPartitions: t.partitions,
            replicationFactor: t.replicationFactor,
            configEntries: Object.entries(t.configs).map(([name, value]) => ({ name, value })),
          })),
        });
        await waitForLeaders(a, topics, leaderWaitMs);
      }),

    delete: (names) =>
      guarded(`deleting topics`, async (a) => {
        if (names.length) await a.deleteTopics({ topics: [...names] });
      }),

    clusterSize: () =>
      guarded('describing the cluster', async (a) => {
        const { brokers } = await a.describeCluster();
        const first = brokers[0];
        if (!first) return { brokers: 0 };
        const described = await a.describeConfigs({
          includeSynonyms: false,
          resources: [
            {
              type: ConfigResourceTypes.BROKER,
              name: String(first.nodeId),
              configNames: ['default.replication.factor'],
            },
          ],
        });
        const value = Number(described.resources[0]?.configEntries[0]?.configValue);
        return {
          brokers: brokers.length,
          ...(Number.isInteger(value) ? { defaultReplicationFactor: value } : {}),
        };
      }),

    close: () => admin.reset(),
  };
}
