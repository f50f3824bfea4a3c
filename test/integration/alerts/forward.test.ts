import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import type { Admin } from 'kafkajs';
import { runInit } from '../../../src/admin/init.ts';
import { ALERT_DLQ_HEADERS, buildForwarderApp } from '../../../src/alerts/forward.ts';
import type { ForwarderApp, RoutesFor } from '../../../src/alerts/forward.ts';
import type { Alert, Route } from '../../../src/alerts/model.ts';
import { createRegistryClient } from '../../../src/codec/registry.ts';
import { createSchemaCatalog } from '../../../src/codec/schemas.ts';
import { loadConfig } from '../../../src/config/config.ts';
import { createTopicAdmin } from '../../../src/kafka/admin.ts';
import { createKafka, kafkaConnection } from '../../../src/kafka/client.ts';
import { parseDlqHeaders } from '../../../src/producers/dlq.ts';
import { createProducer } from '../../../src/producers/producer.ts';
import { createTopicCatalogue } from '../../../src/topics.ts';
import { startHttpSink, startSmtpSink } from '../../support/alert-sinks.ts';
import type { HttpSink } from '../../support/alert-sinks.ts';
import { removeInitialized } from '../../support/cleanup.ts';
import { readTopic } from '../../support/consume.ts';
import { scrapeMetrics, TXSTREAM_BIN, until } from '../../support/consumer-harness.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';
import { freePorts } from '../../support/ports.ts';

// `txstream alerts forward` against the real broker and registry, with local servers standing in for
// Slack, PagerDuty and the mail relay: Retry-After honoured, 5xx retried, a channel down past the retry
// budget dead-lettered while later alerts flow, a SIGKILL mid-delivery losing nothing, repeat
// suppression, and e-mail. Each test has its own topics (prefix) and consumer group.

const e = testEndpoints();
const BASE_ENV: NodeJS.ProcessEnv = {
  ...process.env,
  KAFKA_BROKERS: e.kafkaBrokers.join(','),
  SCHEMA_REGISTRY_URL: e.schemaRegistryUrl,
  BQ_API_ENDPOINT: e.bqApiEndpoint,
  GCP_PROJECT_ID: e.bqProjectId,
  METRICS_PORT: '0',
  LOG_LEVEL: 'warn',
  KAFKA_SESSION_TIMEOUT_MS: '6000',
  KAFKA_HEARTBEAT_INTERVAL_MS: '1000',
  ALERTS_CHANNEL_RATE_PER_MINUTE: '10000',
};
const registry = createRegistryClient({ url: e.schemaRegistryUrl });
const prefixes: string[] = [];
let admin: Admin;

before(async () => {
  admin = createKafka({ brokers: e.kafkaBrokers, clientId: 'alerts-forward-test' }).admin();
  await admin.connect();
});
after(async () => {
  await admin.disconnect();
  for (const p of prefixes) await removeInitialized(p).catch(() => undefined);
});

/** Topics and schemas of a fresh prefix, and a producer of alerts onto it. */
async function topics(t: TestContext, name: string, partitions = 1) {
  const prefix = `${uniqueName(name)}.`;
  prefixes.push(prefix);
  const config = loadConfig(BASE_ENV);
  const topicAdmin = createTopicAdmin(kafkaConnection(config, 'test-init'));
  try {
    await runInit({
      catalogue: createTopicCatalogue({ prefix }),
      schemas: createSchemaCatalog(),
      registry,
      admin: topicAdmin,
      settings: { ...config.topics, partitions },
    });
  } finally {
    await topicAdmin.close();
  }
  const producer = await createProducer({ config, topic: 'alerts', registry, topicPrefix: prefix });
  t.after(() => producer.close());
  const spec = createTopicCatalogue({ prefix }).get('alerts');
  return {
    prefix,
    topic: spec.name,
    dlq: spec.dlqName,
    /** Produces alerts; returns where each landed. */
    async produce(...alerts: Alert[]): Promise<{ partition: number; offset: string }[]> {
      const results = await producer.send(alerts);
      return results.map((r) => {
        assert.equal(r.status, 'sent', JSON.stringify(r));
        return r as { partition: number; offset: string };
      });
    },
  };
}

