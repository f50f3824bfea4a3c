import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Consumer } from 'kafkajs';
import { runInit } from '../../../src/admin/init.ts';
import type { Alert, AlertRule } from '../../../src/alerts/model.ts';
import { buildForwarderApp, routesFromRules, type ForwarderApp } from '../../../src/alerts/forward.ts';
import { loadRules, type RuleSet } from '../../../src/alerts/rules.ts';
import { buildConsumerApp, type ConsumerApp } from '../../../src/app.ts';
import type { BankingTransaction } from '../../../src/codec/records.ts';
import { createRegistryClient } from '../../../src/codec/registry.ts';
import { createSchemaCatalog } from '../../../src/codec/schemas.ts';
import { decodeWith } from '../../../src/codec/wire.ts';
import { loadConfig, type Config } from '../../../src/config/config.ts';
import { createTopicAdmin } from '../../../src/kafka/admin.ts';
import { createKafka, kafkaConnection } from '../../../src/kafka/client.ts';
import { createProducer } from '../../../src/producers/producer.ts';
import type { JobContext } from '../../../src/schedules/job.ts';
import {
  createMonitorsJob,
  type MonitorsJob,
  type MonitorsJobOptions,
} from '../../../src/schedules/monitors.ts';
import { createQualityJob } from '../../../src/schedules/quality.ts';
import { createViewsJob, deployViews, MATERIALIZED_VIEWS } from '../../../src/schedules/views.ts';
import { PROJECT_ROOT } from '../../../src/stack/settings.ts';
import { createTopicCatalogue } from '../../../src/topics.ts';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import { runQuery } from '../../../src/warehouse/query.ts';
import { describeTable } from '../../../src/warehouse/tables.ts';
import { createGenerator } from '../../../src/workload/index.ts';
import { startHttpSink, startSmtpSink, type HttpSink, type SmtpSink } from '../../support/alert-sinks.ts';
import { removeInitialized } from '../../support/cleanup.ts';
import { scrapeMetrics, until } from '../../support/consumer-harness.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';
import { freePorts } from '../../support/ports.ts';
import { insertDimensions, insertJobExecutions, insertTransactions } from '../../support/warehouse-data.ts';

// The monitors job against the real broker, registry and emulator: each of the seed's four rules fires
// from a real condition and resolves when it clears, and its Alert is read back, Avro-decoded, from the
// alerts topic (its own prefix).
// - High Streaming Latency: a real consumer app writing through a proxy that holds every insertAll;
//   the p99 of its end-to-end histogram over the window crosses the threshold; without the delay the
//   next window's p99 is below it.
// - BigQuery Cost Spike: the bytes the same consumer streamed today, at a price per GiB set high enough
//   for a few KB to cost more than the threshold; it clears when the UTC day turns (the job's clock is
//   moved to just after midnight).
// - Materialized View Stale: fallback tables older than a threshold of a few seconds; the rule's
//   `views` action rebuilds them, and the next evaluation resolves.
// - Data Quality Failure: the real quality job over data with negative amounts injected; deleting them
//   and re-running the job clears it.
// Meanwhile `alerts forward` (in-process, the shipped rules' routing) delivers every alert to local
// stand-ins for Slack, PagerDuty and SMTP; the last tests check each seed rule's FIRING and RESOLVED
// reached its channel with the alert's content.

const e = testEndpoints();
const prefix = `${uniqueName('alerteval')}.`;
const streamDataset = uniqueName('alerteval_stream');
const warehouseDataset = uniqueName('alerteval_wh');
const bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
const registry = createRegistryClient({ url: e.schemaRegistryUrl });
const BASE_ENV: NodeJS.ProcessEnv = {
  KAFKA_BROKERS: e.kafkaBrokers.join(','),
  SCHEMA_REGISTRY_URL: e.schemaRegistryUrl,
  BQ_API_ENDPOINT: e.bqApiEndpoint,
  GCP_PROJECT_ID: e.bqProjectId,
  LOG_LEVEL: 'warn',
  KAFKA_SESSION_TIMEOUT_MS: '6000',
  KAFKA_HEARTBEAT_INTERVAL_MS: '1000',
};
const alertTopic = createTopicCatalogue({ prefix }).get('alerts').name;
const alertType = createSchemaCatalog().load('Alert').type;
const received: { key: string; alert: Alert }[] = [];
let reader: Consumer;
const jobs: MonitorsJob[] = [];
let slack: HttpSink;
let pagerduty: HttpSink;
let smtp: SmtpSink;
let forwarder: ForwarderApp;

