import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { PartitionLag, RunnerMetrics } from '../consumers/runner.ts';
import type { EvolutionMetrics } from '../consumers/schema-evolution.ts';
import type { StorageSinkMetrics } from '../warehouse/storage-write/sink.ts';

// One registry per app, never prom-client's global default: two apps in one process (tests, a future
// combined deployment) must not share or double-register series.

export interface ConsumerMetrics {
  registry: Registry;
  /** The runner's hook interface, backed by the series below. */
  runner: RunnerMetrics;
  /** The Storage Write API sink's (BQ_WRITE_API=storage). */
  storage: StorageSinkMetrics;
  /** Schema evolution's (BQ_AUTO_ADD_COLUMNS). */
  evolution: EvolutionMetrics;
  /** Where the lag gauge reads from at each scrape (the runner, once it exists). */
  setLagSource(source: () => readonly PartitionLag[]): void;
}

// Insert latency and end-to-end latency: the target is well under the seed's 5 s, the tail under retries
// can reach the backoff cap (30 s), so the buckets span 5 ms to a minute. They are dense between
// 50 ms and 2.5 s, where the linger interval (BQ_STREAMING_INTERVAL_MS) puts end-to-end latency, so
// quantiles estimated from them (histogram_quantile, the benchmark) are within a bucket of the truth.
const LATENCY_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9, 1, 1.1, 1.25, 1.5, 2, 2.5,
  5, 10, 30, 60,
];
// Request sizes from 1 KiB to BigQuery's 10 MB insertAll limit.
const BYTE_BUCKETS = [1024, 16_384, 65_536, 262_144, 524_288, 1_048_576, 2_097_152, 4_194_304, 10_485_760];
// Batch sizes up to BQ_STREAMING_BATCH_SIZE's maximum (50,000).
const ROW_BUCKETS = [1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 50_000];

