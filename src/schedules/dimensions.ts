import { randomUUID } from 'node:crypto';
import { createGuardedDecoder, peekSchemaId } from '../codec/guarded-decoder.ts';
import type { GuardedDecoder } from '../codec/guarded-decoder.ts';
import type { BankingNetwork, JobDefinition } from '../codec/records.ts';
import type { RegistryClient } from '../codec/registry.ts';
import type { SchemaCatalog } from '../codec/schemas.ts';
import { createSchemaCatalog } from '../codec/schemas.ts';
import { createValidator } from '../codec/validate.ts';
import type { RecordValidator } from '../codec/validate.ts';
import { TxstreamError } from '../errors.ts';
import { createKafka } from '../kafka/client.ts';
import type { KafkaConnection } from '../kafka/client.ts';
import type { TopicCatalogue } from '../topics.ts';
import { runQuery } from '../warehouse/query.ts';
import { renderSql } from '../warehouse/sql.ts';
import type { JobContext, JobOutcome, ScheduledJob } from './job.ts';

// The `dimensions` job: the latest state of the compacted reference topics (ref.banking-networks.v1,
// ref.jobs.v1) into dim_banking_networks (type 1) and dim_jobs (type 2).
//
// Each run reads both topics from the beginning up to the end they had when it started, keeps the
// latest record per key (what compaction would eventually leave), and MERGEs that into the tables
// (sql/merge_dim_*.sql). The MERGEs write only what changed, so a run with nothing new writes
// nothing, and two runs of the same state (a retry, a double run during a leader change) give the
// same tables. Versions of a job produced between two runs collapse into the latest: compaction may
// have removed the intermediate ones anyway, so dim_jobs records the versions the sync saw.
//
// Deletions. A tombstone (null value) retires the entity instead of deleting its row, so facts that
// reference it still join: a network keeps its row with is_active FALSE; a job gets a new version
// with is_active FALSE. A key that has disappeared from the topic altogether (its tombstone already
// compacted away, after delete.retention.ms, 24 h by default) is left as it is: an incomplete read
// must never be able to retire everything, so absence is not taken as deletion. Run the job at least
// daily (it runs hourly by default) for tombstones to be seen.
//
// Records the decoder or validator refuses are left out (the key keeps the state of its last good
// version, if the table has it) and make the run's outcome `failed`, with each reject in the details;
// they are not dead-lettered, because every run reads them again.

export const DIMENSIONS_JOB = 'dimensions';

/** One record of a reference topic as read (key and value undecoded). */
export interface ReferenceMessage {
  partition: number;
  offset: string;
  key: Buffer | null;
  /** null for a tombstone. */
  value: Buffer | null;
  /** Kafka timestamp, milliseconds since the epoch (a string, as kafkajs gives it). */
  timestamp: string;
}

export interface Reject {
  topic: string;
  partition: number;
  offset: string;
  key: string | null;
  reason: string;
}

/** True when `b` comes after `a` in its key's history: a later offset in the same partition. */
function isLater(a: ReferenceMessage, b: ReferenceMessage): boolean {
  if (a.partition === b.partition) return BigInt(b.offset) > BigInt(a.offset);
  // The same key in two partitions only happens after the partition count changed; the newer write wins.
  const ta = Number(a.timestamp);
  const tb = Number(b.timestamp);
  return tb !== ta ? tb > ta : b.partition > a.partition;
}

/**
 * The latest message per key, as compaction keeps it. Keyless messages cannot belong to a key (a
 * compacted topic refuses them; they can only be old or foreign data) and are returned apart.
 */
export function latestByKey(messages: Iterable<ReferenceMessage>): {
  latest: Map<string, ReferenceMessage>;
  keyless: ReferenceMessage[];
} {
  const latest = new Map<string, ReferenceMessage>();
  const keyless: ReferenceMessage[] = [];
  for (const m of messages) {
    if (m.key === null || m.key.length === 0) {
      keyless.push(m);
      continue;
    }
    const key = m.key.toString('utf8');
    const seen = latest.get(key);
    if (!seen || isLater(seen, m)) latest.set(key, m);
  }
  return { latest, keyless };
}

/** A row offered to sql/merge_dim_banking_networks.sql (JSON; timestamps as epoch-microsecond strings). */
export type NetworkRow =
  | {
      network_id: string;
      network_name: string;
      network_type: string;
      region: string;
      country_code: string | null;
      currency: string;
      is_active: boolean;
      deleted: false;
      updated_at: string;
    }
  | { network_id: string; deleted: true; updated_at: string };