const quiet = { info: () => {}, warn: () => {}, error: () => {} };
function context(config: Readonly<Config>, dataset: string): JobContext {
  return {
    config,
    bq,
    dataset,
    logger: quiet,
    now: new Date(),
    signal: new AbortController().signal,
  };
}

let seed: RuleSet;

/** A rule of the shipped alerts.yaml, with the test's threshold (and `for` 0: one evaluation fires). */
function seedRule(name: string, over: Partial<AlertRule> = {}): AlertRule {
  const r = seed.byName.get(name);
  assert.ok(r, `alerts.yaml has no rule ${name}`);
  return { ...r, forMs: 0, ...over };
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** A monitors job on the test's alert topic; closed after the file. */
function monitors(o: {
  rules: AlertRule[];
  runJob?: MonitorsJobOptions['runJob'];
  clock?: () => number;
}): MonitorsJob {
  const job = createMonitorsJob({
    rules: o.rules,
    registry,
    topicPrefix: prefix,
    runJob: o.runJob ?? (async (name) => assert.fail(`unexpected action ${name}`)),
    // Evaluations seconds apart: each window starts at the previous scrape.
    windowMs: 1,
    ...(o.clock ? { clock: o.clock } : {}),
  });
  jobs.push(job);
  return job;
}

/** The alerts of a rule read back from the topic, waiting until `n` have arrived. */
async function alertsOf(ruleName: string, n: number): Promise<Alert[]> {
  const of = () => received.filter((r) => r.alert.rule_name === ruleName);
  await until(`${n} alerts of ${ruleName} on ${alertTopic}`, async () => of().length >= n, 30_000);
  for (const r of of()) assert.equal(r.key, r.alert.dedup_key, 'keyed by dedup key');
  return of().map((r) => r.alert);
}

/** A reverse proxy to the emulator that holds each insertAll for `delayMs` before passing it on. */
async function startDelayProxy(target: string) {
  const t = new URL(target);
  let delayMs = 0;
  const agent = new http.Agent({ keepAlive: true });
  const server = http.createServer((req, res) => {
    const wait = /\/insertAll(?:\?|$)/.test(req.url ?? '') ? delayMs : 0;
    const forward = () => {
      const up = http.request(
        {
          hostname: t.hostname,
          port: t.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: t.host },
          agent,
        },
        (r) => {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
        },
      );
      up.once('error', () => res.destroy());
      req.pipe(up);
    };
    if (wait > 0) {
      req.pause();
      setTimeout(() => {
        req.resume();
        forward();
      }, wait);
    } else forward();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    setDelay: (ms: number) => (delayMs = ms),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
        agent.destroy();
      }),
  };
}

before(async () => {
  seed = await loadRules(path.join(PROJECT_ROOT, 'alerts.yaml'));
  const config = loadConfig(BASE_ENV);
  const admin = createTopicAdmin(kafkaConnection(config, 'test-init'));
  try {
    await runInit({
      catalogue: createTopicCatalogue({ prefix }),
      schemas: createSchemaCatalog(),
      registry,
      admin,
      settings: { ...config.topics, partitions: 1 },
    });
  } finally {
    await admin.close();
  }
  for (const ds of [streamDataset, warehouseDataset]) {
    const report = await deployViews(bq, ds);
    assert.equal(report.failed, 0, JSON.stringify(report));
  }
  reader = createKafka({ brokers: e.kafkaBrokers, clientId: 'alerts-evaluate-test' }).consumer({
    groupId: uniqueName('alerts-reader'),
  });
  await reader.connect();
  await reader.subscribe({ topic: alertTopic, fromBeginning: true });
  await reader.run({
    eachMessage: async ({ message }) => {
      received.push({ key: message.key!.toString(), alert: decodeWith(alertType, message.value!) as Alert });
    },
  });

  slack = await startHttpSink('/services/T0/B0/slack-test-secret');
  pagerduty = await startHttpSink('/v2/enqueue');
  pagerduty.answer(() => ({ status: 202, body: '{"status":"success"}' }));
  smtp = await startSmtpSink();
  const forwarding = loadConfig({
    ...BASE_ENV,
    SLACK_WEBHOOK_URL: slack.url,
    PAGERDUTY_ROUTING_KEY: 'pd-test-routing-key',
    PAGERDUTY_EVENTS_URL: pagerduty.url,
    SMTP_HOST: smtp.host,
    SMTP_PORT: String(smtp.port),
    ALERT_EMAIL_TO: 'ops@example.com',
    ALERTS_CHANNEL_RATE_PER_MINUTE: '600',
    METRICS_PORT: '0',
    LOG_LEVEL: 'error',
  });
  forwarder = buildForwarderApp({
    config: forwarding,
    groupId: uniqueName('alerteval-forwarder'),
    topicPrefix: prefix,
    routesFor: routesFromRules(seed.byName, forwarding.alerts.repeatIntervalMs),
  });
  await forwarder.start();
});

