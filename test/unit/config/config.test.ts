import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import {
  ConfigError,
  consumerProblems,
  cronFor,
  loadConfig,
  redactConfig,
  scheduleCronVariable,
} from '../../../src/config/config.ts';

// An isolated stack dir without endpoints.json, so nothing falls back to a developer's local stack.
const noStack = { TXSTREAM_STACK_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'txstream-cfg-')) };
const base = {
  ...noStack,
  KAFKA_BROKERS: 'k1:9092, k2:9092',
  SCHEMA_REGISTRY_URL: 'http://registry:8081',
  GCP_PROJECT_ID: 'bank-analytics',
};

test('seed names map onto the config with their defaults', () => {
  const c = loadConfig({ ...base, ENABLE_BQ_STREAMING: 'false', BQ_STREAMING_BATCH_SIZE: '100' });
  assert.deepEqual(c.kafka.brokers, ['k1:9092', 'k2:9092']);
  assert.deepEqual(c.streaming, {
    enabled: false,
    writeApi: 'storage',
    maxInFlight: 4,
    batchSize: 100,
    intervalMs: 1000,
    insertTimeoutMs: 60_000,
  });
  assert.equal(loadConfig({ ...base, BQ_INSERT_TIMEOUT_MS: '5000' }).streaming.insertTimeoutMs, 5000);
  assert.throws(() => loadConfig({ ...base, BQ_INSERT_TIMEOUT_MS: '10' }), /BQ_INSERT_TIMEOUT_MS/);
  assert.equal(c.bigquery.dataset, 'rpa_warehouse');
  assert.equal(c.bigquery.apiEndpoint, undefined, 'a real project id does not pick up the emulator');
  assert.ok(Object.isFrozen(c.kafka));
});

test('BQ_MAX_IN_FLIGHT bounds the writes in flight per member', () => {
  assert.equal(loadConfig({ ...base, BQ_MAX_IN_FLIGHT: '16' }).streaming.maxInFlight, 16);
  for (const bad of ['0', '257', '2.5', 'many'])
    assert.throws(() => loadConfig({ ...base, BQ_MAX_IN_FLIGHT: bad }), /BQ_MAX_IN_FLIGHT/);
});

test('TOPIC_REPLICATION_FACTOR is auto by default, or a replica count from 1 to 32', () => {
  assert.deepEqual(loadConfig(base).topics, {
    partitions: 6,
    replicationFactor: 'auto',
    retentionMs: 604_800_000,
  });
  assert.equal(loadConfig({ ...base, TOPIC_REPLICATION_FACTOR: 'auto' }).topics.replicationFactor, 'auto');
  assert.equal(loadConfig({ ...base, TOPIC_REPLICATION_FACTOR: '3' }).topics.replicationFactor, 3);
  assert.equal(loadConfig({ ...base, TOPIC_REPLICATION_FACTOR: '1' }).topics.replicationFactor, 1);
  assert.equal(loadConfig({ ...base, TOPIC_REPLICATION_FACTOR: '32' }).topics.replicationFactor, 32);
  for (const bad of ['x', '0', '33', '2.5', '-1', 'AUTO'])
    assert.throws(
      () => loadConfig({ ...base, TOPIC_REPLICATION_FACTOR: bad }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, bad);
        assert.equal(err.problems.length, 1, `${bad}: ${err.problems.join(' | ')}`);
        assert.match(err.problems[0]!, /^TOPIC_REPLICATION_FACTOR/, bad);
        return true;
      },
    );
});

