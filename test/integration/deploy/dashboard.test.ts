import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { runInit } from '../../../src/admin/init.ts';
import { buildForwarderApp, createForwarderMetrics } from '../../../src/alerts/forward.ts';
import { buildConsumerApp } from '../../../src/app.ts';
import type { ConsumerApp } from '../../../src/app.ts';
import { createRegistryClient } from '../../../src/codec/registry.ts';
import { createSchemaCatalog } from '../../../src/codec/schemas.ts';
import { consumerProblems, loadConfig } from '../../../src/config/config.ts';
import { createTopicAdmin } from '../../../src/kafka/admin.ts';
import { createKafka, kafkaConnection } from '../../../src/kafka/client.ts';
import { createConsumerMetrics } from '../../../src/observability/metrics.ts';
import { buildSchedulerApp } from '../../../src/schedules/app.ts';
import { coordinationTopic } from '../../../src/schedules/leader.ts';
import { createSchedulerMetrics } from '../../../src/schedules/metrics.ts';
import { PROJECT_ROOT } from '../../../src/stack/settings.ts';
import { createTopicCatalogue } from '../../../src/topics.ts';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import { ensureFactTables } from '../../../src/warehouse/sql.ts';
import { removeInitialized } from '../../support/cleanup.ts';
import { produceSynthetic, scrapeMetrics, until } from '../../support/consumer-harness.ts';
import { testEndpoints, txstreamEnv, uniqueName } from '../../support/endpoints.ts';
import { freePorts } from '../../support/ports.ts';
import { exposedFamilies, promqlRefs, queryableSeries, unknownReferences } from '../../support/promql.ts';
import type { MetricFamily } from '../../support/promql.ts';

// The deploy files (deploy/grafana, deploy/prometheus, docker-compose.kafka.yml's txstream profile)
// against the code: every series a dashboard panel or an alert rule queries, and every label it
// matches or groups by, must be one a running consumer, scheduler and alert forwarder really expose
// on /metrics. A renamed metric or label fails here instead of leaving an empty panel or a rule that
// can never fire.

const read = (p: string) => fs.readFileSync(path.join(PROJECT_ROOT, p), 'utf8');
const yamlOf = (p: string): unknown => parseYaml(read(p), { merge: true });
const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

interface Target {
  expr?: unknown;
  datasource?: { uid?: unknown };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type?: unknown; uid?: unknown };
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  query?: unknown;
  datasource?: { uid?: unknown };
}
const dashboard = JSON.parse(read('deploy/grafana/txstream.json')) as {
  uid: string;
  panels: Panel[];
  templating: { list: Variable[] };
};
const allPanels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const queryPanels = allPanels.filter((p) => p.type !== 'row');

interface Rule {
  alert?: unknown;
  expr?: unknown;
  for?: unknown;
  labels?: Record<string, unknown>;
  annotations?: Record<string, unknown>;
}
const rulesFile = yamlOf('deploy/prometheus/rules.yaml') as { groups: { name: string; rules: Rule[] }[] };
const rules = rulesFile.groups.flatMap((g) => g.rules);

/** Every PromQL query of the dashboard and the rules, named for failure messages. */
function queries(): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  for (const p of queryPanels)
    for (const [i, t] of (p.targets ?? []).entries())
      out.push({ where: `panel "${p.title}" target ${i}`, expr: String(t.expr) });
  for (const r of rules) out.push({ where: `rule ${String(r.alert)}`, expr: String(r.expr) });
  return out;
}

/** `label_values(selector, label)` of the dashboard's query variables, as a PromQL selector and a label. */
function variableQueries(): { where: string; selector: string; label: string }[] {
  return dashboard.templating.list
    .filter((v) => v.type === 'query')
    .map((v) => {
      const q = isRecord(v.query) ? String(v.query.query) : String(v.query);
      const m = /^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/.exec(q);
      assert.ok(m, `variable ${v.name}: expected label_values(selector, label), got ${q}`);
      return { where: `variable ${v.name}`, selector: m[1]!, label: m[2]! };
    });
}

