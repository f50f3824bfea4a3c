import { pino } from 'pino';
import { createGuardedDecoder } from './codec/guarded-decoder.ts';
import type { BankingTransaction, JobExecution } from './codec/records.ts';
import { createRegistryClient, registryConnection } from './codec/registry.ts';
import { createSchemaCatalog } from './codec/schemas.ts';
import { createValidator } from './codec/validate.ts';
import type { Config } from './config/config.ts';
import type { RunnerSink, TopicBinding } from './consumers/runner.ts';
import { createRunner } from './consumers/runner.ts';
import { createKafka, kafkaConnection } from './kafka/client.ts';
import { createKafkaSender } from './kafka/producer.ts';
import { jobExecutionRow, transactionRow } from './pipeline/rows.ts';
import type { KafkaLineage, RowResult } from './pipeline/rows.ts';
import { createDlqPublisher } from './producers/dlq.ts';
import { createTopicCatalogue } from './topics.ts';
import { createBigQuery } from './warehouse/client.ts';
import { createBigQuerySink } from './warehouse/sink.ts';

// The composition root: the one place that builds real clients (Kafka, registry, BigQuery) and
// injects them. Everything below it takes its collaborators as arguments.

export interface ConsumerApp {
  topics: string[];
  logger: pino.Logger;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export async function buildConsumerApp(o: {
  config: Readonly<Config>;
  groupId: string;
  topicPrefix?: string;
}): Promise<ConsumerApp> {
  const { config } = o;
  const logger = pino({
    level: config.logLevel,
    redact: ['config.kafka.sasl.password', 'config.registry.password', '*.password'],
  });
  const catalogue = createTopicCatalogue({ prefix: o.topicPrefix ?? '' });
  const schemas = createSchemaCatalog();
  const registry = createRegistryClient(registryConnection(config));
  const tx = schemas.load('BankingTransaction');
  const job = schemas.load('JobExecution');
  const decoder = createGuardedDecoder({
    fetchSchema: (id) => registry.schemaById(id),
    readerTypes: new Map([
      ['io.txstream.v1.BankingTransaction', tx.type],
      ['io.txstream.v1.JobExecution', job.type],
    ]),
  });
  // Open value lists: a new status from a newer producer is data, not an error, in the warehouse.
  const txValid = createValidator<BankingTransaction>(tx.json, tx.type, {
    knownValues: {},
    allowUnknownFields: true,
  });
  const jobValid = createValidator<JobExecution>(job.json, job.type, {
    knownValues: {},
    allowUnknownFields: true,
  });
  const validated =
    <T>(
      v: {
        validate(
          x: unknown,
        ): { ok: true; value: T } | { ok: false; errors: { field: string; message: string }[] };
      },
      map: (r: T, l: KafkaLineage, at: number) => RowResult<unknown>,
    ) =>
    (record: unknown, lineage: KafkaLineage, at: number): RowResult<Record<string, unknown>> => {
      const checked = v.validate(record);
      if (!checked.ok)
        return {
          ok: false,
          field: checked.errors[0]?.field ?? '(record)',
          reason: checked.errors.map((e) => e.message).join('; '),
        };
      return map(checked.value, lineage, at) as RowResult<Record<string, unknown>>;
    };
  const bindings: TopicBinding[] = [
    {
      topic: catalogue.get('transactions').name,
      table: 'fact_banking_transactions',
      map: validated(txValid, transactionRow),
    },
    {
      topic: catalogue.get('job-executions').name,
      table: 'fact_job_executions',
      map: validated(jobValid, jobExecutionRow),
    },
  ];

  const bq = createBigQuery({ ...config.bigquery, maxRetries: 0 });
  const warehouse = createBigQuerySink({ bq, dataset: config.bigquery.dataset });
  const sink: RunnerSink = {
    async insert(table, rows) {
      const outcome = await warehouse.insert(table, rows);
      return outcome.rows.map((r) => (r.ok ? { ok: true } : { ok: false, reason: r.reason }));
    },
  };
  const sender = createKafkaSender(kafkaConnection(config, 'dlq'));
  const dlq = createDlqPublisher({ sender });
  const kafka = createKafka(kafkaConnection(config, 'consumer'));
  const consumer = kafka.consumer({ groupId: o.groupId, allowAutoTopicCreation: false });
  const runner = createRunner({
    consumer,
    bindings,
    decoder,
    sink,
    dlq,
    batch: { maxRows: config.streaming.batchSize, lingerMs: config.streaming.intervalMs },
    logger,
  });
  return {
    topics: bindings.map((b) => b.topic),
    logger,
    async start() {
      await consumer.connect();
      await runner.start();
    },
    async stop() {
      await runner.stop();
      await sender.close();
    },
  };
}
