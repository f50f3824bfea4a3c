import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { createTopicAdmin } from '../../../src/kafka/admin.ts';
import { createKafka } from '../../../src/kafka/client.ts';
import { coordinationTopic } from '../../../src/schedules/leader.ts';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import type { PlainRow } from '../../../src/warehouse/query.ts';
import { runQuery } from '../../../src/warehouse/query.ts';
import { removeInitialized } from '../../support/cleanup.ts';
import { scrapeMetrics, TXSTREAM_BIN, until } from '../../support/consumer-harness.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';
import { freePorts } from '../../support/ports.ts';

// Two `txstream schedule` processes in one leader group, the real dimensions job on a 2-second cron:
// only the leader runs ticks and each tick runs once (one row per scheduled_for in
// ops_schedule_runs); a member joining does not take leadership over; after SIGKILL of the leader the
// other takes over within the session timeout (plus a heartbeat and a rejoin) and the ticks go on;
// SIGTERM stops the survivor cleanly.

const run = promisify(execFile);
const e = testEndpoints();
const prefix = `${uniqueName('leader')}.`;
const dataset = uniqueName('leader');
const group = uniqueName('scheduler');
const SESSION_TIMEOUT_MS = 6000;
const bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
let ports: { a: number; b: number };

const baseEnv = (): NodeJS.ProcessEnv => ({
  ...process.env,
  KAFKA_BROKERS: e.kafkaBrokers.join(','),
  SCHEMA_REGISTRY_URL: e.schemaRegistryUrl,
  BQ_API_ENDPOINT: e.bqApiEndpoint,
  GCP_PROJECT_ID: e.bqProjectId,
  BQ_DATASET: dataset,
  TOPIC_PARTITIONS: '1',
  LOG_LEVEL: 'warn',
  SCHEDULE_JOBS: 'dimensions',
  // A six-field cron: every two seconds.
  SCHEDULE_DIMENSIONS_CRON: '*/2 * * * * *',
  KAFKA_SESSION_TIMEOUT_MS: String(SESSION_TIMEOUT_MS),
  KAFKA_HEARTBEAT_INTERVAL_MS: '1000',
});

