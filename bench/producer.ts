import { resolveReplicationFactor } from '../src/admin/init.ts';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { createSchemaCatalog } from '../src/codec/schemas.ts';
import { createWireEncoder } from '../src/codec/wire.ts';
import { loadConfig } from '../src/config/config.ts';
import { createTopicAdmin } from '../src/kafka/admin.ts';
import { kafkaConnection } from '../src/kafka/client.ts';
import { findJava } from '../src/stack/prerequisites.ts';
import { serverDirs } from '../src/stack/provision.ts';
import { loadStackSettings, PROJECT_ROOT } from '../src/stack/settings.ts';
import { up } from '../src/stack/stack.ts';
import { createGenerator } from '../src/workload/index.ts';

// txstream's producer path (the CLI: generate → validate → encode → idempotent acks=all gzip batches)
// against org.apache.kafka.tools.ProducerPerformance with the same count, partitions, acks,
// idempotence, compression and a record size equal to txstream's mean encoded value size.

const run = promisify(execFile);

export interface BenchRow {
  name: string;
  value: number;
  unit: string;
  detail?: string;
}

export async function producerVsReference(o: { quick: boolean }): Promise<BenchRow[]> {
  const count = o.quick ? 100_000 : 500_000;
  const partitions = 6;
  const stack = loadStackSettings();
  if (!process.env.KAFKA_BROKERS) await up(stack, () => undefined);
  const config = loadConfig({ ...process.env, TOPIC_PARTITIONS: String(partitions) });
  const brokers = config.kafka.brokers.join(',');
  const prefix = `bench-${Date.now()}.`;
  const env = {
    ...process.env,
    KAFKA_BROKERS: brokers,
    SCHEMA_REGISTRY_URL: config.registry.url,
    TOPIC_PARTITIONS: String(partitions),
  };
  const bin = path.join(PROJECT_ROOT, 'bin', 'txstream.js');
  await run(process.execPath, [bin, 'init', '--topic-prefix', prefix], { env });

  // Mean encoded size of the records the CLI will send (same seed), for a like-for-like reference.
  const type = createSchemaCatalog().load('BankingTransaction').type;
  const encode = createWireEncoder(1, type);
  let bytes = 0;
  let sampled = 0;
  for (const t of createGenerator({ seed: 5, startTime: new Date('2026-01-05T00:00:00Z') }).transactions({
    count: 10_000,
  })) {
    bytes += encode(t).length;
    sampled++;
  }
  const recordSize = Math.round(bytes / sampled);

  const cli = await run(
    process.execPath,
    [
      bin,
      'produce',
      'transactions',
      '--synthetic',
      '--count',
      String(count),
      '--seed',
      '5',
      '--start',
      '2026-01-05T00:00:00Z',
      '--topic-prefix',
      prefix,
      '--json',
    ],
    { env, maxBuffer: 64 * 1024 * 1024 },
  );
  const summary = JSON.parse(cli.stdout) as { sent: number; elapsedMs: number };
  const ours = summary.sent / (summary.elapsedMs / 1000);

  const refTopic = `${prefix}producer-performance`;
  // The topic admin, not kafkajs' createTopics: it waits out KRaft's UNKNOWN_TOPIC_OR_PARTITION.
  const admin = createTopicAdmin(kafkaConnection(config, 'bench'));
  await admin.create([
    {
      name: refTopic,
      partitions,
      replicationFactor: resolveReplicationFactor(config.topics.replicationFactor, await admin.clusterSize()),
      configs: {},
    },
  ]);
  const java = await findJava(17, undefined, process.env);
  if (!java) throw new Error('Java 17+ is needed for ProducerPerformance');
  const ref = await run(
    java.bin,
    [
      '-cp',
      path.join(serverDirs(stack.cacheDir).kafka, 'lib', '*'),
      'org.apache.kafka.tools.ProducerPerformance',
      '--topic',
      refTopic,
      '--num-records',
      String(count),
      '--record-size',
      String(recordSize),
      '--throughput',
      '-1',
      '--producer-props',
      `bootstrap.servers=${brokers}`,
      'acks=all',
      'enable.idempotence=true',
      'compression.type=gzip',
      'linger.ms=5',
    ],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  const m = /(\d+) records sent, ([\d.]+) records\/sec \(([\d.]+) MB\/sec\)/.exec(ref.stdout);
  if (!m) throw new Error(`cannot read ProducerPerformance's result:\n${ref.stdout}`);
  const theirs = Number(m[2]);
  await admin.delete([refTopic, `${prefix}banking.transactions.v1`]).catch(() => undefined);
  await admin.close();
  const mb = (rps: number) => ((rps * recordSize) / 2 ** 20).toFixed(1);
  return [
    {
      name: `producer: txstream produce --synthetic (${count.toLocaleString('en')} tx, ${recordSize} B)`,
      value: ours,
      unit: 'records/s',
      detail: `${mb(ours)} MB/s, ${((ours / theirs) * 100).toFixed(0)}% of ProducerPerformance`,
    },
    {
      name: `producer: Kafka ProducerPerformance (same count, size, acks=all, gzip)`,
      value: theirs,
      unit: 'records/s',
      detail: `${m[3]} MB/s`,
    },
  ];
}