after(async () => {
  for (const j of jobs) await j.close();
  await forwarder?.stop();
  await slack?.close();
  await pagerduty?.close();
  await smtp?.close();
  await reader?.disconnect();
  await removeInitialized(prefix).catch(() => undefined);
  for (const ds of [streamDataset, warehouseDataset])
    await bq
      .dataset(ds)
      .delete({ force: true })
      .catch(() => undefined);
});

describe('from a real consumer', () => {
  let app: ConsumerApp;
  let proxy: Awaited<ReturnType<typeof startDelayProxy>>;
  let config: Readonly<Config>;
  let port: number;
  let produced = 0;
  const groupId = uniqueName('alerteval-consumer');
  const generator = createGenerator({ seed: 'alerteval', startTime: new Date(Date.now() - 3_600_000) });
  const stream = generator.transactions({});

  before(async () => {
    proxy = await startDelayProxy(e.bqApiEndpoint);
    [port] = (await freePorts(1)) as [number];
    config = loadConfig({
      ...BASE_ENV,
      BQ_API_ENDPOINT: proxy.url,
      // The slow responses come from an HTTP proxy in front of insertAll (the Storage Write API's gRPC
      // would go around it); the alerts read the same metrics from either sink.
      BQ_WRITE_API: 'insert-all',
      BQ_DATASET: streamDataset,
      BQ_STREAMING_INTERVAL_MS: '200',
      // The poison record's dead-lettering is expected here.
      LOG_LEVEL: 'error',
      METRICS_PORT: String(port),
      ALERTS_CONSUMER_METRICS_URLS: `http://127.0.0.1:${port}/metrics`,
      // A few KB streamed cost dollars at this price, so real bytes cross the threshold.
      BQ_PRICE_PER_GIB_STREAMED: '1000000',
    });
    app = await buildConsumerApp({ config, groupId, topicPrefix: prefix });
    await app.start();
  });
  after(async () => {
    await app?.stop();
    await proxy?.close();
  });

  async function produceAndLand(n: number): Promise<void> {
    const producer = await createProducer({ config, topic: 'transactions', registry, topicPrefix: prefix });
    try {
      const records: BankingTransaction[] = [];
      for (let i = 0; i < n; i++) records.push(stream.next().value as BankingTransaction);
      const results = await producer.send(records);
      assert.ok(results.every((r) => r.status === 'sent'));
    } finally {
      await producer.close();
    }
    produced += n;
    const inserted = `txstream_records_inserted_total{topic="${prefix}banking.transactions.v1"}`;
    await until(
      `${produced} rows acknowledged`,
      async () => (await scrapeMetrics(port)).get(inserted) === produced,
    );
  }

  it('High Streaming Latency fires from slow BigQuery responses and resolves when they are fast again', async () => {
    const latency = seedRule('high_streaming_latency', { threshold: 1.5 });
    const job = monitors({ rules: [latency] });
    const ctx = context(config, streamDataset);

    // The first scrape only starts the window.
    let outcome = await job.run(ctx);
    assert.equal(job.lastReport()!.rules[0]!.status, 'no_data');
    assert.equal(job.lastReport()!.rules[0]!.expected, true);
    assert.equal(outcome.ok, true, 'a first reading is not a failure');

    proxy.setDelay(2500);
    await produceAndLand(40);
    outcome = await job.run(ctx);
    assert.equal(outcome.ok, true, outcome.summary);
    assert.match(outcome.summary, /^1 firing, 0 pending, 0 resolved/);
    const [firing] = await alertsOf('high_streaming_latency', 1);
    assert.equal(firing!.status, 'FIRING');
    assert.equal(firing!.dedup_key, 'high_streaming_latency');
    assert.ok(firing!.value > 2.5, `p99 ${firing!.value} reflects the 2.5 s delay`);
    assert.equal(firing!.threshold, 1.5);
    assert.equal(firing!.metric, 'streaming_latency_p99_seconds');
    assert.equal(firing!.severity, 'warning');
    assert.equal(firing!.summary, `Streaming latency p99 is ${round3(firing!.value)} s, over 1.5 s`);
    assert.equal(firing!.description, latency.description);
    assert.deepEqual(firing!.labels, { team: 'data-platform', component: 'consumer' });
    assert.equal(firing!.source, 'scheduler/monitors');
    assert.equal(firing!.runbook_url, latency.runbookUrl);
    assert.equal(firing!.resolved_at, null);

    proxy.setDelay(0);
    await produceAndLand(40);
    await job.run(ctx);
    const [, resolved] = await alertsOf('high_streaming_latency', 2);
    assert.equal(resolved!.status, 'RESOLVED');
    assert.equal(resolved!.dedup_key, firing!.dedup_key);
    assert.equal(resolved!.fired_at, firing!.fired_at);
    assert.ok(resolved!.resolved_at! > firing!.fired_at);
    assert.ok(resolved!.value < 1.5, `p99 ${resolved!.value} without the delay`);
  });

  it('BigQuery Cost Spike fires from bytes streamed today and resolves when the UTC day turns', async () => {
    let shift = 0;
    const ctx = context(config, streamDataset);
    const bytes = async () =>
      (await scrapeMetrics(port)).get(
        `txstream_inserted_bytes_total{topic="${prefix}banking.transactions.v1"}`,
      ) ?? 0;
    const costOf = (b: number) => (b / 2 ** 30) * 1_000_000;
    // What the consumer streamed so far today (the latency test's rows) counts, since it started today:
    // the threshold is $5 above it.
    const before = await bytes();
    const cost = seedRule('bigquery_cost_spike', { threshold: costOf(before) + 5 });
    const job = monitors({ rules: [cost], clock: () => Date.now() + shift });
    await job.run(ctx);
    const first = job.lastReport()!;
    assert.ok(
      Math.abs(first.rules[0]!.samples[0]!.value - costOf(before)) < 1e-6,
      JSON.stringify(first.rules),
    );
    assert.equal(first.events.length, 0);

    await produceAndLand(40);
    const streamed = await bytes();
    assert.ok(costOf(streamed) > cost.threshold, `${streamed} bytes cost $${costOf(streamed)}`);
    await job.run(ctx);
    const firing = (await alertsOf('bigquery_cost_spike', 1)).at(-1)!;
    assert.equal(firing.status, 'FIRING');
    assert.equal(firing.metric, 'bigquery_daily_cost_usd');
    assert.equal(
      firing.summary,
      `Today's BigQuery cost is ${round3(firing.value)} USD, over ${round3(cost.threshold)} USD`,
    );
    // The emulator reports 0 bytes processed for queries: the cost is the streamed bytes'.
    assert.ok(Math.abs(firing.value - costOf(streamed)) < 1e-6, `${firing.value} vs ${costOf(streamed)}`);

    // Just after the next UTC midnight nothing has been streamed or queried yet.
    const now = Date.now();
    shift = Date.parse(`${new Date(now).toISOString().slice(0, 10)}T00:00:00Z`) + 86_400_000 + 60_000 - now;
    await job.run(ctx);
    const resolved = (await alertsOf('bigquery_cost_spike', 2)).at(-1)!;
    assert.equal(resolved.status, 'RESOLVED');
    assert.equal(resolved.value, 0);
    assert.equal(resolved.fired_at, firing.fired_at);
  });

  it('measures consumer lag, DLQ growth and view query time from Kafka and the warehouse', async () => {
    const tx = `${prefix}banking.transactions.v1`;
    const jobsTopic = `${prefix}rpa.job-executions.v1`;
    const rules = [
      seedRule('consumer_lag_high', { threshold: 0 }),
      seedRule('dead_letters_growing'),
      seedRule('view_query_slow'),
    ];
    const lagOf = async (group: string) => {
      const job = monitors({ rules: [rules[0]!] });
      await job.run(
        context({ ...config, alerts: { ...config.alerts, consumerGroup: group } }, streamDataset),
      );
      return job.lastReport()!.rules[0]!.samples;
    };
    // The consumer's group has committed everything it wrote; a group that never consumed is behind by
    // every record in the topics.
    await until('the consumer to commit', async () => (await lagOf(groupId)).every((s) => s.value === 0));
    assert.deepEqual(await lagOf(uniqueName('never-consumed')), [
      { labels: { topic: tx }, value: produced },
      { labels: { topic: jobsTopic }, value: 0 },
    ]);

    const job = monitors({ rules: rules.slice(1) });
    const ctx = context(config, streamDataset);
    await job.run(ctx);
    let report = job.lastReport()!;
    assert.equal(report.rules[0]!.status, 'no_data', 'the first DLQ reading only starts the window');
    const probes = report.rules[1]!.samples;
    assert.deepEqual(
      probes.map((p) => p.labels.view),
      [
        'v_daily_transaction_summary',
        'v_job_performance_metrics',
        'v_hourly_network_performance',
        'v_hourly_network_performance_7d',
      ],
    );
    assert.ok(
      probes.every((p) => p.value > 0 && p.value < 10),
      JSON.stringify(probes),
    );

    // A record no decoder can read goes to the DLQ.
    const producer = createKafka({ brokers: e.kafkaBrokers, clientId: 'alerteval-poison' }).producer();
    await producer.connect();
    await producer.send({ topic: tx, messages: [{ key: 'poison', value: Buffer.from('not avro') }] });
    await producer.disconnect();
    await until(
      'the poison record to be dead-lettered',
      async () =>
        (await scrapeMetrics(port)).get(`txstream_records_dead_lettered_total{topic="${tx}"}`) === 1,
    );
    await job.run(ctx);
    report = job.lastReport()!;
    assert.deepEqual(report.rules[0]!.samples, [
      { labels: { topic: `${tx}.dlq` }, value: 1 },
      { labels: { topic: `${jobsTopic}.dlq` }, value: 0 },
    ]);
    const [dead] = await alertsOf('dead_letters_growing', 1);
    assert.equal(dead!.status, 'FIRING');
    assert.equal(dead!.dedup_key, `dead_letters_growing{topic=${tx}.dlq}`);
    assert.equal(dead!.summary, `1 new records in dead-letter topic ${tx}.dlq`);
    // Nothing new since: the window's growth is 0 and the alert resolves.
    await job.run(ctx);
    const [, resolved] = await alertsOf('dead_letters_growing', 2);
    assert.equal(resolved!.status, 'RESOLVED');
    assert.equal(resolved!.value, 0);
  });
});