test('BQ_WRITE_API picks the streaming sink; an emulator needs its Storage Write gRPC endpoint too', () => {
  assert.equal(loadConfig(base).streaming.writeApi, 'storage', 'the default');
  assert.equal(loadConfig({ ...base, BQ_WRITE_API: 'insert-all' }).streaming.writeApi, 'insert-all');
  assert.throws(() => loadConfig({ ...base, BQ_WRITE_API: 'legacy' }), /BQ_WRITE_API/);
  const emulator = { ...base, BQ_API_ENDPOINT: 'http://127.0.0.1:9050' };
  // Every command loads the config; only the streaming consumer needs the gRPC endpoint.
  assert.match(consumerProblems(loadConfig(emulator)).join('\n'), /BQ_STORAGE_API_ENDPOINT: required/);
  assert.deepEqual(consumerProblems(loadConfig({ ...emulator, BQ_WRITE_API: 'insert-all' })), []);
  assert.deepEqual(consumerProblems(loadConfig({ ...emulator, ENABLE_BQ_STREAMING: 'false' })), []);
  const c = loadConfig({ ...emulator, BQ_STORAGE_API_ENDPOINT: '127.0.0.1:9060' });
  assert.deepEqual(c.bigquery.storageEndpoint, { host: '127.0.0.1', port: 9060 });
  assert.throws(() => loadConfig({ ...emulator, BQ_STORAGE_API_ENDPOINT: 'http://x' }), /host:port/);
  assert.equal(loadConfig(base).bigquery.storageEndpoint, undefined, 'real BigQuery: the Google endpoint');
});

test('all problems are reported in one error', () => {
  assert.throws(
    () =>
      loadConfig({
        ...noStack,
        KAFKA_BROKERS: 'no-port',
        BQ_DATASET: 'rpa; DROP TABLE x',
        BQ_STREAMING_BATCH_SIZE: '0',
        ENABLE_BQ_STREAMING: 'yes',
      }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      for (const name of ['KAFKA_BROKERS', 'BQ_DATASET', 'BQ_STREAMING_BATCH_SIZE', 'ENABLE_BQ_STREAMING'])
        assert.ok(
          err.problems.some((p) => p.startsWith(name)),
          `${name} missing from ${err.problems.join(' | ')}`,
        );
      return true;
    },
  );
});

test('the consumer session timeout is bounded and leaves room for three heartbeats', () => {
  const c = loadConfig({ ...base, KAFKA_SESSION_TIMEOUT_MS: '10000', KAFKA_HEARTBEAT_INTERVAL_MS: '1000' });
  const fetch = { fetchMaxBytes: 4 * 1024 * 1024, fetchMaxBytesPerPartition: 512 * 1024 };
  assert.deepEqual(c.consumer, { sessionTimeoutMs: 10_000, heartbeatIntervalMs: 1000, ...fetch });
  assert.deepEqual(loadConfig(base).consumer, {
    sessionTimeoutMs: 30_000,
    heartbeatIntervalMs: 3000,
    ...fetch,
  });
  assert.equal(loadConfig({ ...base, KAFKA_FETCH_MAX_BYTES: '1048576' }).consumer.fetchMaxBytes, 1_048_576);
  assert.throws(() => loadConfig({ ...base, KAFKA_FETCH_MAX_BYTES_PER_PARTITION: '100' }), /PER_PARTITION/);
  assert.throws(() => loadConfig({ ...base, KAFKA_SESSION_TIMEOUT_MS: '1000' }), /KAFKA_SESSION_TIMEOUT_MS/);
  assert.throws(
    () => loadConfig({ ...base, KAFKA_SESSION_TIMEOUT_MS: '6000', KAFKA_HEARTBEAT_INTERVAL_MS: '3000' }),
    /KAFKA_HEARTBEAT_INTERVAL_MS: 3000 must be at most a third of KAFKA_SESSION_TIMEOUT_MS \(6000\)/,
  );
});

