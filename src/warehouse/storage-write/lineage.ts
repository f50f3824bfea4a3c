import type { BigQuery } from '@google-cloud/bigquery';
import { SQL_IDENTIFIER } from '../../config/config.ts';
import { runQuery } from '../query.ts';

// For a lost stream (storage-write/sink.ts): which of a partition's records are already in the table.
// Every fact row carries its Kafka lineage (kafka_partition, kafka_offset), and rows the Storage Write
// API acknowledged in a COMMITTED stream are visible to queries at once.

/** `SELECT MAX(kafka_offset)` of one topic-partition; table and dataset are validated identifiers. */
export function maxKafkaOffset(
  bq: BigQuery,
  o: { dataset: string; location?: string },
): (table: string, topic: string, partition: number) => Promise<bigint | undefined> {
  return async (table, topic, partition) => {
    if (!SQL_IDENTIFIER.test(table) || !SQL_IDENTIFIER.test(o.dataset))
      throw new RangeError(`not a table identifier: ${o.dataset}.${table}`);
    const r = await runQuery(bq, {
      sql: `SELECT MAX(kafka_offset) AS m FROM \`${o.dataset}.${table}\` WHERE kafka_topic = @t AND kafka_partition = @p`,
      params: { t: { value: topic, type: 'STRING' }, p: { value: String(partition), type: 'INT64' } },
      defaultDataset: { datasetId: o.dataset },
      ...(o.location ? { location: o.location } : {}),
      maxRows: 1,
    });
    const m = r.rows[0]?.m;
    return m === null || m === undefined ? undefined : BigInt(String(m));
  };
}