/** A row offered to sql/merge_dim_jobs.sql. */
export type JobRow =
  | {
      job_id: string;
      job_name: string;
      extraction_method: string;
      banking_network_id: string;
      schedule: string | null;
      is_active: boolean;
      deleted: false;
      updated_at: string;
    }
  | { job_id: string; deleted: true; updated_at: string };

const micros = (n: number) => String(Math.trunc(n));

export function networkRow(n: BankingNetwork): NetworkRow {
  return {
    network_id: n.network_id,
    network_name: n.network_name,
    network_type: n.network_type,
    region: n.region,
    country_code: n.country_code,
    currency: n.currency,
    is_active: n.is_active,
    deleted: false,
    updated_at: micros(n.updated_at),
  };
}

export function jobRow(j: JobDefinition): JobRow {
  return {
    job_id: j.job_id,
    job_name: j.job_name,
    extraction_method: j.extraction_method,
    banking_network_id: j.banking_network_id,
    schedule: j.schedule,
    is_active: j.is_active,
    deleted: false,
    updated_at: micros(j.updated_at),
  };
}

/** A tombstone has no updated_at of its own; its Kafka timestamp (ms) stands in, in microseconds. */
export function tombstoneMicros(m: ReferenceMessage): string {
  return micros(Number(m.timestamp) * 1000);
}

/**
 * Turns the latest message per key into MERGE rows: tombstones become `deleted` rows, records are
 * decoded and validated, and a record whose id field differs from its key is refused (the key is what
 * compaction goes by, so such a record would shadow another entity's state).
 */
export function referenceRows<T, R>(o: {
  topic: string;
  latest: ReadonlyMap<string, ReferenceMessage>;
  decoder: GuardedDecoder;
  validator: RecordValidator<T>;
  idOf: (record: T) => string;
  toRow: (record: T) => R;
  tombstone: (key: string, m: ReferenceMessage) => R;
}): { rows: R[]; tombstones: number; rejects: Reject[] } {
  const rows: R[] = [];
  const rejects: Reject[] = [];
  let tombstones = 0;
  for (const [key, m] of o.latest) {
    const reject = (reason: string) =>
      rejects.push({ topic: o.topic, partition: m.partition, offset: m.offset, key, reason });
    if (m.value === null) {
      tombstones++;
      rows.push(o.tombstone(key, m));
      continue;
    }
    const decoded = o.decoder.decode(m.value);
    if (!decoded.ok) {
      reject(`${decoded.code}: ${decoded.reason}`);
      continue;
    }
    const checked = o.validator.validate(decoded.value);
    if (!checked.ok) {
      reject(`INVALID_RECORD: ${checked.errors.map((e) => e.message).join('; ')}`);
      continue;
    }
    const id = o.idOf(checked.value);
    if (id !== key) {
      reject(`INVALID_RECORD: the record's id ${JSON.stringify(id)} differs from its key`);
      continue;
    }
    rows.push(o.toRow(checked.value));
  }
  return { rows, tombstones, rejects };
}

// ---------------------------------------------------------------------------------------------------
// Reading a compacted topic to its end.

export interface ReadOptions {
  connection: KafkaConnection;
  topics: readonly string[];
  /** The read fails (retriable) when the ends are not reached in this time. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Prefix of the throwaway consumer group. */
  groupPrefix: string;
}

/**
 * Every message of the topics from the beginning to (at least) the high watermarks they had when the
 * read started. kafkajs can only consume in a group, so the read uses a fresh group that commits
 * nothing and is deleted afterwards: the reference topics have no offsets to keep, every run starts
 * from the beginning. The end of a partition is recognised by reaching its starting high watermark
 * minus one: that offset always exists in a compacted partition, since the cleaner never touches the
 * active segment and always keeps a key's latest record (and a producer's last batch). A new group's
 * first join waits group.initial.rebalance.delay.ms on the broker (3 s by default, 0 on the local stack).
 */