test('quality thresholds are ratios and positive counts', () => {
  assert.deepEqual(loadConfig(base).quality, {
    maxVolumeDeviation: 0.5,
    maxFailureRate: 0.1,
    minExecutions: 10,
    maxAgeSeconds: 3600,
  });
  assert.equal(loadConfig({ ...base, QUALITY_MAX_FAILURE_RATE: '0.2' }).quality.maxFailureRate, 0.2);
  assert.throws(() => loadConfig({ ...base, QUALITY_MAX_FAILURE_RATE: '10' }), /QUALITY_MAX_FAILURE_RATE/);
  assert.throws(
    () => loadConfig({ ...base, QUALITY_MAX_VOLUME_DEVIATION: '0' }),
    /QUALITY_MAX_VOLUME_DEVIATION/,
  );
  assert.throws(() => loadConfig({ ...base, QUALITY_MIN_EXECUTIONS: '0' }), /QUALITY_MIN_EXECUTIONS/);
});

test('analytics settings default to the seed and are bounded', () => {
  assert.deepEqual(loadConfig(base).analytics, {
    engine: 'auto',
    horizonDays: 30,
    confidenceLevel: 0.95,
    historyDays: 365,
    contamination: 0.02,
    minAnomalyScore: 6,
    trainingDays: 90,
    detectDays: 1,
  });
  const local = loadConfig({ ...base, ANALYTICS_ENGINE: 'local', ANALYTICS_CONTAMINATION: '0.5' }).analytics;
  assert.equal(local.engine, 'local');
  assert.equal(local.contamination, 0.5);
  assert.throws(() => loadConfig({ ...base, ANALYTICS_ENGINE: 'arima' }), /ANALYTICS_ENGINE/);
  assert.throws(
    () => loadConfig({ ...base, ANALYTICS_FORECAST_HORIZON_DAYS: '61' }),
    /ANALYTICS_FORECAST_HORIZON_DAYS/,
  );
  assert.throws(() => loadConfig({ ...base, ANALYTICS_CONTAMINATION: '0' }), /ANALYTICS_CONTAMINATION/);
  assert.throws(
    () => loadConfig({ ...base, ANALYTICS_DETECT_TRAINING_DAYS: '27' }),
    /ANALYTICS_DETECT_TRAINING_DAYS/,
  );
});

test('alert channels: secrets from env or files, redacted, settings that go together', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'txstream-config-'));
  const keyFile = path.join(dir, 'pd-key');
  fs.writeFileSync(keyFile, 'pd-secret-routing-key\n');
  const c = loadConfig({
    ...base,
    SLACK_WEBHOOK_URL: 'https://hooks.slack.com/services/T0/B0/slack-secret',
    PAGERDUTY_ROUTING_KEY_FILE: keyFile,
    SMTP_HOST: 'mail.example.com',
    SMTP_USERNAME: 'alerts',
    SMTP_PASSWORD: 'smtp-secret',
    ALERT_EMAIL_TO: 'ops@example.com, finance@example.com',
  });
  assert.equal(c.alerts.pagerduty?.routingKey, 'pd-secret-routing-key');
  assert.deepEqual(c.alerts.email?.to, ['ops@example.com', 'finance@example.com']);
  const printed = JSON.stringify(redactConfig(c));
  for (const secret of ['slack-secret', 'pd-secret-routing-key', 'smtp-secret'])
    assert.ok(!printed.includes(secret));
  assert.throws(() => loadConfig({ ...base, SMTP_HOST: 'mail.example.com' }), /ALERT_EMAIL_TO/);
  assert.throws(
    () => loadConfig({ ...base, SMTP_HOST: 'h', ALERT_EMAIL_TO: 'a@b.co', SMTP_USERNAME: 'u' }),
    /SMTP_USERNAME and SMTP_PASSWORD/,
  );
  assert.throws(() => loadConfig({ ...base, ALERT_EMAIL_TO: 'not-an-address' }), /ALERT_EMAIL_TO/);
  assert.deepEqual(loadConfig(base).alerts.consumerMetricsUrls, []);
});

