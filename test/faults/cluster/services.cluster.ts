import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import type { Alert } from '../../../src/alerts/model.ts';
import { createRegistryClient } from '../../../src/codec/registry.ts';
import { loadConfig } from '../../../src/config/config.ts';
import { createProducer } from '../../../src/producers/producer.ts';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import { runQuery } from '../../../src/warehouse/query.ts';
import { startHttpSink } from '../../support/alert-sinks.ts';
import type { HttpSink } from '../../support/alert-sinks.ts';
import { TXSTREAM_BIN, until } from '../../support/consumer-harness.ts';
import { txstreamEnv, uniqueName } from '../../support/endpoints.ts';
import { freePorts } from '../../support/ports.ts';
import { privateEmulator } from '../harness.ts';
import type { PrivateEmulator } from '../harness.ts';
import { startCluster } from './cluster.ts';
import type { Cluster } from './cluster.ts';

// The two services beside the consumers that hold Kafka group memberships, through a rolling restart
// of the three-node cluster: the alert forwarder (`txstream alerts forward`, a consumer group that
// delivers to a local Slack stand-in and commits after delivery) and the scheduler's leader election
// (two `txstream schedule` processes in one leader group, the dimensions job every two seconds). An
// alert published throughout must be delivered at least once (a re-delivery after a rebalance is
// counted, not hidden); a scheduled tick must never run twice, and the ticks must go on after the
// last broker came back. Every process must then stop cleanly on SIGTERM. It writes through no
// warehouse sink, so `npm run test:faults` runs it once, with the first sink.

const run = promisify(execFile);
let cluster: Cluster;
let emulator: PrivateEmulator;
let slack: HttpSink;
interface Child {
  name: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  output: () => string;
}
const children: Child[] = [];

before(async () => {
  emulator = await privateEmulator();
  cluster = await startCluster(emulator.endpoints);
  slack = await startHttpSink();
});
after(async () => {
  for (const c of children) c.child.kill('SIGKILL');
  await slack?.close();
  await cluster?.close();
  await emulator?.close();
});

