import { pino } from 'pino';
import { extraFields } from './codec/evolution.ts';
import { createGuardedDecoder } from './codec/guarded-decoder.ts';
import type { BankingTransaction, JobExecution } from './codec/records.ts';
import { createRegistryClient, registryConnection } from './codec/registry.ts';
import { createSchemaCatalog } from './codec/schemas.ts';
import { createValidator } from './codec/validate.ts';
import type { Config } from './config/config.ts';
import { ConfigError, consumerProblems } from './config/config.ts';
import type { CommittedOffset, RunnerSink, TopicBinding } from './consumers/runner.ts';
import { createRunner } from './consumers/runner.ts';
import {
  createSchemaEvolution,
  evolvingBinding,
  reportUnstoredFields,
} from './consumers/schema-evolution.ts';
import { createKafka, createTrackedConsumer, kafkaConnection, lazyAdmin } from './kafka/client.ts';
import { committedOffsets } from './kafka/committed.ts';
import { createKafkaSender } from './kafka/producer.ts';
import { createConsumerMetrics } from './observability/metrics.ts';
import type { ObservabilityServer } from './observability/server.ts';
import { startObservabilityServer } from './observability/server.ts';
import { jobExecutionRow, ROW_COLUMNS, transactionRow } from './pipeline/rows.ts';
import type { KafkaLineage, RowResult } from './pipeline/rows.ts';
import { createDlqPublisher } from './producers/dlq.ts';
import { createTopicCatalogue } from './topics.ts';
import { createBigQuery } from './warehouse/client.ts';
import { createTableEvolver, tablesPort } from './warehouse/evolve-table.ts';
import { createBigQuerySink } from './warehouse/sink.ts';
import { createLoadJobSink, DEFAULT_MAX_FILE_BYTES } from './warehouse/load-sink.ts';
import { createStorageWriteClient, tableSchemaFromRest } from './warehouse/storage-write/client.ts';
import { maxKafkaOffset } from './warehouse/storage-write/lineage.ts';
import { createStorageWriteSink } from './warehouse/storage-write/sink.ts';

// The composition root: the one place that builds real clients (Kafka, registry, BigQuery) and
// injects them. Everything below it takes its collaborators as arguments.