export function createConsumerMetrics(o: { defaultMetrics?: boolean } = {}): ConsumerMetrics {
  const registry = new Registry();
  if (o.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const consumed = new Counter({
    name: 'txstream_records_consumed_total',
    help: 'Records fetched from Kafka, per topic (re-deliveries included).',
    labelNames: ['topic'] as const,
    registers: [registry],
  });
  const inserted = new Counter({
    name: 'txstream_records_inserted_total',
    help: 'Rows BigQuery acknowledged, per source topic.',
    labelNames: ['topic'] as const,
    registers: [registry],
  });
  const deadLettered = new Counter({
    name: 'txstream_records_dead_lettered_total',
    help: 'Records the DLQ producer acknowledged, per source topic.',
    labelNames: ['topic'] as const,
    registers: [registry],
  });
  const deadLettersByCode = new Counter({
    name: 'txstream_dead_letters_total',
    help: 'Records the DLQ producer acknowledged, per source topic and error code (txstream.error.code).',
    labelNames: ['topic', 'code'] as const,
    registers: [registry],
  });
  const batchRows = new Histogram({
    name: 'txstream_insert_batch_rows',
    help: 'Rows per BigQuery insert request (after splitting too-large requests).',
    buckets: ROW_BUCKETS,
    registers: [registry],
  });
  const batchBytes = new Histogram({
    name: 'txstream_insert_batch_bytes',
    help: 'JSON bytes of the rows per BigQuery insert request (after splitting too-large requests).',
    buckets: BYTE_BUCKETS,
    registers: [registry],
  });
  // What streaming inserts are billed by; the alert rules' cost signal reads it.
  const insertedBytes = new Counter({
    name: 'txstream_inserted_bytes_total',
    help: 'JSON bytes of the rows BigQuery acknowledged, per source topic.',
    labelNames: ['topic'] as const,
    registers: [registry],
  });
  const insertLatency = new Histogram({
    name: 'txstream_insert_latency_seconds',
    help: 'Time from starting a batch insert to its acknowledgement, retries included.',
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const endToEnd = new Histogram({
    name: 'txstream_end_to_end_latency_seconds',
    help: 'Time from the Kafka record timestamp to the BigQuery acknowledgement of its row.',
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const retries = new Counter({
    name: 'txstream_retries_total',
    help: 'Retries after a transient failure, per operation (insert, dead-letter, commit, fetch schemas).',
    labelNames: ['operation'] as const,
    registers: [registry],
  });
  const inFlight = new Gauge({
    name: 'txstream_insert_requests_in_flight',
    help: 'Warehouse write requests sent and not yet answered.',
    registers: [registry],
  });
  const dropped = new Counter({
    name: 'txstream_rebalance_dropped_rows_total',
    help: 'Buffered rows dropped at a rebalance; they are read again from the committed offset.',
    registers: [registry],
  });
  let lagSource: () => readonly PartitionLag[] = () => [];
  new Gauge({
    name: 'txstream_consumer_lag',
    help: "Records in a partition this member holds that the group has not committed: the partition's high watermark at the last fetch minus the committed offset.",
    labelNames: ['topic', 'partition'] as const,
    registers: [registry],
    collect() {
      // Rebuilt at each scrape, so partitions given away in a rebalance disappear from it.
      this.reset();
      for (const l of lagSource()) this.set({ topic: l.topic, partition: String(l.partition) }, l.lag);
    },
  });
  const storageAppended = new Counter({
    name: 'txstream_storage_rows_appended_total',
    help: 'Rows this member appended to Storage Write API streams, per table.',
    labelNames: ['table'] as const,
    registers: [registry],
  });
  const storageSkipped = new Counter({
    name: 'txstream_storage_rows_skipped_total',
    help: 'Rows found already written (ALREADY_EXISTS on a replay, or in the table after a lost stream) and not appended again, per table: the deduplication exactly-once performs.',
    labelNames: ['table'] as const,
    registers: [registry],
  });
  const streamsCreated = new Counter({
    name: 'txstream_storage_streams_created_total',
    help: 'Storage Write API streams created (a partition with no stream recorded in its commit, or whose stream was lost), per table.',
    labelNames: ['table'] as const,
    registers: [registry],
  });
  const streamsOpen = new Gauge({
    name: 'txstream_storage_streams_open',
    help: 'Storage Write API streams this member appends to (one per table and partition held).',
    registers: [registry],
  });
  const fieldsDropped = new Counter({
    name: 'txstream_fields_dropped_total',
    help: 'Records whose writer schema carried a field that is not stored (BQ_AUTO_ADD_COLUMNS=false, or a name txstream fills itself), per topic and field.',
    labelNames: ['topic', 'field'] as const,
    registers: [registry],
  });
  const columnsAdded = new Counter({
    name: 'txstream_columns_added_total',
    help: 'Columns this member added to a table for fields of a newer writer schema, per table.',
    labelNames: ['table'] as const,
    registers: [registry],
  });
  return {
    registry,
    evolution: {
      fieldsDropped: (topic, field, n) => fieldsDropped.inc({ topic, field }, n),
      columnsAdded: (table, n) => columnsAdded.inc({ table }, n),
    },
    storage: {
      appended: (table, n) => storageAppended.inc({ table }, n),
      skipped: (table, n) => storageSkipped.inc({ table }, n),
      streamCreated: (table) => streamsCreated.inc({ table }),
      streamsOpen: (n) => streamsOpen.set(n),
    },
    setLagSource: (source) => {
      lagSource = source;
    },
    runner: {
      retried: (operation) => retries.inc({ operation }),
      inFlight: (delta) => inFlight.inc(delta),
      dropped: (n) => dropped.inc(n),
      consumed: (topic, n) => consumed.inc({ topic }, n),
      inserted: (topic, n, bytes) => {
        inserted.inc({ topic }, n);
        insertedBytes.inc({ topic }, bytes);
      },
      deadLettered: (topic, n) => deadLettered.inc({ topic }, n),
      deadLetteredByCode: (topic, code, n) => deadLettersByCode.inc({ topic, code }, n),
      insertLatency: (ms, rows, bytes) => {
        insertLatency.observe(ms / 1000);
        batchRows.observe(rows);
        batchBytes.observe(bytes);
      },
      // Clock skew between producer and consumer hosts can make this negative; clamp rather than
      // let one skewed producer poison the histogram's sum.
      endToEnd: (ms) => endToEnd.observe(Math.max(0, ms) / 1000),
    },
  };
}
