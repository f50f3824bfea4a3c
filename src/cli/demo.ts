import type { Command } from 'commander';
import { runInit } from '../admin/init.ts';
import type { BankingTransaction } from '../codec/records.ts';
import { createRegistryClient, createRegistryDecoder, registryConnection } from '../codec/registry.ts';
import { createSchemaCatalog } from '../codec/schemas.ts';
import { createTopicAdmin } from '../kafka/admin.ts';
import { createProducer } from '../producers/producer.ts';
import { createTopicCatalogue } from '../topics.ts';
import { loadConfig } from '../config/config.ts';
import { createKafka, kafkaConnection } from '../kafka/client.ts';
import { loadStackSettings } from '../stack/settings.ts';
import { up } from '../stack/stack.ts';
import { createBigQuery } from '../warehouse/client.ts';
import { ensureFactTables } from '../warehouse/sql.ts';
import { transactionRow } from '../pipeline/rows.ts';
import { createGenerator } from '../workload/index.ts';
import { asCliError } from './errors.ts';

// `npm run demo`: one transaction travels producer → Kafka → registry-decoded → BigQuery emulator,
// printing each hop. It grows into the whole pipeline as the consumer and schedules land.

const TOPIC = 'banking.transactions.v1';
const say = (line: string) => process.stdout.write(`${line}\n`);

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('start the local stack and send one transaction end to end')
    .action(async () => {
      try {
        await runDemo();
      } catch (err) {
        throw asCliError(err);
      }
    });
}

async function runDemo(): Promise<void> {
  const external = Boolean(
    process.env.KAFKA_BROKERS && process.env.SCHEMA_REGISTRY_URL && process.env.BQ_API_ENDPOINT,
  );
  say(external ? '1. servers from KAFKA_BROKERS, SCHEMA_REGISTRY_URL, BQ_API_ENDPOINT' : '1. local stack');
  if (!external) await up(loadStackSettings(), (l) => say(`   ${l.trim()}`));
  const config = loadConfig();

  say('2. txstream init: topics and schemas (idempotent)');
  const registryClient = createRegistryClient(registryConnection(config));
  const topicAdmin = createTopicAdmin(kafkaConnection(config, 'demo-init'));
  try {
    const report = await runInit({
      catalogue: createTopicCatalogue(),
      schemas: createSchemaCatalog(),
      registry: registryClient,
      admin: topicAdmin,
      settings: config.topics,
    });
    const subject = report.subjects.find((x) => x.topic === TOPIC)!;
    say(
      `   ${report.topics.filter((t) => t.status === 'created').length} topic(s) created, ${report.topics.length} in all; ${subject.subject} is schema id ${subject.id} (${subject.status})`,
    );
  } finally {
    await topicAdmin.close();
  }

  say('3. produce one generated transaction with the producer library (idempotent, acks=all)');
  const [tx] = createGenerator({ seed: Date.now() % 2 ** 31, startTime: new Date() }).transactions({
    count: 1,
  });
  const sent = tx as BankingTransaction;
  const producer = await createProducer({ config, topic: 'transactions', registry: registryClient });
  const [result] = await producer.send([sent]);
  await producer.close();
  if (result?.status !== 'sent')
    throw new Error(`the broker did not accept the record: ${JSON.stringify(result)}`);
  const { partition } = result;
  const offset = result.offset;
  say(
    `   ${sent.transaction_id}: ${sent.amount} ${sent.currency} ${sent.status} → partition ${partition}, offset ${offset}`,
  );

  say('4. read it back from Kafka and decode it through the registry');
  const kafka = createKafka(kafkaConnection(config, 'demo'));
  const decoder = createRegistryDecoder(registryConnection(config));
  let wire = '';
  const consumer = kafka.consumer({ groupId: `txstream-demo-${Date.now()}` });
  await consumer.connect();
  await consumer.subscribe({ topic: TOPIC });
  const decoded = await new Promise<BankingTransaction>((resolve, reject) => {
    consumer
      .run({
        eachMessage: async ({ partition: p, message }) => {
          if (p !== partition || message.offset !== offset) return;
          const v = message.value!;
          wire = `magic byte ${v[0]}, schema id ${v.readInt32BE(1)}, ${v.length} bytes`;
          resolve((await decoder.decode(v)) as BankingTransaction);
        },
      })
      .catch(reject);
    consumer.on(consumer.events.GROUP_JOIN, () => consumer.seek({ topic: TOPIC, partition, offset }));
  });
  await consumer.disconnect();
  say(`   wire format: ${wire}`);
  say(
    `   decoded ${decoded.transaction_id}: amount ${decoded.amount} (exact decimal, equal: ${decoded.amount === sent.amount})`,
  );

  say(`5. stream it into BigQuery (${config.bigquery.apiEndpoint ?? 'Google'}) and query it back`);
  const bq = createBigQuery({ ...config.bigquery });
  await ensureFactTables(bq, config.bigquery.dataset, { location: config.bigquery.location });
  const mapped = transactionRow(decoded, { topic: TOPIC, partition, offset }, Date.now() * 1000);
  if (!mapped.ok) throw new Error(`cannot map the record: ${mapped.field}: ${mapped.reason}`);
  const { insertId } = mapped.row;
  await bq
    .dataset(config.bigquery.dataset)
    .table('fact_banking_transactions')
    .insert([mapped.row], { raw: true });
  const [rows] = await bq.query({
    query: `SELECT transaction_id, amount, transaction_date, kafka_offset
            FROM \`${config.bigquery.projectId}.${config.bigquery.dataset}.fact_banking_transactions\`
            WHERE transaction_id = @id`,
    params: { id: decoded.transaction_id },
  });
  const row = rows[0] as {
    transaction_id: string;
    amount: { toFixed(n: number): string };
    transaction_date: { value: string };
  };
  if (!row) throw new Error(`the row with insertId ${insertId} is not in BigQuery`);
  say(
    `   row ${row.transaction_id}: amount ${row.amount.toFixed(2)}, date ${row.transaction_date.value} (insertId ${insertId})`,
  );
  say('');
  say(
    'done: producer → Kafka → registry → BigQuery. The stack keeps running; stop it with `npx txstream stack down`.',
  );
}