function alert(rule: string, over: Partial<Alert> = {}): Alert {
  return {
    alert_id: randomUUID(),
    dedup_key: `${rule}|topic=banking.transactions.v1`,
    rule_name: rule,
    status: 'FIRING',
    severity: 'warning',
    summary: `${rule}: streaming latency 12.5 s over 10 s`,
    description: null,
    metric: 'streaming_latency_p99_seconds',
    value: 12.5,
    threshold: 10,
    labels: { topic: 'banking.transactions.v1' },
    fired_at: Date.now() * 1000,
    resolved_at: null,
    runbook_url: 'https://runbooks.example.com/latency',
    source: 'test',
    ...over,
  };
}

const routes =
  (r: Route[], repeatIntervalMs = 3_600_000): RoutesFor =>
  () => ({ routes: r, repeatIntervalMs });

/** The forwarder in this process on the test's topics, stopped (SIGTERM's path) after the test. */
async function forwarder(
  t: TestContext,
  prefix: string,
  env: NodeJS.ProcessEnv,
  routesFor: RoutesFor,
): Promise<{ app: ForwarderApp; group: string }> {
  const group = uniqueName('forwarder');
  const app = buildForwarderApp({
    config: loadConfig({ ...BASE_ENV, ...env }),
    routesFor,
    groupId: group,
    topicPrefix: prefix,
  });
  await app.start();
  t.after(() => app.stop());
  return { app, group };
}

/** The group's committed offsets reached the end of every partition of `topic`. */
async function committedToEnd(group: string, topic: string): Promise<boolean> {
  const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  const ends = await admin.fetchTopicOffsets(topic);
  return ends.every(
    (end) => committed!.partitions.find((p) => p.partition === end.partition)?.offset === end.high,
  );
}

const bodyOf = (s: HttpSink, i: number) => s.requests[i]!.json as Record<string, unknown>;