test('missing endpoints say how to get a local stack', () => {
  assert.throws(() => loadConfig(noStack), /KAFKA_BROKERS: required \(or run `npx txstream stack up`/);
});

test('secrets come from _FILE variables and are redacted', () => {
  const file = path.join(noStack.TXSTREAM_STACK_DIR, 'pw');
  fs.writeFileSync(file, 's3cr3t-value\n');
  const c = loadConfig({
    ...base,
    KAFKA_SASL_MECHANISM: 'scram-sha-512',
    KAFKA_SASL_USERNAME: 'svc',
    KAFKA_SASL_PASSWORD_FILE: file,
    SCHEMA_REGISTRY_URL: 'https://user:hunter2@registry:8081',
  });
  assert.equal(c.kafka.sasl?.password, 's3cr3t-value');
  const printed = JSON.stringify(redactConfig(c));
  assert.doesNotMatch(printed, /s3cr3t-value|hunter2/);
  assert.match(printed, /svc/);
});

test('a SASL mechanism without credentials is refused', () => {
  assert.throws(() => loadConfig({ ...base, KAFKA_SASL_MECHANISM: 'plain' }), /KAFKA_SASL_USERNAME/);
});

test('schedule settings: UTC and the jobs’ own cron by default, overrides validated at start-up', () => {
  const d = loadConfig(base);
  assert.deepEqual(d.schedule, {
    timezone: 'UTC',
    cron: {},
    shutdownTimeoutMs: 25_000,
    catchUpMs: 300_000,
  });
  assert.deepEqual(d.dimensions, { readTimeoutMs: 120_000 });
  const c = loadConfig({
    ...base,
    SCHEDULE_TIMEZONE: 'Europe/Berlin',
    SCHEDULE_DIMENSIONS_CRON: ' 15 * * * * ',
    SCHEDULE_SLO_MONITORS_CRON: '*/10 * * * * *',
    SCHEDULE_JOBS: 'dimensions, slo-monitors',
    SCHEDULE_INSTANCE_ID: 'pod-7',
    SCHEDULE_CATCHUP_MS: '0',
  });
  assert.equal(c.schedule.timezone, 'Europe/Berlin');
  assert.deepEqual(c.schedule.cron, { DIMENSIONS: '15 * * * *', SLO_MONITORS: '*/10 * * * * *' });
  assert.equal(cronFor(c, { name: 'dimensions', defaultSchedule: '0 * * * *' }), '15 * * * *');
  assert.equal(cronFor(c, { name: 'slo-monitors', defaultSchedule: '* * * * *' }), '*/10 * * * * *');
  assert.equal(cronFor(c, { name: 'views', defaultSchedule: '*/30 * * * *' }), '*/30 * * * *');
  assert.deepEqual(c.schedule.jobs, ['dimensions', 'slo-monitors']);
  assert.equal(c.schedule.instanceId, 'pod-7');
  assert.equal(c.schedule.catchUpMs, 0);
  assert.equal(scheduleCronVariable('slo-monitors'), 'SCHEDULE_SLO_MONITORS_CRON');
  assert.ok(Object.isFrozen(c.schedule.cron));
});

test('bad schedule settings are reported together with the other problems', () => {
  assert.throws(
    () =>
      loadConfig({
        ...base,
        BQ_STREAMING_BATCH_SIZE: '0',
        SCHEDULE_TIMEZONE: 'Mars/Olympus_Mons',
        SCHEDULE_VIEWS_CRON: '*/30 * * *',
        SCHEDULE_QUALITY_CRON: '0 25 * * *',
        SCHEDULE_JOBS: 'Views!',
      }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      const all = err.problems.join('\n');
      assert.match(all, /BQ_STREAMING_BATCH_SIZE/);
      assert.match(all, /SCHEDULE_TIMEZONE: must be an IANA time zone/);
      assert.match(all, /SCHEDULE_VIEWS_CRON: "\*\/30 \* \* \*" has 4 field\(s\)/);
      assert.match(all, /SCHEDULE_QUALITY_CRON: "0 25 \* \* \*": 25 is a invalid expression for hour/);
      assert.match(all, /SCHEDULE_JOBS/);
      return true;
    },
  );
});