export async function readToEnd(o: ReadOptions): Promise<Map<string, ReferenceMessage[]>> {
  const kafka = createKafka(o.connection);
  const admin = kafka.admin();
  const groupId = `${o.groupPrefix}-${randomUUID()}`;
  const out = new Map<string, ReferenceMessage[]>(o.topics.map((t) => [t, []]));
  await admin.connect().catch((err: unknown) => {
    // Already classified (an untrusted certificate, a refused password): not an outage to retry.
    if (err instanceof TxstreamError) throw err;
    throw new TxstreamError('BROKER_UNAVAILABLE', `cannot connect to Kafka: ${(err as Error).message}`, {
      retriable: true,
      cause: err,
    });
  });
  let joined = false;
  try {
    const existing = new Set(await admin.listTopics());
    const missing = o.topics.filter((t) => !existing.has(t));
    if (missing.length)
      throw new TxstreamError(
        'TOPIC_ERROR',
        `reference topic(s) ${missing.join(', ')} do not exist (run \`txstream init\`)`,
      );
    // Partition → the offset to reach; empty partitions have nothing to wait for.
    const remaining = new Map<string, bigint>();
    for (const topic of o.topics)
      for (const p of await admin.fetchTopicOffsets(topic))
        if (BigInt(p.high) > BigInt(p.low)) remaining.set(`${topic}\u0000${p.partition}`, BigInt(p.high));
    if (remaining.size === 0) return out;

    const consumer = kafka.consumer({ groupId, allowAutoTopicCreation: false, maxWaitTimeInMs: 500 });
    joined = true;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [...o.topics], fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(() => {
          const left = [...remaining.keys()].map((k) => k.replace('\u0000', ':'));
          reject(
            new TxstreamError(
              'BROKER_UNAVAILABLE',
              `reading the reference topics did not reach their end within ${o.timeoutMs} ms (left: ${left.join(', ')})`,
              { retriable: true },
            ),
          );
        }, o.timeoutMs);
        onAbort = () => reject(new Error(`aborted: ${String(o.signal?.reason)}`));
        if (o.signal?.aborted) onAbort();
        o.signal?.addEventListener('abort', onAbort, { once: true });
        consumer.on(consumer.events.CRASH, (e) => {
          if (!e.payload.restart) reject(e.payload.error);
        });
        consumer
          .run({
            autoCommit: false,
            eachBatch: async ({ batch }) => {
              const list = out.get(batch.topic);
              for (const m of batch.messages)
                list?.push({
                  partition: batch.partition,
                  offset: m.offset,
                  key: m.key ?? null,
                  value: m.value ?? null,
                  timestamp: m.timestamp,
                });
              const k = `${batch.topic}\u0000${batch.partition}`;
              const target = remaining.get(k);
              if (target !== undefined && BigInt(batch.lastOffset()) + 1n >= target) {
                remaining.delete(k);
                if (remaining.size === 0) resolve();
              }
            },
          })
          .catch(reject);
      });
    } finally {
      if (timer) clearTimeout(timer);
      if (onAbort) o.signal?.removeEventListener('abort', onAbort);
      await consumer.disconnect().catch(() => undefined);
    }
    return out;
  } finally {
    // The group never committed anything; deleting it keeps the broker's group list clean.
    if (joined) await admin.deleteGroups([groupId]).catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------------
// The job.

export interface DimensionsJobOptions {
  connection: KafkaConnection;
  catalogue: TopicCatalogue;
  registry: Pick<RegistryClient, 'schemaById'>;
  schemas?: SchemaCatalog;
  readTimeoutMs: number;
  /** Rows per MERGE statement (each statement's parameter stays well under BigQuery's request limit). */
  chunkRows?: number;
  /** Replaces the Kafka read (unit tests). */
  read?: (o: ReadOptions) => Promise<Map<string, ReferenceMessage[]>>;
}

export interface MergeReport {
  topic: string;
  /** Messages read (all versions, tombstones included). */
  messages: number;
  /** Distinct keys: the latest state. */
  keys: number;
  tombstones: number;
  rejected: number;
  /** Rows the MERGE inserted or updated (a type-2 change counts twice: the closed and the new row). */
  affectedRows: number;
}

const MAX_REJECTS_IN_DETAILS = 50;

export function createDimensionsJob(o: DimensionsJobOptions): ScheduledJob {
  const schemas = o.schemas ?? createSchemaCatalog();
  const networkSchema = schemas.load('BankingNetwork');
  const jobSchema = schemas.load('JobDefinition');
  // Created once and kept across runs: writer schemas fetched by id stay cached.
  const decoder = createGuardedDecoder({
    fetchSchema: (id) => o.registry.schemaById(id),
    readerTypes: new Map([
      ['io.txstream.v1.BankingNetwork', networkSchema.type],
      ['io.txstream.v1.JobDefinition', jobSchema.type],
    ]),
  });
  // Open value lists, as in the warehouse consumer: a new network type is data, not an error.
  const networkValidator = createValidator<BankingNetwork>(networkSchema.json, networkSchema.type, {
    knownValues: {},
    allowUnknownFields: true,
  });
  const jobValidator = createValidator<JobDefinition>(jobSchema.json, jobSchema.type, {
    knownValues: {},
    allowUnknownFields: true,
  });
  const chunkRows = o.chunkRows ?? 1000;
  const read = o.read ?? readToEnd;
  const networks = o.catalogue.get('networks');
  const jobs = o.catalogue.get('jobs');

  async function merge(ctx: JobContext, statement: string, rows: readonly unknown[]): Promise<number> {
    let affected = 0;
    for (let i = 0; i < rows.length; i += chunkRows) {
      if (ctx.signal.aborted) throw new Error(`aborted: ${String(ctx.signal.reason)}`);
      const r = await runQuery(ctx.bq, {
        sql: renderSql(statement, { dataset: ctx.dataset }),
        params: {
          rows: { value: JSON.stringify(rows.slice(i, i + chunkRows)), type: 'STRING' },
          synced_at: { value: new Date().toISOString(), type: 'TIMESTAMP' },
        },
        location: ctx.config.bigquery.location,
      });
      affected += r.affectedRows ?? 0;
    }
    return affected;
  }

  return {
    name: DIMENSIONS_JOB,
    description: `${networks.name} → dim_banking_networks (type 1), ${jobs.name} → dim_jobs (type 2)`,
    defaultSchedule: '0 * * * *',
    async run(ctx) {
      const messages = await read({
        connection: o.connection,
        topics: [networks.name, jobs.name],
        timeoutMs: o.readTimeoutMs,
        signal: ctx.signal,
        groupPrefix: o.connection.clientId,
      });
      const netMessages = messages.get(networks.name) ?? [];
      const jobMessages = messages.get(jobs.name) ?? [];
      const net = latestByKey(netMessages);
      const job = latestByKey(jobMessages);
      const values = [...net.latest.values(), ...job.latest.values()].map((m) => m.value);
      await decoder.prepare(values.map((v) => peekSchemaId(v)));
      const keylessReject = (topic: string) => (m: ReferenceMessage) => ({
        topic,
        partition: m.partition,
        offset: m.offset,
        key: null,
        reason: 'INVALID_RECORD: a message without a key cannot be a version of any entity',
      });
      const netRows = referenceRows({
        topic: networks.name,
        latest: net.latest,
        decoder,
        validator: networkValidator,
        idOf: (r) => r.network_id,
        toRow: networkRow,
        tombstone: (key, m): NetworkRow => ({
          network_id: key,
          deleted: true,
          updated_at: tombstoneMicros(m),
        }),
      });
      const jobRows = referenceRows({
        topic: jobs.name,
        latest: job.latest,
        decoder,
        validator: jobValidator,
        idOf: (r) => r.job_id,
        toRow: jobRow,
        tombstone: (key, m): JobRow => ({ job_id: key, deleted: true, updated_at: tombstoneMicros(m) }),
      });
      const rejects = [
        ...net.keyless.map(keylessReject(networks.name)),
        ...netRows.rejects,
        ...job.keyless.map(keylessReject(jobs.name)),
        ...jobRows.rejects,
      ];

      if (ctx.signal.aborted) throw new Error(`aborted: ${String(ctx.signal.reason)}`);
      // CREATE TABLE IF NOT EXISTS each run: cheap, and the job needs no other set-up step.
      for (const ddl of ['dim_banking_networks', 'dim_jobs'])
        await runQuery(ctx.bq, {
          sql: renderSql(ddl, { dataset: ctx.dataset }),
          location: ctx.config.bigquery.location,
        });
      // Networks first: a job's banking_network_id refers to them (by value; there is no constraint).
      const netAffected = await merge(ctx, 'merge_dim_banking_networks', netRows.rows);
      const jobAffected = await merge(ctx, 'merge_dim_jobs', jobRows.rows);

      const report = (
        topic: string,
        all: ReferenceMessage[],
        latest: Map<string, ReferenceMessage>,
        keyless: ReferenceMessage[],
        r: { tombstones: number; rejects: Reject[] },
        affectedRows: number,
      ): MergeReport => ({
        topic,
        messages: all.length,
        keys: latest.size,
        tombstones: r.tombstones,
        rejected: r.rejects.length + keyless.length,
        affectedRows,
      });
      const details = {
        networks: report(networks.name, netMessages, net.latest, net.keyless, netRows, netAffected),
        jobs: report(jobs.name, jobMessages, job.latest, job.keyless, jobRows, jobAffected),
        rejects: rejects.slice(0, MAX_REJECTS_IN_DETAILS),
      };
      for (const r of rejects.slice(0, MAX_REJECTS_IN_DETAILS))
        ctx.logger.warn(r, 'reference record left out of the dimensions');
      const summary =
        `networks: ${net.latest.size} keys, ${netAffected} row(s) written; ` +
        `jobs: ${job.latest.size} keys, ${jobAffected} row(s) written` +
        (rejects.length ? `; ${rejects.length} record(s) rejected` : '');
      return {
        ok: rejects.length === 0,
        summary,
        rows: netAffected + jobAffected,
        details,
      } satisfies JobOutcome;
    },
  };
}