/** GitHub's heading anchors of README.md. */
function readmeAnchors(): Set<string> {
  return new Set(
    read('README.md')
      .split('\n')
      .filter((l) => /^#{1,6} /.test(l))
      .map((l) =>
        l
          .replace(/^#+ /, '')
          .trim()
          .toLowerCase()
          .replace(/[^\p{L}\p{N} _-]/gu, '')
          .replace(/ /g, '-'),
      ),
  );
}

/** The declared label names of a registry's metrics, which a scrape shows only once a series has a value. */
function declaredLabels(
  families: Map<string, MetricFamily>,
  metrics: { name: string; labelNames?: readonly string[] }[],
) {
  for (const m of metrics) for (const l of m.labelNames ?? []) families.get(m.name)?.labels.add(l);
}

describe('dashboard, rules and compose files are well formed', () => {
  test('the dashboard: every panel queries Prometheus through the datasource variable', () => {
    const vars = dashboard.templating.list;
    const ds = vars.find((v) => v.name === 'datasource');
    assert.equal(ds?.type, 'datasource');
    assert.equal(ds?.query, 'prometheus');
    for (const v of vars.filter((x) => x.type === 'query'))
      assert.equal(v.datasource?.uid, '${datasource}', v.name);
    assert.ok(queryPanels.length >= 20, `${queryPanels.length} panels`);
    const ids = allPanels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    for (const p of queryPanels) {
      assert.equal(p.datasource?.type, 'prometheus', p.title);
      assert.equal(p.datasource?.uid, '${datasource}', p.title);
      assert.ok(p.targets?.length, `panel "${p.title}" has targets`);
      for (const t of p.targets) {
        assert.ok(typeof t.expr === 'string' && t.expr.trim(), `panel "${p.title}" target has an expr`);
        assert.equal(t.datasource?.uid, '${datasource}', p.title);
      }
      assert.ok(
        p.gridPos.x >= 0 && p.gridPos.w > 0 && p.gridPos.x + p.gridPos.w <= 24,
        `panel "${p.title}" fits`,
      );
    }
  });

  test('every query parses as PromQL', () => {
    for (const q of queries()) assert.deepEqual(promqlRefs(q.expr).problems, [], `${q.where}: ${q.expr}`);
    for (const v of variableQueries()) assert.deepEqual(promqlRefs(v.selector).problems, [], v.where);
  });

  test('the rules file: a Prometheus rule file whose rules have for, severity, annotations and a README runbook', () => {
    assert.deepEqual(Object.keys(rulesFile), ['groups'], 'only groups: it is also a PrometheusRule spec');
    const anchors = readmeAnchors();
    const names = new Set<string>();
    for (const g of rulesFile.groups) {
      assert.match(g.name, /^\S+$/);
      assert.ok(g.rules.length, g.name);
    }
    for (const r of rules) {
      const name = String(r.alert);
      assert.match(name, /^[A-Z][A-Za-z0-9]+$/, `alert name ${name}`);
      assert.ok(!names.has(name), `${name} is defined once`);
      names.add(name);
      assert.ok(typeof r.expr === 'string' && r.expr.trim(), `${name}: expr`);
      assert.match(String(r.for), /^\d+[smh]$/, `${name}: for`);
      assert.ok(['info', 'warning', 'critical'].includes(String(r.labels?.severity)), `${name}: severity`);
      for (const a of ['summary', 'description', 'runbook_url'])
        assert.ok(typeof r.annotations?.[a] === 'string' && r.annotations[a], `${name}: annotation ${a}`);
      const url = String(r.annotations?.runbook_url);
      const anchor = /^https:\/\/github\.com\/txstream\/txstream\/blob\/main\/README\.md#(.+)$/.exec(
        url,
      )?.[1];
      assert.ok(anchor && anchors.has(anchor), `${name}: runbook_url ${url} is a README heading`);
    }
  });

  test('promtool accepts the rules, their unit tests and the Prometheus configuration', async (t) => {
    const promtool = (process.env.PATH ?? '')
      .split(path.delimiter)
      .map((d) => path.join(d, 'promtool'))
      .find((p) => fs.existsSync(p));
    if (!promtool) return t.skip('promtool is not installed (Debian: apt-get install prometheus)');
    const run = promisify(execFile);
    await run(promtool, ['check', 'rules', path.join(PROJECT_ROOT, 'deploy/prometheus/rules.yaml')]);
    // Which alerts fire on made-up series of a stuck, a healthy and a restarting member.
    await run(promtool, ['test', 'rules', path.join(PROJECT_ROOT, 'deploy/prometheus/rules.test.yaml')]);
    // The configuration names the rules where the compose file mounts them; check it beside a copy.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'txstream-promtool-'));
    try {
      fs.copyFileSync(path.join(PROJECT_ROOT, 'deploy/prometheus/rules.yaml'), path.join(dir, 'rules.yaml'));
      fs.writeFileSync(
        path.join(dir, 'prometheus.yml'),
        read('deploy/prometheus/prometheus.yml').replace('/etc/prometheus/rules.yaml', 'rules.yaml'),
      );
      await run(promtool, ['check', 'config', path.join(dir, 'prometheus.yml')]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('docker-compose.kafka.yml: the txstream profile runs the image with settings txstream accepts', () => {
    const compose = yamlOf('docker-compose.kafka.yml') as {
      services: Record<string, Record<string, unknown>>;
    };
    const services = compose.services;
    // The stack's own services stay outside any profile: `docker compose up` starts them as before.
    for (const s of ['kafka', 'schema-registry', 'bigquery'])
      assert.equal(services[s]?.profiles, undefined, s);
    const own = ['init', 'consumer-1', 'consumer-2', 'scheduler', 'alert-forwarder'];
    const declared = read('src/config/config.ts');
    const commands = new Map<string, string[]>();
    for (const name of own) {
      const s = services[name];
      assert.ok(s, `service ${name}`);
      assert.deepEqual(s.profiles, ['txstream'], name);
      assert.equal(s.build, '.', `${name} is built from the root Dockerfile`);
      assert.ok(Array.isArray(s.command), `${name}: command as a list (the image's entrypoint is txstream)`);
      commands.set(name, s.command as string[]);
      const env = Object.fromEntries(Object.entries(s.environment as object).map(([k, v]) => [k, String(v)]));
      for (const k of Object.keys(env))
        assert.match(
          declared,
          new RegExp(`^\\s+${k}:`, 'm'),
          `${name}: ${k} is a setting of src/config/config.ts`,
        );
      // Endpoints given explicitly: loadConfig must not fall back to a local stack's endpoints.json.
      const config = loadConfig({ ...env, TXSTREAM_STACK_DIR: path.join(os.tmpdir(), 'txstream-no-stack') });
      if (name.startsWith('consumer')) assert.deepEqual(consumerProblems(config), [], name);
      assert.equal(config.metrics.host, '0.0.0.0', `${name}: metrics reachable from Prometheus`);
      assert.equal(config.metrics.port, 9464, name);
      for (const v of (s.volumes as string[] | undefined) ?? [])
        assert.ok(fs.existsSync(path.join(PROJECT_ROOT, v.split(':')[0]!)), `${name}: ${v} exists`);
    }
    assert.deepEqual(commands.get('init'), ['init']);
    assert.deepEqual(commands.get('consumer-1'), ['consume']);
    assert.deepEqual(commands.get('consumer-2'), ['consume']);
    assert.deepEqual(commands.get('scheduler'), ['schedule']);
    assert.deepEqual(commands.get('alert-forwarder'), ['alerts', 'forward']);
    for (const name of ['consumer-1', 'consumer-2', 'scheduler', 'alert-forwarder'])
      assert.ok(
        isRecord(services[name]!.depends_on) && isRecord(services[name]!.depends_on.init),
        `${name} starts after init`,
      );

    // Prometheus: the rules and its configuration mounted where the configuration reads them, and
    // one scrape job per process under the names the rules and the dashboard select.
    const prom = services.prometheus!;
    assert.deepEqual(prom.profiles, ['txstream']);
    const promMounts = new Map((prom.volumes as string[]).map((v) => [v.split(':')[1]!, v.split(':')[0]!]));
    assert.equal(promMounts.get('/etc/prometheus/prometheus.yml'), './deploy/prometheus/prometheus.yml');
    assert.equal(promMounts.get('/etc/prometheus/rules.yaml'), './deploy/prometheus/rules.yaml');
    const promConfig = yamlOf('deploy/prometheus/prometheus.yml') as {
      rule_files: string[];
      scrape_configs: {
        job_name: string;
        static_configs?: { targets: string[] }[];
        dns_sd_configs?: { names: string[]; port: number }[];
      }[];
    };
    assert.deepEqual(promConfig.rule_files, ['/etc/prometheus/rules.yaml']);
    const targets = (job: string) =>
      promConfig.scrape_configs
        .filter((c) => c.job_name === job)
        .flatMap((c) => [
          ...(c.static_configs ?? []).flatMap((s) => s.targets),
          ...(c.dns_sd_configs ?? []).flatMap((d) => d.names.map((n) => `${n}:${d.port}`)),
        ])
        .sort();
    assert.deepEqual(targets('txstream-consumer'), ['consumer-1:9464', 'consumer-2:9464']);
    assert.deepEqual(targets('txstream-scheduler'), ['scheduler:9464']);
    assert.deepEqual(targets('txstream-alert-forwarder'), ['alert-forwarder:9464']);
    const jobs = new Set(promConfig.scrape_configs.map((c) => c.job_name));
    for (const r of rules)
      for (const [, job] of String(r.expr).matchAll(/\bjob="([^"]*)"/g))
        assert.ok(jobs.has(job!), `${String(r.alert)} selects job ${job}, a scrape job of prometheus.yml`);

    // Grafana: the datasource and the dashboard provisioned from the files in deploy/grafana.
    const grafana = services.grafana!;
    assert.deepEqual(grafana.profiles, ['txstream']);
    const gMounts = new Map((grafana.volumes as string[]).map((v) => [v.split(':')[1]!, v.split(':')[0]!]));
    assert.equal(gMounts.get('/etc/grafana/provisioning'), './deploy/grafana/provisioning');
    const dashboardMount = [...gMounts].find(([, src]) => src === './deploy/grafana/txstream.json')?.[0];
    assert.ok(dashboardMount, 'the dashboard is mounted');
    const providers = yamlOf('deploy/grafana/provisioning/dashboards/txstream.yaml') as {
      providers: { type: string; options: { path: string } }[];
    };
    assert.equal(providers.providers[0]?.options.path, path.posix.dirname(dashboardMount));
    const datasources = yamlOf('deploy/grafana/provisioning/datasources/prometheus.yaml') as {
      datasources: { type: string; url: string }[];
    };
    assert.equal(datasources.datasources[0]?.type, 'prometheus');
    assert.equal(datasources.datasources[0]?.url, 'http://prometheus:9090');
  });
});

describe('every series the dashboard and the rules query is one the processes export', () => {
  const e = testEndpoints();
  const prefix = `${uniqueName('dash')}.`;
  const dataset = uniqueName('dash');
  const env = txstreamEnv(e, {
    BQ_DATASET: dataset,
    TOPIC_PARTITIONS: '2',
    BQ_STREAMING_INTERVAL_MS: '200',
    KAFKA_SESSION_TIMEOUT_MS: '6000',
    KAFKA_HEARTBEAT_INTERVAL_MS: '1000',
    // The poison record's dead-lettering is logged as a warning, by design.
    LOG_LEVEL: 'error',
    // The scheduler runs no job during the test: one job, a cron a year away, no catch-up run.
    SCHEDULE_JOBS: 'dimensions',
    SCHEDULE_DIMENSIONS_CRON: '0 0 1 1 *',
    SCHEDULE_CATCHUP_MS: '0',
  });
  const bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
  const groups = {
    consumer: uniqueName('dash-consumer'),
    scheduler: uniqueName('dash-scheduler'),
    forwarder: uniqueName('dash-forwarder'),
  };
  const stops: (() => Promise<unknown>)[] = [];
  const expositions = new Map<string, string>();
  let series: Map<string, Set<string>>;
  const N = 200;

  before(async () => {
    const [consumerPort, schedulerPort, forwarderPort] = (await freePorts(3)) as [number, number, number];
    const config = (port: number) => loadConfig({ ...env, METRICS_PORT: String(port) });
    const admin = createTopicAdmin(kafkaConnection(config(0), 'dash-test-init'));
    try {
      await runInit({
        catalogue: createTopicCatalogue({ prefix }),
        schemas: createSchemaCatalog(),
        registry: createRegistryClient({ url: e.schemaRegistryUrl }),
        admin,
        settings: { ...config(0).topics, partitions: 2 },
      });
    } finally {
      await admin.close();
    }
    await ensureFactTables(bq, dataset);

    const consumer: ConsumerApp = await buildConsumerApp({
      config: config(consumerPort),
      groupId: groups.consumer,
      topicPrefix: prefix,
    });
    const scheduler = buildSchedulerApp({
      config: config(schedulerPort),
      leader: true,
      groupId: groups.scheduler,
      topicPrefix: prefix,
    });
    const forwarder = buildForwarderApp({
      config: config(forwarderPort),
      routesFor: () => ({ routes: [], repeatIntervalMs: 3_600_000 }),
      groupId: groups.forwarder,
      topicPrefix: prefix,
    });
    await Promise.all([consumer.start(), scheduler.start(), forwarder.start()]);
    stops.push(
      () => consumer.stop(),
      () => scheduler.stop(),
      () => forwarder.stop(),
    );

    // Records for every series of the write path to have values: rows that land, one poison record
    // that is dead-lettered.
    const tx = `${prefix}banking.transactions.v1`;
    await produceSynthetic(env, prefix, N, 11);
    const producer = createKafka({ brokers: e.kafkaBrokers, clientId: 'dash-test-poison' }).producer();
    await producer.connect();
    try {
      await producer.send({
        topic: tx,
        messages: [{ key: 'poison', value: Buffer.from('not avro at all') }],
      });
    } finally {
      await producer.disconnect();
    }

    const ready = (port: number) =>
      fetch(`http://127.0.0.1:${port}/readyz`).then(
        (r) => r.status === 200,
        () => false,
      );
    await until(
      'the rows to land and the poison record to be dead-lettered',
      async () => {
        const m = await scrapeMetrics(consumerPort);
        return (
          m.get(`txstream_records_inserted_total{topic="${tx}"}`) === N &&
          m.get(`txstream_records_dead_lettered_total{topic="${tx}"}`) === 1
        );
      },
      60_000,
    );
    await until(
      'the scheduler and the forwarder to be ready',
      async () => (await ready(schedulerPort)) && (await ready(forwarderPort)),
      60_000,
    );
    for (const [name, port] of [
      ['consumer', consumerPort],
      ['scheduler', schedulerPort],
      ['forwarder', forwarderPort],
    ] as const) {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      assert.equal(res.status, 200);
      expositions.set(name, await res.text());
    }
    const families = exposedFamilies([...expositions.values()].join('\n'));
    // A labelled series appears in a scrape only once it has a value (retries, skipped rows on a
    // replay); its label names come from the registries the processes build, the same code.
    declaredLabels(families, [
      ...createConsumerMetrics({ defaultMetrics: false }).registry.getMetricsAsArray(),
      ...createSchedulerMetrics({
        isLeader: () => false,
        jobs: [],
        defaultMetrics: false,
      }).registry.getMetricsAsArray(),
      ...createForwarderMetrics().registry.getMetricsAsArray(),
    ] as unknown as { name: string; labelNames?: readonly string[] }[]);
    series = queryableSeries(families);
  });

  after(async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    await bq
      .dataset(dataset)
      .delete({ force: true })
      .catch(() => undefined);
    await removeInitialized(prefix).catch(() => undefined);
    const admin = createKafka({ brokers: e.kafkaBrokers, clientId: 'dash-test-cleanup' }).admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [coordinationTopic(prefix)] }).catch(() => undefined);
    await admin.deleteGroups(Object.values(groups)).catch(() => undefined);
    await admin.disconnect();
  });

  test('the scrape has the write path, the scheduler and the forwarder in it', () => {
    // Sanity: the series the check below leans on were really scraped with values.
    const consumer = expositions.get('consumer')!;
    assert.match(consumer, /^txstream_end_to_end_latency_seconds_bucket\{le="[^"]+"\} [1-9]/m);
    assert.match(consumer, /^txstream_consumer_lag\{topic="[^"]+",partition="\d"\} \d+/m);
    assert.match(
      consumer,
      /^txstream_storage_rows_appended_total\{table="fact_banking_transactions"\} [1-9]/m,
    );
    assert.match(consumer, /^process_start_time_seconds \d+/m);
    assert.match(
      expositions.get('scheduler')!,
      /^txstream_schedule_runs_total\{job="dimensions",outcome="ok"\} 0/m,
    );
    assert.match(expositions.get('scheduler')!, /^txstream_schedule_leader 1/m);
    assert.match(expositions.get('forwarder')!, /^txstream_alerts_consumed_total 0/m);
  });

  test('every panel, variable and rule queries exported series and labels', () => {
    const problems: string[] = [];
    for (const q of queries())
      for (const p of unknownReferences(q.expr, series)) problems.push(`${q.where}: ${p}\n    ${q.expr}`);
    for (const v of variableQueries()) {
      for (const p of unknownReferences(v.selector, series)) problems.push(`${v.where}: ${p}`);
      const metric = promqlRefs(v.selector).selectors[0]?.metric ?? '';
      if (!series.get(metric)?.has(v.label)) problems.push(`${v.where}: ${metric} has no label ${v.label}`);
    }
    assert.deepEqual(problems, []);
  });

  test('the check finds a series or label that is not exported', () => {
    // The check itself: a renamed metric, a label the DLQ counter does not have, a histogram read
    // without its suffix, the scheduler's job label under its exposed name.
    assert.deepEqual(unknownReferences('rate(txstream_records_landed_total[5m])', series), [
      'no series txstream_records_landed_total',
    ]);
    assert.deepEqual(
      unknownReferences('sum by (code) (rate(txstream_records_dead_lettered_total[5m]))', series),
      ['none of txstream_records_dead_lettered_total has label code'],
    );
    assert.deepEqual(unknownReferences('txstream_end_to_end_latency_seconds', series), [
      'no series txstream_end_to_end_latency_seconds',
    ]);
    assert.deepEqual(unknownReferences('txstream_schedule_runs_total{outcome="ok"}', series), []);
    assert.ok(series.get('txstream_schedule_runs_total')?.has('exported_job'));
  });
});