describe('alerts forward', { timeout: 120_000 }, () => {
  it('Slack 429 with Retry-After: 2, then 200: delivered once, not before 2 s', async (t) => {
    const s = await topics(t, 'fwd-slack');
    const slack = await startHttpSink();
    t.after(() => slack.close());
    slack.answer((_r, i) =>
      i === 0
        ? { status: 429, headers: { 'retry-after': '2' }, body: 'rate_limited' }
        : { status: 200, body: 'ok' },
    );
    const [metricsPort] = (await freePorts(1)) as [number];
    const { group } = await forwarder(
      t,
      s.prefix,
      { SLACK_WEBHOOK_URL: slack.url, METRICS_PORT: String(metricsPort) },
      routes([{ channel: 'slack' }]),
    );
    const a = alert('slack_retry_after');
    await s.produce(a);
    await until(
      'the alert to be delivered and committed',
      async () => await committedToEnd(group, s.topic),
      30_000,
    );
    assert.equal(slack.requests.length, 2, 'one refused, one delivered');
    const waited = slack.requests[1]!.at - slack.requests[0]!.at;
    t.diagnostic(`second attempt ${waited} ms after the first`);
    assert.ok(waited >= 2000, `waited ${waited} ms`);
    assert.deepEqual(slack.requests[0]!.json, slack.requests[1]!.json);
    assert.match(String(bodyOf(slack, 1).text), /slack_retry_after: streaming latency 12\.5 s over 10 s/);
    const m = await scrapeMetrics(metricsPort);
    assert.equal(m.get('txstream_alert_notifications_total{channel="slack",outcome="delivered"}'), 1);
    assert.equal(m.get('txstream_alert_delivery_failures_total{channel="slack",retriable="true"}'), 1);
    assert.equal(m.get('txstream_alert_delivery_seconds_count{channel="slack"}'), 1);
  });

  it('PagerDuty 500 three times, then 202: delivered once; RESOLVED resolves the same dedup key', async (t) => {
    const s = await topics(t, 'fwd-pd');
    const pd = await startHttpSink('/v2/enqueue');
    t.after(() => pd.close());
    let failures = 0;
    pd.answer(() => (failures++ < 3 ? { status: 500 } : { status: 202, body: '{"status":"success"}' }));
    const { group } = await forwarder(
      t,
      s.prefix,
      { PAGERDUTY_ROUTING_KEY: 'test-routing-key', PAGERDUTY_EVENTS_URL: pd.url },
      routes([{ channel: 'pagerduty' }]),
    );
    const a = alert('pd_retry', { severity: 'critical' });
    await s.produce(a);
    await until(
      'the trigger to be delivered',
      async () => pd.requests.length >= 4 && (await committedToEnd(group, s.topic)),
      30_000,
    );
    assert.equal(pd.requests.length, 4, 'three 500s and one 202');
    const trigger = bodyOf(pd, 3);
    assert.equal(trigger.routing_key, 'test-routing-key');
    assert.equal(trigger.event_action, 'trigger');
    assert.equal(trigger.dedup_key, a.dedup_key);
    assert.equal((trigger.payload as { severity: string }).severity, 'critical');

    await s.produce({ ...a, alert_id: randomUUID(), status: 'RESOLVED', resolved_at: Date.now() * 1000 });
    await until(
      'the resolve to be delivered',
      async () => pd.requests.length >= 5 && (await committedToEnd(group, s.topic)),
      30_000,
    );
    assert.equal(pd.requests.length, 5);
    assert.equal(bodyOf(pd, 4).event_action, 'resolve');
    assert.equal(bodyOf(pd, 4).dedup_key, a.dedup_key);
  });

  it('a channel down past the retry budget: the alert is in the DLQ with its reason, later alerts flow', async (t) => {
    const s = await topics(t, 'fwd-dlq');
    const slack = await startHttpSink();
    t.after(() => slack.close());
    // Down for the first alert only; both alerts share a key, so the second waits behind the first.
    slack.answer((r) => (r.text.includes('down_alert') ? { status: 503 } : { status: 200, body: 'ok' }));
    const { group } = await forwarder(
      t,
      s.prefix,
      { SLACK_WEBHOOK_URL: slack.url, ALERTS_RETRY_BUDGET_MS: '1500', ALERTS_MAX_ATTEMPTS: '50' },
      routes([{ channel: 'slack' }]),
    );
    const down = alert('down_alert', { dedup_key: 'shared-key' });
    const later = alert('later_alert', { dedup_key: 'shared-key' });
    const [at] = await s.produce(down);
    // A value no decoder can read, on the same partition: dead-lettered, never a crash.
    const raw = createKafka({ brokers: e.kafkaBrokers, clientId: 'poison' }).producer();
    await raw.connect();
    await raw.send({
      topic: s.topic,
      acks: -1,
      messages: [{ key: 'shared-key', value: Buffer.from('not avro') }],
    });
    await raw.disconnect();
    await s.produce(later);
    await until('everything to be handled and committed', async () => committedToEnd(group, s.topic), 30_000);

    const downRequests = slack.requests.filter((r) => r.text.includes('down_alert'));
    const laterRequests = slack.requests.filter((r) => r.text.includes('later_alert'));
    assert.ok(downRequests.length >= 2, `retried: ${downRequests.length} attempts`);
    assert.equal(laterRequests.length, 1, 'the later alert delivered once');
    assert.ok(laterRequests[0]!.at >= downRequests.at(-1)!.at);

    const letters = await readTopic(e.kafkaBrokers, s.dlq, 2);
    assert.equal(letters.length, 2);
    const byStage = new Map(letters.map((l) => [parseDlqHeaders(l.message.headers).error.stage, l]));
    const letter = byStage.get('deliver')!;
    const h = parseDlqHeaders(letter.message.headers);
    assert.equal(h.error.code, 'DELIVERY_FAILED');
    assert.match(
      h.error.reason,
      /^retry budget of 1500 ms exhausted after \d+ attempts: slack answered HTTP 503$/,
    );
    assert.deepEqual(
      [h.source.topic, h.source.partition, h.source.offset],
      [s.topic, at!.partition, at!.offset],
    );
    const header = (name: string) => letter.message.headers?.[name]?.toString();
    assert.equal(header(ALERT_DLQ_HEADERS.channel), 'slack');
    assert.equal(header(ALERT_DLQ_HEADERS.attempts), String(downRequests.length));
    assert.equal(header(ALERT_DLQ_HEADERS.status), '503');
    assert.ok(letter.value.includes(down.alert_id), 'the original bytes');
    assert.equal(letter.key, 'shared-key');

    const poison = parseDlqHeaders(byStage.get('decode')!.message.headers);
    assert.equal(poison.error.code, 'POISON_RECORD');
    assert.equal(byStage.get('decode')!.value.toString(), 'not avro');
  });

  it('an unchanged firing alert published 20 times: one notification per repeat interval; RESOLVED once', async (t) => {
    const s = await topics(t, 'fwd-repeat');
    const slack = await startHttpSink();
    t.after(() => slack.close());
    const INTERVAL = 3000;
    const { group } = await forwarder(
      t,
      s.prefix,
      { SLACK_WEBHOOK_URL: slack.url },
      routes([{ channel: 'slack' }], INTERVAL),
    );
    const firing = alert('repeat_rule');
    // What the evaluator does at each evaluation while the condition holds: same dedup_key and fired_at.
    const republish = (n: number) =>
      s.produce(...Array.from({ length: n }, () => ({ ...firing, alert_id: randomUUID() })));
    await republish(20);
    await until('the first 20 to be handled', async () => committedToEnd(group, s.topic), 30_000);
    assert.equal(slack.requests.length, 1, 'one notification for 20 evaluations');

    // Waiting for the interval to pass is the condition itself.
    await until(
      'the repeat interval to pass',
      async () => Date.now() >= slack.requests[0]!.at + INTERVAL,
      10_000,
    );
    await republish(20);
    await until('the next 20 to be handled', async () => committedToEnd(group, s.topic), 30_000);
    assert.equal(slack.requests.length, 2, 'one more notification after the interval');

    const resolved = { ...firing, status: 'RESOLVED', resolved_at: Date.now() * 1000 };
    await s.produce(...Array.from({ length: 3 }, () => ({ ...resolved, alert_id: randomUUID() })));
    await until('the RESOLVED to be handled', async () => committedToEnd(group, s.topic), 30_000);
    assert.equal(slack.requests.length, 3, 'RESOLVED sent once');
    assert.match(String(bodyOf(slack, 2).text), /^Resolved: /);
  });

  it('e-mail reaches the SMTP server with the subject, recipients and Message-ID', async (t) => {
    const s = await topics(t, 'fwd-email');
    const smtp = await startSmtpSink();
    t.after(() => smtp.close());
    const routesFor: RoutesFor = (a) => ({
      routes:
        a.rule_name === 'cost_spike'
          ? [{ channel: 'email', to: ['finance@bank.example'] }]
          : [{ channel: 'email' }],
      repeatIntervalMs: 3_600_000,
    });
    const { group } = await forwarder(
      t,
      s.prefix,
      {
        SMTP_HOST: smtp.host,
        SMTP_PORT: String(smtp.port),
        ALERT_EMAIL_FROM: 'alerts@txstream.test',
        ALERT_EMAIL_TO: 'ops@bank.example, data@bank.example',
      },
      routesFor,
    );
    const cost = alert('cost_spike', { summary: 'BigQuery cost $23.10 today over $20', severity: 'warning' });
    const quality = alert('data_quality', { summary: '14 anomalies over 10', severity: 'info' });
    await s.produce(cost, quality);
    await until(
      'both mails',
      async () => smtp.mails.length >= 2 && (await committedToEnd(group, s.topic)),
      30_000,
    );
    assert.equal(smtp.mails.length, 2);
    const bySubject = new Map(smtp.mails.map((m) => [m.headers.subject, m]));
    const c = bySubject.get('[FIRING][warning] BigQuery cost $23.10 today over $20');
    const q = bySubject.get('[FIRING][info] 14 anomalies over 10');
    assert.ok(c && q, [...bySubject.keys()].join(' | '));
    assert.deepEqual(c.to, ['finance@bank.example']);
    assert.deepEqual(q.to.sort(), ['data@bank.example', 'ops@bank.example']);
    assert.equal(c.from, 'alerts@txstream.test');
    assert.equal(c.headers['message-id'], `<alert.${cost.alert_id}@txstream.test>`);
    assert.match(c.body, /Value: +12\.5 \(threshold 10\)/);
  });

  it('SIGKILL mid-delivery and a restart: every alert delivered, only the one in flight twice', async (t) => {
    const s = await topics(t, 'fwd-kill');
    const slack = await startHttpSink();
    t.after(() => slack.close());
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fwd-kill-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const rulesFile = path.join(dir, 'alerts.yaml');
    fs.writeFileSync(rulesFile, KILL_RULES);
    const group = uniqueName('forwarder-kill');
    const env = {
      ...BASE_ENV,
      SLACK_WEBHOOK_URL: slack.url,
      ALERTS_FILE: rulesFile,
      ALERTS_FORWARDER_GROUP: group,
      // Info, to see when the forwarder begins stopping.
      LOG_LEVEL: 'info',
    };
    const start = () => {
      const child = spawn(process.execPath, [TXSTREAM_BIN, 'alerts', 'forward', '--topic-prefix', s.prefix], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      return { child, exited, output: () => output };
    };
    const N = 6;
    const HELD = 3;
    const alerts = Array.from({ length: N }, (_, i) =>
      alert('kill_test_rule', { dedup_key: `kill|${i}`, summary: `kill test alert #${i}` }),
    );
    const count = (i: number) =>
      slack.requests.filter((r) => r.text.includes(`kill test alert #${i}`)).length;
    // The first delivery of alert #3 never gets an answer: it is in flight when the forwarder dies.
    slack.answer((r) =>
      r.text.includes(`kill test alert #${HELD}`) && count(HELD) === 1 ? 'hold' : { status: 200, body: 'ok' },
    );
    await s.produce(...alerts);

    const first = start();
    t.after(() => first.child.kill('SIGKILL'));
    await until('alert #3 in flight', async () => slack.held() === 1, 45_000).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${first.output()}`);
    });
    first.child.kill('SIGKILL');
    await first.exited;
    slack.release({ status: 200, body: 'ok' });

    const second = start();
    t.after(() => second.child.kill('SIGKILL'));
    await until(
      'every alert delivered',
      async () => alerts.every((_, i) => count(i) >= 1) && (await committedToEnd(group, s.topic)),
      45_000,
    );
    const counts = alerts.map((_, i) => count(i));
    t.diagnostic(`deliveries per alert: ${counts.join(', ')}`);
    assert.deepEqual(
      counts,
      alerts.map((_, i) => (i === HELD ? 2 : 1)),
      'once each, twice only for the one in flight',
    );

    // SIGTERM while a delivery is in flight: it finishes, is committed, and the member exits 0.
    const last = alert('kill_test_rule', { dedup_key: 'kill|last', summary: 'kill test alert #last' });
    slack.answer((r) => (r.text.includes('kill test alert #last') ? 'hold' : { status: 200, body: 'ok' }));
    await s.produce(last);
    await until('the last alert in flight', async () => slack.held() === 1, 30_000);
    second.child.kill('SIGTERM');
    await until('the forwarder to begin stopping', async () => second.output().includes('stopping'), 10_000);
    slack.release({ status: 200, body: 'ok' });
    assert.equal(await second.exited, 0, second.output());
    assert.ok(await committedToEnd(group, s.topic), 'the in-flight alert was committed before leaving');
    assert.equal(slack.requests.filter((r) => r.text.includes('kill test alert #last')).length, 1);
    // The webhook URL is the Slack credential: never in a log line.
    assert.ok(!`${first.output()}${second.output()}`.includes(slack.url), 'no webhook URL in the logs');
  });

  it('refuses to start on an invalid rules file, with the line and the reason (exit 1)', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fwd-rules-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'alerts.yaml');
    fs.writeFileSync(file, KILL_RULES.replace('threshold: 10', 'threshold: ten'));
    const child = spawn(process.execPath, [TXSTREAM_BIN, 'alerts', 'forward'], {
      env: { ...BASE_ENV, ALERTS_FILE: file },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 1, stderr);
    assert.ok(stderr.includes(`${file}:7:`), stderr);
    assert.ok(stderr.includes('rules[0].threshold: '), stderr);
  });
});

/** The kill test's rules: its rule goes to Slack only (by default a warning would also go to e-mail). */
const KILL_RULES = `version: 1
rules:
  - name: kill_test_rule
    summary: 'kill test: latency {{value}} s over {{threshold}} s'
    metric: streaming_latency_p99_seconds
    condition: '>'
    threshold: 10
    severity: warning
    routing: [slack]
`;