function startScheduler(instance: string, port: number) {
  const child = spawn(
    process.execPath,
    [TXSTREAM_BIN, 'schedule', '--topic-prefix', prefix, '--group', group],
    {
      env: { ...baseEnv(), SCHEDULE_INSTANCE_ID: instance, METRICS_PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exited, output: () => output };
}

const rows = async (sql: string): Promise<PlainRow[]> =>
  (await runQuery(bq, { sql, defaultDataset: { datasetId: dataset }, maxRows: 10_000 })).rows;
/** Runs recorded so far, oldest tick first; none while the table does not exist yet. */
const runs = async () =>
  rows(
    "SELECT instance_id, scheduled_for, started_at, outcome, triggered_by FROM ops_schedule_runs WHERE job = 'dimensions' ORDER BY scheduled_for",
  ).catch((err: unknown) => {
    if (/not found|does not exist/i.test((err as Error).message)) return [];
    throw err;
  });
const leaderGauge = async (port: number) =>
  scrapeMetrics(port).then(
    (m) => m.get('txstream_schedule_leader'),
    () => undefined,
  );

before(async () => {
  const [a, b] = (await freePorts(2)) as [number, number];
  ports = { a, b };
  await run(process.execPath, [TXSTREAM_BIN, 'init', '--topic-prefix', prefix], {
    env: baseEnv(),
    timeout: 60_000,
  });
});
after(async () => {
  await bq
    .dataset(dataset)
    .delete({ force: true })
    .catch(() => undefined);
  await removeInitialized(prefix).catch(() => undefined);
  const admin = createTopicAdmin({ brokers: e.kafkaBrokers, clientId: 'leader-test-cleanup' });
  await admin.delete([coordinationTopic(prefix)]).catch(() => undefined);
  await admin.close();
  const kafkaAdmin = createKafka({ brokers: e.kafkaBrokers, clientId: 'leader-test-cleanup' }).admin();
  await kafkaAdmin.connect();
  await kafkaAdmin.deleteGroups([group]).catch(() => undefined);
  await kafkaAdmin.disconnect();
});

test(
  'one leader runs each tick once; the other takes over when it is killed',
  { timeout: 90_000 },
  async (t) => {
    const a = startScheduler('a', ports.a);
    t.after(() => a.child.kill('SIGKILL'));
    // A starts first and leads; B joins later and follows (the assignment is sticky).
    await until('a to lead', async () => (await leaderGauge(ports.a)) === 1, 30_000);
    const b = startScheduler('b', ports.b);
    t.after(() => b.child.kill('SIGKILL'));
    const failed = () => `\n--- a ---\n${a.output()}\n--- b ---\n${b.output()}`;
    await until(
      'b to join as a follower',
      async () =>
        (await fetch(`http://127.0.0.1:${ports.b}/readyz`).then(
          (r) => r.status,
          () => 0,
        )) === 200,
      30_000,
    );
    const joinedAt = Date.now();
    await until(
      'three ticks by a after b joined',
      async () =>
        (await runs()).filter((r) => r.instance_id === 'a' && Date.parse(String(r.started_at)) > joinedAt)
          .length >= 3,
      30_000,
    );
    assert.equal(await leaderGauge(ports.b), 0, 'b follows');
    // B skipped its ticks as a follower, not because A's claim beat it to them: the election alone keeps
    // B from running (the claim is only the safety net for a leader change).
    const bMetrics = await scrapeMetrics(ports.b);
    assert.ok(
      (bMetrics.get('txstream_schedule_ticks_skipped_total{job="dimensions",reason="not-leader"}') ?? 0) >= 2,
    );
    assert.equal(
      bMetrics.get('txstream_schedule_ticks_skipped_total{job="dimensions",reason="claimed"}'),
      undefined,
    );
    assert.ok((bMetrics.get('txstream_schedule_runs_total{job="dimensions",outcome="ok"}') ?? -1) === 0);
    assert.ok(
      (await runs()).every((r) => r.instance_id === 'a'),
      `only the leader ran ticks${failed()}`,
    );

    a.child.kill('SIGKILL');
    const killedAt = Date.now();
    await until(
      'b to run ticks after a was killed',
      async () => (await runs()).filter((r) => r.instance_id === 'b').length >= 3,
      SESSION_TIMEOUT_MS + 20_000,
    );
    const all = await runs();
    const firstByB = Math.min(
      ...all.filter((r) => r.instance_id === 'b').map((r) => Date.parse(String(r.started_at))),
    );
    const takeoverMs = firstByB - killedAt;
    t.diagnostic(`takeover after SIGKILL: ${takeoverMs} ms (session timeout ${SESSION_TIMEOUT_MS} ms)`);
    t.diagnostic(
      all
        .map(
          (r) =>
            `${String(r.scheduled_for).slice(11, 19)} ${String(r.instance_id)} ${String(r.triggered_by)} ${String(r.outcome)}`,
        )
        .join(' | '),
    );
    // The coordinator notices after the session timeout; B learns it at its next heartbeat (1 s) and
    // rejoins; its first run is the catch-up of the latest tick or the next tick (2 s).
    assert.ok(takeoverMs <= SESSION_TIMEOUT_MS + 5000, `took over after ${takeoverMs} ms${failed()}`);
    assert.equal(await leaderGauge(ports.b), 1);

    // Each tick ran once: at most one row per scheduled_for, across both instances.
    const perTick = new Map<string, number>();
    for (const r of all)
      perTick.set(String(r.scheduled_for), (perTick.get(String(r.scheduled_for)) ?? 0) + 1);
    const doubled = [...perTick].filter(([, n]) => n > 1);
    assert.deepEqual(doubled, [], `ticks run twice${failed()}`);
    // Every finished run succeeded. 'running' rows: the run A was in when it was killed, if any, and
    // B's run in progress at the time of the query.
    const outcomes = all.map((r) => r.outcome);
    assert.ok(outcomes.filter((o) => o === 'running').length <= 2, outcomes.join(','));
    assert.ok(
      outcomes.every((o) => o === 'ok' || o === 'running'),
      outcomes.join(','),
    );
    assert.ok(all.filter((r) => r.instance_id === 'a').length >= 4);

    b.child.kill('SIGTERM');
    assert.equal(await b.exited, 0, `b stops cleanly on SIGTERM${failed()}`);
  },
);