describe('from the warehouse', () => {
  const config = loadConfig({ ...BASE_ENV, BQ_DATASET: warehouseDataset });
  const ctx = () => context(config, warehouseDataset);

  it('Materialized View Stale fires for views older than the threshold, runs the refresh, and resolves', async () => {
    const STALE_S = 4;
    const stale = seedRule('materialized_view_stale', { threshold: STALE_S });
    const actions: string[] = [];
    const job = monitors({
      rules: [stale],
      runJob: async (name, c) => {
        actions.push(name);
        assert.equal(name, 'views');
        return createViewsJob().run(c);
      },
    });
    // Fresh: rebuilt just now.
    await createViewsJob().run(ctx());
    await job.run(ctx());
    const fresh = job.lastReport()!.rules[0]!;
    assert.equal(fresh.samples.length, MATERIALIZED_VIEWS.length);
    assert.ok(
      fresh.instances.every((i) => i.status === 'inactive'),
      JSON.stringify(fresh.instances),
    );

    // Older than the threshold as time passes (all three, so that one evaluation sees them all stale).
    await until(
      'the views to be older than the threshold',
      async () => {
        const infos = await Promise.all(
          MATERIALIZED_VIEWS.map((v) => describeTable(bq, warehouseDataset, v)),
        );
        return infos.every((i) => Date.now() - i!.lastModifiedTime!.getTime() > (STALE_S + 0.5) * 1000);
      },
      (STALE_S + 10) * 1000,
    );
    await job.run(ctx());
    const report = job.lastReport()!;
    assert.equal(report.firing, MATERIALIZED_VIEWS.length);
    assert.deepEqual(actions, ['views']);
    assert.equal(report.actions[0]!.ok, true, report.actions[0]!.summary);
    const firing = await alertsOf('materialized_view_stale', MATERIALIZED_VIEWS.length);
    assert.deepEqual(
      firing.map((a) => [a.dedup_key, a.status]).sort(),
      MATERIALIZED_VIEWS.map((v) => [`materialized_view_stale{view=${v}}`, 'FIRING']).sort(),
    );
    for (const a of firing) {
      assert.ok(a.value > STALE_S);
      assert.equal(a.summary, `View ${a.labels.view} is ${round3(a.value)} s old, over ${STALE_S} s`);
    }

    // The refresh made them fresh.
    await job.run(ctx());
    const resolved = (await alertsOf('materialized_view_stale', 2 * MATERIALIZED_VIEWS.length)).slice(
      MATERIALIZED_VIEWS.length,
    );
    assert.deepEqual(
      resolved.map((a) => a.status),
      MATERIALIZED_VIEWS.map(() => 'RESOLVED'),
    );
    for (const a of resolved) assert.ok(a.value < STALE_S);
    assert.deepEqual(actions, ['views'], 'the action runs when alerts start firing, not when they resolve');
  });

  it('Data Quality Failure fires from the quality job’s findings and resolves when the data is fixed', async () => {
    const now = new Date();
    const from = new Date(now.getTime() - 2 * 86_400_000);
    const gen = createGenerator({ seed: 'alerteval-quality', startTime: from, ratePerSecond: 0.01 });
    const transactions = [...gen.transactions({ from, to: now })];
    const BAD = 12;
    const negative = transactions.slice(-BAD).map((t, i) => ({
      ...t,
      transaction_id: `negative-${i}`,
      amount: `-${i + 1}.00`,
    }));
    await insertTransactions(bq, warehouseDataset, [...transactions, ...negative], now);
    await insertJobExecutions(bq, warehouseDataset, [...gen.jobExecutions({ from, to: now })], now);
    await insertDimensions(bq, warehouseDataset, gen, now);

    const dq = seedRule('data_quality_failure');
    assert.equal(dq.threshold, 10, "the seed's threshold");
    const failed: AlertRule = {
      ...dq,
      name: 'quality_checks_failed',
      metric: 'quality_failed_checks',
      threshold: 0,
    };
    const job = monitors({ rules: [dq, failed] });
    const quality = createQualityJob();

    await createViewsJob().run(ctx());
    const q1 = await quality.run(ctx());
    assert.equal(q1.ok, false, q1.summary);
    await job.run(ctx());
    const [firing] = await alertsOf('data_quality_failure', 1);
    assert.equal(firing!.status, 'FIRING');
    assert.equal(firing!.severity, 'critical');
    assert.equal(firing!.metric, 'anomaly_count');
    assert.ok(firing!.value >= BAD, `${firing!.value} counts the ${BAD} negative amounts`);
    const findings = await runQuery(bq, {
      sql: `SELECT SUM(finding_count) AS n FROM \`${warehouseDataset}.ops_quality_results\` WHERE NOT passed`,
    });
    assert.equal(firing!.value, Number(findings.rows[0]!.n));

    // Fixed at the source, checked again.
    await runQuery(bq, {
      sql: `DELETE FROM \`${warehouseDataset}.fact_banking_transactions\` WHERE transaction_id LIKE 'negative-%'`,
    });
    await createViewsJob().run(ctx());
    await quality.run(ctx());
    await job.run(ctx());
    const [, resolved] = await alertsOf('data_quality_failure', 2);
    assert.equal(resolved!.status, 'RESOLVED');
    assert.ok(resolved!.value <= 10, `${resolved!.value} after the fix`);
    assert.equal(resolved!.dedup_key, 'data_quality_failure');
  });

  it('measures monthly storage growth of the fact tables from their partitions', async () => {
    const now = new Date();
    const old = new Date(now.getTime() - 40 * 86_400_000);
    const gen = createGenerator({ seed: 'alerteval-old', startTime: old, ratePerSecond: 0.01 });
    const earlier = [...gen.transactions({ from: old, count: 25 })].map((t, i) => ({
      ...t,
      transaction_id: `old-${i}`,
    }));
    await insertTransactions(bq, warehouseDataset, earlier, now, 1_000_000);
    const recent = await runQuery(bq, {
      sql: `SELECT COUNT(*) AS n FROM \`${warehouseDataset}.fact_banking_transactions\` WHERE transaction_id NOT LIKE 'old-%'`,
    });
    const job = monitors({ rules: [seedRule('storage_growth_high')] });
    await job.run(ctx());
    const r = job.lastReport()!.rules[0]!;
    // fact_job_executions has no rows older than 30 days: no base to grow from, no sample.
    assert.deepEqual(r.samples, [
      { labels: { table: 'fact_banking_transactions' }, value: Number(recent.rows[0]!.n) / earlier.length },
    ]);
    const [growth] = await alertsOf('storage_growth_high', 1);
    assert.equal(growth!.status, 'FIRING');
    assert.equal(growth!.severity, 'info');
  });
});

