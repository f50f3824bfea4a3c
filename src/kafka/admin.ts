import kafkajs from 'kafkajs';
import type { Admin } from 'kafkajs';
import { TxstreamError } from '../errors.ts';
import { createKafka } from './client.ts';
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

export interface TopicAdmin {
  /** The topics among `names` that exist, with partition count, replication and the given configs. */
  describe(names: readonly string[], configNames: readonly string[]): Promise<Map<string, ExistingTopic>>;
  /** Creates the topics and waits for their leaders; a topic created meanwhile by someone else is fine. */
  create(topics: readonly TopicRequest[]): Promise<void>;
  delete(names: readonly string[]): Promise<void>;
  close(): Promise<void>;
}

export function createTopicAdmin(connection: KafkaConnection): TopicAdmin {
  const kafka = createKafka(connection);
  let admin: Promise<Admin> | undefined;

  function connected(): Promise<Admin> {
    if (!admin) {
      const a = kafka.admin();
      admin = a.connect().then(
        () => a,
        (err: unknown) => {
          admin = undefined;
          throw classifyKafkaError(err, `cannot connect to Kafka at ${connection.brokers.join(',')}`);
        },
      );
    }
    return admin;
  }

  async function guarded<T>(what: string, fn: (a: Admin) => Promise<T>): Promise<T> {
    const a = await connected();
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
        await a.createTopics({
          waitForLeaders: true,
          topics: topics.map((t) => ({
            topic: t.name,
            numPartitions: t.partitions,
            replicationFactor: t.replicationFactor,
            configEntries: Object.entries(t.configs).map(([name, value]) => ({ name, value })),
          })),
        });
      }),

    delete: (names) =>
      guarded(`deleting topics`, async (a) => {
        if (names.length) await a.deleteTopics({ topics: [...names] });
      }),

    async close() {
      const a = admin;
      admin = undefined;
      if (a) await a.then((x) => x.disconnect()).catch(() => undefined);
    },
  };
}