export interface ConsumerApp {
  topics: string[];
  logger: pino.Logger;
  /** The metrics server's bound port once started; undefined when METRICS_PORT=0. */
  metricsPort(): number | undefined;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export async function buildConsumerApp(o: {
  config: Readonly<Config>;
  groupId: string;
  topicPrefix?: string;
  /**
   * An error retrying cannot fix: from the runner (see RunnerOptions.onFatal), or a kafkajs crash that
   * kafkajs does not restart (see createTrackedConsumer). The caller should stop and exit non-zero.
   */
  onFatal?: (err: Error) => void;
  /**
   * Replaces the warehouse sink, for benchmarks that measure everything but the BigQuery request
   * (bench/consumer.ts). Batching stays the streaming mode's (BQ_STREAMING_BATCH_SIZE and
   * BQ_STREAMING_INTERVAL_MS), since the sink stands in for insertAll.
   */
  sink?: RunnerSink;
}): Promise<ConsumerApp> {
  const { config } = o;
  const problems = o.sink ? [] : consumerProblems(config);
  if (problems.length) throw new ConfigError(problems);
  const logger = pino({
    level: config.logLevel,
    base: { pid: process.pid, component: 'consumer', group: o.groupId },
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
    keepExtraFields: config.bigquery.autoAddColumns,
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
  const facts = [
    { topic: catalogue.get('transactions'), table: 'fact_banking_transactions', schema: tx },
    { topic: catalogue.get('job-executions'), table: 'fact_job_executions', schema: job },
  ] as const;
  const mappers = {
    fact_banking_transactions: validated(txValid, transactionRow),
    fact_job_executions: validated(jobValid, jobExecutionRow),
  };

  const bq = createBigQuery({
    ...config.bigquery,
    maxRetries: 0,
    // Load jobs upload whole files: they keep the client's default and bound a job by jobTimeoutMs.
    ...(config.streaming.enabled ? { requestTimeoutMs: config.streaming.insertTimeoutMs } : {}),
  });
  const connection = kafkaConnection(config, 'consumer');
  const kafka = createKafka(connection);
  const metrics = createConsumerMetrics();
  // Every topic's counters exist at 0 from the start: increase() over a series that appears with its
  // first event misses that event, so an alert on the first dead letter would never fire.
  for (const f of facts) {
    metrics.runner.consumed(f.topic.name, 0);
    metrics.runner.inserted(f.topic.name, 0, 0);
    metrics.runner.deadLettered(f.topic.name, 0);
  }
  // Schema evolution (BQ_AUTO_ADD_COLUMNS): a newer writer schema's fields become columns before its
  // records are written, on every sink; the sink is told, so a cached table schema is read anew.
  const evolver = createTableEvolver({ port: tablesPort(bq, config.bigquery.dataset) });
  const bindings: TopicBinding[] = facts.map((f) =>
    evolvingBinding(
      { topic: f.topic.name, table: f.table, map: mappers[f.table] },
      createSchemaEvolution({
        topic: f.topic.name,
        table: f.table,
        addColumns: config.bigquery.autoAddColumns,
        extraFields: (id) => decoder.extraFields(id),
        evolver,
        ownColumns: ROW_COLUMNS[f.table],
        tableChanged: (table) => sink.tableChanged?.(table),
        logger: logger.child({ component: 'schema-evolution' }),
        metrics: metrics.evolution,
      }),
    ),
  );
  // Streaming inserts (insertAll, or the Storage Write API with BQ_WRITE_API=storage), or load jobs of
  // NDJSON at an interval (ENABLE_BQ_STREAMING=false): the same runner, the same commit rules; only the
  // warehouse port and the batch sizes differ.
  let sink: RunnerSink;
  let fetchCommitted: ((topic: string) => Promise<CommittedOffset[]>) | undefined;
  const closers: (() => Promise<void>)[] = [];
  let batch: { maxRows: number; maxBytes?: number; lingerMs: number };
  if (o.sink) {
    sink = o.sink;
    batch = { maxRows: config.streaming.batchSize, lingerMs: config.streaming.intervalMs };
  } else if (config.streaming.enabled && config.streaming.writeApi === 'storage') {
    const client = createStorageWriteClient({
      projectId: config.bigquery.projectId,
      dataset: config.bigquery.dataset,
      ...(config.bigquery.storageEndpoint ? { endpoint: config.bigquery.storageEndpoint } : {}),
      ...(config.bigquery.keyFile ? { keyFilename: config.bigquery.keyFile } : {}),
      tableSchema: tableSchemaFromRest(bq, config.bigquery.dataset),
      appendTimeoutMs: config.streaming.insertTimeoutMs,
      ...(config.streaming.storageMaxConnections
        ? { maxConnections: config.streaming.storageMaxConnections }
        : {}),
      logger: logger.child({ component: 'storage-client' }),
    });
    const storage = createStorageWriteSink({
      client,
      maxOffsetInTable: maxKafkaOffset(bq, {
        dataset: config.bigquery.dataset,
        location: config.bigquery.location,
      }),
      metrics: metrics.storage,
      logger: logger.child({ component: 'storage-sink' }),
    });
    const admin = lazyAdmin(kafka);
    fetchCommitted = committedOffsets(admin, o.groupId);
    closers.push(
      () => storage.close(),
      () => admin.reset(),
    );
    sink = storage;
    batch = { maxRows: config.streaming.batchSize, lingerMs: config.streaming.intervalMs };
  } else if (config.streaming.enabled) {
    const warehouse = createBigQuerySink({
      bq,
      dataset: config.bigquery.dataset,
      requestTimeoutMs: config.streaming.insertTimeoutMs,
    });
    sink = {
      async insert(table, rows) {
        const outcome = await warehouse.insert(table, rows);
        return outcome.rows.map((r) => (r.ok ? { ok: true } : { ok: false, reason: r.reason }));
      },
    };
    batch = { maxRows: config.streaming.batchSize, lingerMs: config.streaming.intervalMs };
  } else {
    sink = createLoadJobSink({
      bq,
      dataset: config.bigquery.dataset,
      location: config.bigquery.location,
      jobTimeoutMs: config.load.jobTimeoutMs,
      // The batch policy bounds the file already (its byte counts include insertAll's envelope, an
      // upper bound of the NDJSON line); this is the sink's own guard.
      maxFileBytes: Math.max(DEFAULT_MAX_FILE_BYTES, config.load.maxBytes),
      logger: logger.child({ component: 'load-sink' }),
    });
    batch = {
      maxRows: config.load.maxRows,
      maxBytes: config.load.maxBytes,
      lingerMs: config.load.intervalMs,
    };
  }
  const sender = createKafkaSender(kafkaConnection(config, 'dlq'));
  const dlq = createDlqPublisher({ sender });
  const tracked = createTrackedConsumer(kafka, {
    groupId: o.groupId,
    sessionTimeoutMs: config.consumer.sessionTimeoutMs,
    heartbeatIntervalMs: config.consumer.heartbeatIntervalMs,
    maxBytes: config.consumer.fetchMaxBytes,
    maxBytesPerPartition: config.consumer.fetchMaxBytesPerPartition,
    logger,
    connection,
    ...(o.onFatal ? { onFatal: o.onFatal } : {}),
  });
  const { consumer } = tracked;
  let server: ObservabilityServer | undefined;
  let running = false;
  let starting: Promise<void> | undefined;
  const runner = createRunner({
    consumer,
    bindings,
    decoder,
    sink,
    ...(fetchCommitted ? { fetchCommitted } : {}),
    dlq,
    batch,
    // Load jobs one at a time: each is a table modification with a daily quota, and big already.
    maxInFlight: config.streaming.enabled ? config.streaming.maxInFlight : 1,
    logger: logger.child({ component: 'runner' }),
    metrics: metrics.runner,
    sessionTimeoutMs: config.consumer.sessionTimeoutMs,
    ...(o.onFatal ? { onFatal: o.onFatal } : {}),
  });
  metrics.setLagSource(() => runner.lag());
  return {
    topics: bindings.map((b) => b.topic),
    logger,
    metricsPort: () => server?.port,
    start() {
      starting = startNow();
      return starting;
    },
    async stop() {
      // A stop during the start (a SIGTERM right after launch) waits for it, then stops what it started.
      await starting?.catch(() => undefined);
      await stopNow();
    },
  };

  async function startNow(): Promise<void> {
    // Up before the consumer connects, so a liveness probe answers during a slow start-up.
    if (config.metrics.port !== 0) {
      server = await startObservabilityServer({
        registry: metrics.registry,
        ready: tracked.ready,
        alive: tracked.alive,
        host: config.metrics.host,
        port: config.metrics.port,
        onError: (err) => logger.error({ err: err.message }, 'metrics server error'),
      });
      logger.info({ host: config.metrics.host, port: server.port }, 'metrics and probes listening');
    }
    if (!config.bigquery.autoAddColumns)
      await reportUnstoredFields({
        subjects: facts.map((f) => ({
          topic: f.topic.name,
          subject: f.topic.subject,
          readerJson: f.schema.json,
        })),
        latest: (subject) => registry.latest(subject),
        extraFields,
        logger,
      });
    try {
      await consumer.connect();
      await runner.start();
      running = true;
    } catch (err) {
      // An open listener would keep the process alive after a failed start.
      await server?.close().catch(() => undefined);
      throw err;
    }
  }

  async function stopNow(): Promise<void> {
    tracked.stopping();
    try {
      // A start that failed (a missing topic, a refused password) ran nothing: there is nothing to
      // flush or commit, only a connection to close.
      if (!running) await consumer.disconnect().catch(() => undefined);
      else if (tracked.alive()) await runner.stop();
      else
        // kafkajs crashed for good: it already left the group and dropped it, so no offset can be
        // committed any more and the runner's stop reports an unclean stop, which is expected here
        // and not the cause (onFatal has that). What was not committed is read again by the next member.
        await runner.stop().catch((err: unknown) => {
          logger.warn(
            { err: (err as Error).message },
            'the crashed consumer left its group: what it held is not committed and will be read again',
          );
        });
    } finally {
      // Closed whatever the runner's stop said: an open producer would keep the process alive.
      await sender.close().catch(() => undefined);
      for (const close of closers) await close().catch(() => undefined);
      await server?.close();
    }
  }
}