describe('delivered by alerts forward, as the shipped rules route them', () => {
  /** The FIRING and RESOLVED alerts of a rule on the topic (the test above produced both). */
  function lifecycle(rule: string): { firing: Alert; resolved: Alert } {
    const of = received.filter((r) => r.alert.rule_name === rule).map((r) => r.alert);
    const firing = of.find((a) => a.status === 'FIRING');
    const resolved = of.find((a) => a.status === 'RESOLVED' && a.dedup_key === firing?.dedup_key);
    assert.ok(firing && resolved, `${rule}: a FIRING and its RESOLVED on the topic`);
    return { firing, resolved };
  }

  /** Slack messages about a rule (its name is in the message's context block). */
  const slackOf = (rule: string) => slack.requests.filter((r) => r.text.includes(`rule \`${rule}\``));

  it('High Streaming Latency and Materialized View Stale reach Slack, firing then resolved', async () => {
    for (const rule of ['high_streaming_latency', 'materialized_view_stale']) {
      const { firing, resolved } = lifecycle(rule);
      await until(`${rule} FIRING and RESOLVED on Slack`, async () => {
        const texts = slackOf(rule).map((r) => (r.json as { text: string }).text);
        return texts.some((t) => t.startsWith('[warning]')) && texts.some((t) => t.startsWith('Resolved:'));
      });
      // The firing message carries the alert's content: summary, value against threshold, time, runbook.
      const first = slackOf(rule).find((r) => r.text.includes(firing.summary));
      assert.ok(first, `a Slack message with "${firing.summary}"`);
      assert.ok(first.text.includes(`threshold ${Math.round(firing.threshold * 1000) / 1000}`));
      assert.ok(first.text.includes(firing.runbook_url!), 'a runbook link');
      assert.ok(first.text.includes(new Date(Math.floor(firing.fired_at / 1000)).toISOString()), 'the time');
      assert.ok(slackOf(rule).some((r) => r.text.includes(resolved.summary)));
    }
  });

  it('BigQuery Cost Spike reaches finance by e-mail, firing then resolved', async () => {
    const { firing } = lifecycle('bigquery_cost_spike');
    // Bodies are quoted-printable: soft line breaks (=CRLF) and =XX escapes undone before matching.
    const text = (body: string) =>
      body
        .replace(/=\r\n/g, '')
        .replace(/=([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
    const mails = () => smtp.mails.filter((m) => /Rule:\s+bigquery_cost_spike/.test(text(m.body)));
    await until('cost spike FIRING and RESOLVED mails', async () => mails().length >= 2);
    const [fired, cleared] = mails();
    assert.deepEqual(fired!.to, ['finance@example.com'], 'the rule routes to finance, not ALERT_EMAIL_TO');
    assert.match(fired!.headers.subject!, /^\[FIRING\]\[warning\]/);
    assert.match(cleared!.headers.subject!, /^\[RESOLVED\]/);
    assert.ok(fired!.headers.subject!.includes(firing.summary));
    assert.ok(fired!.body.includes('bigquery_daily_cost_usd'));
  });

  it('Data Quality Failure triggers a PagerDuty incident and resolves it with the same dedup key', async () => {
    const { firing } = lifecycle('data_quality_failure');
    type Event = {
      routing_key: string;
      event_action: string;
      dedup_key: string;
      payload?: { severity: string };
    };
    const events = () =>
      pagerduty.requests.map((r) => r.json as Event).filter((j) => j.dedup_key === firing.dedup_key);
    await until('trigger and resolve on PagerDuty', async () =>
      ['trigger', 'resolve'].every((a) => events().some((e) => e.event_action === a)),
    );
    const trigger = events().find((e) => e.event_action === 'trigger')!;
    assert.equal(trigger.routing_key, 'pd-test-routing-key');
    assert.equal(trigger.payload?.severity, 'critical');
    assert.equal(events().filter((e) => e.event_action === 'trigger').length, 1, 'repeats are suppressed');
  });
});