function start(name: string, args: string[], env: NodeJS.ProcessEnv): Child {
  const child = spawn(process.execPath, [TXSTREAM_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const c = { name, child, exited, output: () => output };
  children.push(c);
  return c;
}

const RULES = `version: 1
rules:
  - name: cluster_test_rule
    summary: 'cluster test: latency {{value}} s over {{threshold}} s'
    metric: streaming_latency_p99_seconds
    condition: '>'
    threshold: 10
    severity: warning
    routing: [slack]
`;

function alert(i: number): Alert {
  return {
    alert_id: randomUUID(),
    // One dedup key per alert: the forwarder notifies an unchanged firing alert once per interval.
    dedup_key: `cluster|${i}`,
    rule_name: 'cluster_test_rule',
    status: 'FIRING',
    severity: 'warning',
    summary: `cluster alert <${i}>`,
    description: null,
    metric: 'streaming_latency_p99_seconds',
    value: 12.5,
    threshold: 10,
    labels: { topic: 'banking.transactions.v1' },
    fired_at: Date.now() * 1000,
    resolved_at: null,
    runbook_url: null,
    source: 'cluster-faults',
  };
}

test(
  'the alert forwarder and the scheduler leader through a rolling restart: every alert delivered, no tick run twice',
  { timeout: 900_000 },
  async (t) => {
    await cluster.isrWhole();
    const prefix = `${uniqueName('clustersvc')}.`;
    const dataset = uniqueName('clustersvc');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cluster-services-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const rulesFile = path.join(dir, 'alerts.yaml');
    fs.writeFileSync(rulesFile, RULES);
    const [portA, portB] = (await freePorts(2)) as [number, number];
    const env = txstreamEnv(
      { ...emulator.endpoints, kafkaBrokers: cluster.endpoints.kafkaBrokers },
      {
        BQ_DATASET: dataset,
        TOPIC_PARTITIONS: '3',
        LOG_LEVEL: 'info',
        METRICS_PORT: '0',
        KAFKA_SESSION_TIMEOUT_MS: '6000',
        KAFKA_HEARTBEAT_INTERVAL_MS: '1000',
        SLACK_WEBHOOK_URL: slack.url,
        ALERTS_FILE: rulesFile,
        ALERTS_FORWARDER_GROUP: uniqueName('cluster-forwarder'),
        ALERTS_CHANNEL_RATE_PER_MINUTE: '10000',
        SCHEDULE_JOBS: 'dimensions',
        SCHEDULE_DIMENSIONS_CRON: '*/2 * * * * *',
      },
    );
    await run(process.execPath, [TXSTREAM_BIN, 'init', '--topic-prefix', prefix], { env, timeout: 120_000 });

    const forwarder = start('forwarder', ['alerts', 'forward', '--topic-prefix', prefix], env);
    const group = uniqueName('cluster-scheduler');
    const schedulers = [
      ['a', portA],
      ['b', portB],
    ].map(([id, port]) =>
      start(`scheduler-${id}`, ['schedule', '--topic-prefix', prefix, '--group', group], {
        ...env,
        SCHEDULE_INSTANCE_ID: String(id),
        METRICS_PORT: String(port),
      }),
    );

    // Alerts throughout, five a second, each acknowledged by the cluster before it counts.
    const producer = await createProducer({
      config: loadConfig(env),
      topic: 'alerts',
      registry: createRegistryClient({ url: emulator.endpoints.schemaRegistryUrl }),
      topicPrefix: prefix,
    });
    t.after(() => producer.close());
    let acknowledged = 0;
    let producing = true;
    const publishing = (async () => {
      for (let i = 0; producing; i++) {
        const [r] = await producer.send([alert(i)]);
        assert.equal(r!.status, 'sent', `alert ${i}: ${JSON.stringify(r)}`);
        acknowledged = i + 1;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    })();
    const deliveries = () => {
      const counts = new Map<number, number>();
      // A Slack message names the alert in its text and again in its blocks: one delivery each.
      for (const r of slack.requests)
        for (const i of new Set([...r.text.matchAll(/cluster alert <(\d+)>/g)].map((m) => Number(m[1]))))
          counts.set(i, (counts.get(i) ?? 0) + 1);
      return counts;
    };
    const bq = createBigQuery({
      projectId: emulator.endpoints.bqProjectId,
      apiEndpoint: emulator.endpoints.bqApiEndpoint,
    });
    const ticks = async () =>
      (
        await runQuery(bq, {
          sql: "SELECT instance_id, scheduled_for FROM ops_schedule_runs WHERE job = 'dimensions' ORDER BY scheduled_for",
          defaultDataset: { datasetId: dataset },
          maxRows: 100_000,
        }).catch((err: unknown) => {
          if (/not found|does not exist/i.test((err as Error).message)) return { rows: [] };
          throw err;
        })
      ).rows.map((r) => ({ instance: String(r.instance_id), at: Date.parse(String(r.scheduled_for)) }));

    await until(
      'alerts delivered and ticks run before the fault',
      async () => deliveries().size >= 10 && (await ticks()).length >= 3,
      120_000,
    );

    const waits: string[] = [];
    for (const node of cluster.nodeIds) {
      const t0 = Date.now();
      await cluster.stop(node);
      await cluster.restart();
      await cluster.isrWhole();
      waits.push(
        `node ${node} back with the ISR whole ${((Date.now() - t0) / 1000).toFixed(1)} s after its SIGTERM`,
      );
    }
    const restartedAt = Date.now();
    // A while after the last restart, for the ticks to show they go on.
    await until(
      'ticks after the last restart',
      async () => (await ticks()).some((x) => x.at > restartedAt + 4000),
      120_000,
    );
    producing = false;
    await publishing;

    await until(
      `every one of ${acknowledged} alerts delivered`,
      async () => {
        const d = deliveries();
        for (let i = 0; i < acknowledged; i++) if (!d.has(i)) return false;
        return true;
      },
      180_000,
    );
    const d = deliveries();
    const twice = [...d.values()].reduce((n, c) => n + c - 1, 0);
    const all = await ticks();
    const byTick = new Map<number, string[]>();
    for (const x of all) byTick.set(x.at, [...(byTick.get(x.at) ?? []), x.instance]);
    const runTwice = [...byTick.entries()].filter(([, who]) => who.length > 1);
    const times = [...byTick.keys()].sort((a, b) => a - b);
    let gap = 0;
    for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i]! - times[i - 1]!);
    const leaders = new Set(all.map((x) => x.instance));

    const exits: (number | null)[] = [];
    for (const c of [forwarder, ...schedulers]) {
      c.child.kill('SIGTERM');
      exits.push(await c.exited);
    }
    t.diagnostic(
      `cluster: forwarder and scheduler leader, rolling restart: alerts ${acknowledged} published, ` +
        `${[...d.keys()].filter((i) => i < acknowledged).length} delivered, 0 lost, ${twice} delivered twice; ` +
        `ticks ${byTick.size} run, ${runTwice.length} run twice, longest gap between ticks ${(gap / 1000).toFixed(1)} s, ` +
        `run by ${[...leaders].sort().join(' and ')}; ${waits.join('; ')}; exits ${exits.join('/')}`,
    );
    assert.deepEqual(runTwice, [], 'no scheduled tick run by two instances');
    [forwarder, ...schedulers].forEach((c, i) =>
      assert.equal(exits[i], 0, `${c.name} exit code after SIGTERM; output:\n${c.output().slice(-4000)}`),
    );
  },
);
