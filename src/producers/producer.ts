import type { RegistryClient } from '../codec/registry.ts';
import type { SchemaCatalog } from '../codec/schemas.ts';
import { createSchemaCatalog } from '../codec/schemas.ts';
import type { ValidatorOptions } from '../codec/validate.ts';
import { createValidator } from '../codec/validate.ts';
import { createWireEncoder } from '../codec/wire.ts';
import type { Config } from '../config/config.ts';
import { TxstreamError } from '../errors.ts';
import { kafkaConnection } from '../kafka/client.ts';
import type { Compression, RecordSender } from '../kafka/producer.ts';
import { createKafkaSender } from '../kafka/producer.ts';
import type { RecordOf, TopicId } from '../topics.ts';
import { createTopicCatalogue, keyOf } from '../topics.ts';
import type { BatchingOptions, TopicProducer } from './batching.ts';
import { createBatchingProducer } from './batching.ts';

export interface CreateProducerOptions<K extends TopicId> extends BatchingOptions {
  config: Readonly<Config>;
  /** transactions, job-executions, networks, jobs or alerts. */
  topic: K;
  registry: RegistryClient;
  /** Where the .avsc files are; default the package's schemas/. */
  catalog?: SchemaCatalog;
  /** Prepended to every topic name (isolated test or tenant topics). */
  topicPrefix?: string;
  /** Default gzip (the only codec built into kafkajs). */
  compression?: Compression;
  /** Retries of a batch before its records are reported failed; default 5. */
  retries?: number;
  validation?: ValidatorOptions;
  /** Replaces the kafkajs sender (tests, or a caller that shares one). */
  sender?: RecordSender;
}

/**
 * A typed producer for one topic of the catalogue. The value schema must already be registered under
 * `<topic>-value` (`txstream init`): producers never register schemas, so a schema change always goes
 * through the compatibility check of init instead of arriving with whichever service deploys first.
 * The schema id is resolved here, once; encoding afterwards is synchronous and offline.
 */
export async function createProducer<K extends TopicId>(
  options: CreateProducerOptions<K>,
): Promise<TopicProducer<RecordOf[K]>> {
  const spec = createTopicCatalogue({ prefix: options.topicPrefix ?? '' }).get(options.topic);
  const catalog = options.catalog ?? createSchemaCatalog();
  const schema = catalog.load(spec.recordName);
  const registered = await options.registry.lookup(spec.subject, schema.text);
  if (!registered) {
    throw new TxstreamError(
      'SCHEMA_NOT_FOUND',
      `${spec.recordName} (${schema.file}) is not registered under subject ${spec.subject} at ${options.registry.url}; run \`txstream init\``,
    );
  }
  const sender =
    options.sender ??
    createKafkaSender(kafkaConnection(options.config, `producer-${options.topic}`), {
      ...(options.compression ? { compression: options.compression } : {}),
      ...(options.retries !== undefined ? { retries: options.retries } : {}),
    });
  try {
    await sender.assertTopic(spec.name);
  } catch (err) {
    await sender.close().catch(() => undefined);
    throw err;
  }
  const validator = createValidator<RecordOf[K]>(schema.json, schema.type, options.validation);
  return createBatchingProducer<RecordOf[K]>({
    ...pickBatching(options),
    topic: spec.name,
    schemaId: registered.id,
    validate: (record) => validator.validate(record),
    encode: createWireEncoder(registered.id, schema.type),
    key: (record) => keyOf(spec, record),
    sender,
  });
}

function pickBatching(o: BatchingOptions): BatchingOptions {
  return {
    ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}),
    ...(o.maxBatchBytes !== undefined ? { maxBatchBytes: o.maxBatchBytes } : {}),
    ...(o.lingerMs !== undefined ? { lingerMs: o.lingerMs } : {}),
    ...(o.maxBufferedRecords !== undefined ? { maxBufferedRecords: o.maxBufferedRecords } : {}),
    ...(o.timers ? { timers: o.timers } : {}),
  };
}
