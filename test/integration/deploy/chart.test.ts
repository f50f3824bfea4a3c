import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { parse, parseAllDocuments } from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { Job } from 'kubernetes-models/batch/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Service, ServiceAccount } from 'kubernetes-models/v1';
import { ScaledObject, TriggerAuthentication } from '@kubernetes-models/keda/keda.sh/v1alpha1';
import {
  PodMonitor,
  PrometheusRule,
  ServiceMonitor,
} from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { consumerProblems, loadConfig } from '../../../src/config/config.ts';
import { GIVE_UP_AFTER } from '../../../src/consumers/backoff.ts';
import { loadStackSettings, PROJECT_ROOT } from '../../../src/stack/settings.ts';
import { ensureHelm } from '../../../src/stack/tools.ts';
import { createTopicCatalogue } from '../../../src/topics.ts';

// Renders deploy/helm/txstream with the pinned Helm (built once into the stack's cache) for the
// default values, the production example and the optional parts (KEDA, HPA, PodMonitor,
// ServiceMonitor, PrometheusRule), validates every object against the Kubernetes, KEDA and
// prometheus-operator schemas, and checks what a cluster would only show too late: the probes reach
// the port the server listens on, the grace period outlasts the consumer's stop, the autoscaler
// watches the real group and topics and never exceeds the partitions, the settings pass txstream's
// own configuration check, and no secret is ever a value of the chart. Needs no stack.

const run = promisify(execFile);
const CHART = path.join(PROJECT_ROOT, 'deploy', 'helm', 'txstream');
const PRODUCTION = path.join(CHART, 'values-production.yaml');
const KUBE_VERSION = '1.31.0';

/** The three values without a default. */
const REQUIRED = {
  kafka: { brokers: 'kafka-0.test:9092,kafka-1.test:9092' },
  schemaRegistry: { url: 'http://registry.test:8081' },
  gcp: { projectId: 'txstream-test' },
};

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

// Typed views of the parts the assertions read.
interface Container {
  name: string;
  args?: string[];
  env?: { name: string; value?: string }[];
  envFrom?: { configMapRef?: { name: string } }[];
  ports?: { name?: string; containerPort: number }[];
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  volumes?: { name: string; secret?: { secretName: string; items?: { key: string; path: string }[] } }[];
  terminationGracePeriodSeconds?: number;
}
interface Workload extends K8sObject {
  spec: {
    replicas?: number;
    selector: { matchLabels: Record<string, string> };
    strategy?: { rollingUpdate?: { maxSurge: number | string; maxUnavailable: number | string } };
    template: { metadata: { labels: Record<string, string> }; spec: PodSpec };
  };
}

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'apps/v1/Deployment': Deployment,
  'batch/v1/Job': Job,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'keda.sh/v1alpha1/ScaledObject': ScaledObject,
  'keda.sh/v1alpha1/TriggerAuthentication': TriggerAuthentication,
  'monitoring.coreos.com/v1/PodMonitor': PodMonitor,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
};

let helm: string;
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'txstream-chart-'));
// Helm's own cache, config and data directories: nothing of the developer's Helm setup is read or written.
const helmEnv = {
  ...process.env,
  HELM_CACHE_HOME: path.join(scratch, 'helm-cache'),
  HELM_CONFIG_HOME: path.join(scratch, 'helm-config'),
  HELM_DATA_HOME: path.join(scratch, 'helm-data'),
};

before(async () => {
  helm = await ensureHelm(loadStackSettings().cacheDir, (line) => process.stderr.write(`[helm] ${line}\n`));
});
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

let files = 0;
function valuesFile(values: object): string {
  const file = path.join(scratch, `values-${files++}.json`);
  fs.writeFileSync(file, JSON.stringify(values)); // JSON is YAML
  return file;
}

function helmArgs(layers: (string | object)[], chart = CHART): string[] {
  return [
    'template',
    'txstream',
    chart,
    '--namespace',
    'txstream',
    '--kube-version',
    KUBE_VERSION,
    ...layers.flatMap((l) => ['-f', typeof l === 'string' ? l : valuesFile(l)]),
  ];
}

/** `helm template` of the layers (values files or objects, later ones win), every object validated. */
async function render(...layers: (string | object)[]): Promise<K8sObject[]> {
  const { stdout } = await run(helm, helmArgs(layers), { env: helmEnv, maxBuffer: 32 * 1024 * 1024 });
  const objects: K8sObject[] = [];
  for (const doc of parseAllDocuments(stdout)) {
    if (doc.errors.length) throw doc.errors[0];
    const o = doc.toJS() as K8sObject | null;
    if (o === null) continue;
    const Model = MODELS[`${o.apiVersion}/${o.kind}`];
    assert.ok(Model, `no schema to validate ${o.apiVersion} ${o.kind} ${o.metadata?.name} against`);
    try {
      new Model(o as never).validate();
    } catch (err) {
      assert.fail(`${o.kind} ${o.metadata.name} is invalid: ${(err as Error).message}`);
    }
    objects.push(o);
  }
  return objects;
}

/** `helm template` that must fail; returns its message. */
async function renderFails(...layers: (string | object)[]): Promise<string> {
  try {
    await run(helm, helmArgs(layers), { env: helmEnv });
  } catch (err) {
    return (err as { stderr: string }).stderr;
  }
  assert.fail('helm template succeeded; it should have failed');
}

function find<T extends K8sObject = K8sObject>(objects: K8sObject[], kind: string, suffix = ''): T {
  const found = objects.filter((o) => o.kind === kind && o.metadata.name.endsWith(suffix));
  assert.equal(found.length, 1, `one ${kind} named *${suffix}, found ${found.map((o) => o.metadata.name)}`);
  return found[0] as T;
}

const workloads = (objects: K8sObject[]) =>
  objects.filter((o): o is Workload => o.kind === 'Deployment' || o.kind === 'Job');

function settings(objects: K8sObject[]): Record<string, string> {
  return (find(objects, 'ConfigMap', '-env') as unknown as { data: Record<string, string> }).data;
}

/** What a stand-in secret file holds, where txstream checks the content's form. */
const STAND_INS: Record<string, string> = {
  KAFKA_SSL_CA_FILE: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
  SLACK_WEBHOOK_URL_FILE: 'https://hooks.slack.test/services/stand-in\n',
};

/**
 * The environment a container sees: its ConfigMap env, then its own env (Kubernetes' order). Secret
 * files it mounts are copied as stand-ins into `root`, so txstream's config loader can read them;
 * each must be a key of a Secret volume mounted where the variable points.
 */
function containerEnv(objects: K8sObject[], pod: PodSpec, c: Container, root: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { TXSTREAM_STACK_DIR: path.join(root, 'no-stack') };
  for (const from of c.envFrom ?? []) {
    const cm = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === from.configMapRef?.name);
    assert.ok(
      cm,
      `container ${c.name} reads ConfigMap ${from.configMapRef?.name}, which the chart does not make`,
    );
    Object.assign(env, (cm as unknown as { data: Record<string, string> }).data);
  }
  for (const e of c.env ?? []) {
    assert.notEqual(e.value, undefined, `${c.name}: env ${e.name} has no literal value`);
    if (!e.value!.startsWith('/var/run/secrets/txstream/')) {
      env[e.name] = e.value;
      continue;
    }
    const mount = (c.volumeMounts ?? []).find((m) => e.value!.startsWith(`${m.mountPath}/`));
    assert.ok(mount, `${c.name}: ${e.name}=${e.value} is not under any of its mounts`);
    const volume = (pod.volumes ?? []).find((v) => v.name === mount.name);
    const file = e.value!.slice(mount.mountPath.length + 1);
    assert.ok(
      volume?.secret?.items?.some((i) => i.path === file),
      `${c.name}: ${e.name} points at ${file}, which Secret volume ${mount.name} does not provide`,
    );
    const copy = path.join(root, e.value!);
    fs.mkdirSync(path.dirname(copy), { recursive: true });
    fs.writeFileSync(copy, STAND_INS[e.name] ?? 'stand-in\n');
    env[e.name] = copy;
  }
  return env;
}

/** Every container's environment passes txstream's own configuration check (the consumer's too). */
function assertConfigLoads(objects: K8sObject[]): void {
  const root = fs.mkdtempSync(path.join(scratch, 'env-'));
  for (const w of workloads(objects)) {
    const pod = w.spec.template.spec;
    for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
      const env = containerEnv(objects, pod, c, root);
      let config;
      try {
        config = loadConfig(env);
      } catch (err) {
        assert.fail(`${w.metadata.name}/${c.name}: txstream refuses its settings: ${(err as Error).message}`);
      }
      if (c.name === 'consumer') assert.deepEqual(consumerProblems(config), []);
    }
  }
}

/** The consumer's stop bound, from the retry rules of src/consumers/backoff.ts and runner.ts (200 ms doubling, 30 s ceiling). */
function stopBoundSeconds(s: Record<string, string>): number {
  const streaming = ['true', '1'].includes(s.ENABLE_BQ_STREAMING ?? 'true');
  const t = Number(streaming ? (s.BQ_INSERT_TIMEOUT_MS ?? 60_000) : (s.BQ_LOAD_JOB_TIMEOUT_MS ?? 600_000));
  let waits = 0;
  for (let a = 0; a < GIVE_UP_AFTER; a++) waits += Math.min(30_000, 200 * 2 ** a);
  const write = Math.max((GIVE_UP_AFTER + 1) * t + waits, t + 30_000);
  return Math.ceil((2 * write + 30_000) / 1000);
}

function matches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

describe('Helm chart deploy/helm/txstream', () => {
  test('the default values render valid objects: three workloads, the init hook, ConfigMaps, PDBs, nothing optional', async () => {
    const objects = await render(REQUIRED);
    const kinds = objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();
    assert.deepEqual(kinds, [
      'ConfigMap/txstream-alerts',
      'ConfigMap/txstream-env',
      'Deployment/txstream-alert-forwarder',
      'Deployment/txstream-consumer',
      'Deployment/txstream-scheduler',
      'Job/txstream-init',
      'PodDisruptionBudget/txstream-alert-forwarder',
      'PodDisruptionBudget/txstream-consumer',
      'PodDisruptionBudget/txstream-scheduler',
      'ServiceAccount/txstream',
      'ServiceAccount/txstream-init',
    ]);
    assertConfigLoads(objects);
    const consumer = find<Workload>(objects, 'Deployment', '-consumer');
    assert.deepEqual(consumer.spec.template.spec.containers[0]!.args, [
      'consume',
      '--group',
      'txstream-warehouse',
    ]);
    assert.deepEqual(
      find<Workload>(objects, 'Deployment', '-scheduler').spec.template.spec.containers[0]!.args,
      ['schedule', '--group', 'txstream-scheduler'],
    );
    assert.equal(find<Workload>(objects, 'Deployment', '-scheduler').spec.replicas, 2);
    assert.deepEqual(
      find<Workload>(objects, 'Deployment', '-alert-forwarder').spec.template.spec.containers[0]!.args,
      ['alerts', 'forward', '--group', 'txstream-alert-forwarder'],
    );
    // The shipped rules, mounted where ALERTS_FILE points.
    const alerts = find(objects, 'ConfigMap', '-alerts') as unknown as { data: Record<string, string> };
    assert.equal(
      alerts.data['alerts.yaml']!.trim(),
      fs.readFileSync(path.join(PROJECT_ROOT, 'alerts.yaml'), 'utf8').trim(),
    );
    assert.equal(settings(objects).ALERTS_FILE, '/etc/txstream/alerts.yaml');
    for (const name of ['-scheduler', '-alert-forwarder']) {
      const c = find<Workload>(objects, 'Deployment', name).spec.template.spec.containers[0]!;
      assert.ok(
        c.volumeMounts?.some((m) => m.mountPath === '/etc/txstream'),
        `${name} mounts the rules`,
      );
    }
  });

  test('the three required values are named when missing', async () => {
    const message = await renderFails({});
    assert.match(message, /kafka\.brokers/);
    assert.match(await renderFails({ kafka: REQUIRED.kafka }), /schemaRegistry\.url/);
    assert.match(
      await renderFails({ kafka: REQUIRED.kafka, schemaRegistry: REQUIRED.schemaRegistry }),
      /gcp\.projectId/,
    );
  });

  test('probes and monitors point at the port the metrics server listens on, bound to all interfaces', async () => {
    for (const port of [undefined, 9999]) {
      const objects = await render(
        PRODUCTION,
        port ? { metrics: { port, podMonitor: { enabled: false }, serviceMonitor: { enabled: true } } } : {},
      );
      const s = settings(objects);
      assert.equal(s.METRICS_HOST, '0.0.0.0', 'the kubelet and Prometheus connect from outside the pod');
      assert.equal(s.METRICS_PORT, String(port ?? 9464));
      for (const w of objects.filter((o): o is Workload => o.kind === 'Deployment')) {
        const c = w.spec.template.spec.containers[0]!;
        assert.ok(
          c.envFrom?.some((f) => f.configMapRef?.name === 'txstream-env'),
          `${w.metadata.name} reads the settings`,
        );
        assert.ok(
          !c.env?.some((e) => e.name.startsWith('METRICS_')),
          `${w.metadata.name} does not override METRICS_*`,
        );
        const resolve = (p: string | number) =>
          typeof p === 'number' ? p : c.ports?.find((x) => x.name === p)?.containerPort;
        assert.equal(c.livenessProbe?.httpGet?.path, '/healthz');
        assert.equal(c.readinessProbe?.httpGet?.path, '/readyz');
        assert.equal(
          resolve(c.livenessProbe!.httpGet!.port),
          Number(s.METRICS_PORT),
          `${w.metadata.name} liveness port`,
        );
        assert.equal(
          resolve(c.readinessProbe!.httpGet!.port),
          Number(s.METRICS_PORT),
          `${w.metadata.name} readiness port`,
        );
      }
      if (port) {
        const service = find(objects, 'Service', '-metrics') as K8sObject & {
          spec: { selector: Record<string, string>; ports: { port: number; targetPort: string }[] };
        };
        assert.equal(service.spec.ports[0]!.targetPort, 'metrics');
        const scraped = objects.filter(
          (o): o is Workload =>
            o.kind === 'Deployment' &&
            matches(service.spec.selector, (o as Workload).spec.template.metadata.labels),
        );
        assert.deepEqual(scraped.map((w) => w.metadata.name).sort(), [
          'txstream-alert-forwarder',
          'txstream-consumer',
          'txstream-scheduler',
        ]);
        const monitor = find(objects, 'ServiceMonitor') as unknown as {
          spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string }[] };
        };
        assert.ok(matches(monitor.spec.selector.matchLabels, service.metadata.labels!));
        assert.equal(monitor.spec.endpoints[0]!.port, 'metrics');
      }
    }
  });

  test("the consumer's grace period outlasts its stop bound, computed from the write deadline", async () => {
    const cases: [(string | object)[], number][] = [
      [[REQUIRED], 513], // T = 60 s: 2 × (4 × 60 + 1.4) + 30
      [[PRODUCTION], 273], // T = 30 s
      [[REQUIRED, { config: { ENABLE_BQ_STREAMING: 'false' } }], 4833], // load jobs: T = 600 s
      [[REQUIRED, { config: { BQ_INSERT_TIMEOUT_MS: '5000' } }], 100], // a write deep in its backoff: T + 30 s
    ];
    for (const [layers, expected] of cases) {
      const objects = await render(...layers);
      const s = settings(objects);
      const bound = stopBoundSeconds(s);
      assert.equal(bound, expected, 'the chart documents this bound');
      const grace = find<Workload>(objects, 'Deployment', '-consumer').spec.template.spec
        .terminationGracePeriodSeconds!;
      assert.ok(grace > bound, `terminationGracePeriodSeconds ${grace} must exceed the stop bound ${bound}`);
      const scheduler = find<Workload>(objects, 'Deployment', '-scheduler').spec.template.spec;
      assert.ok(
        scheduler.terminationGracePeriodSeconds! >= Number(s.SCHEDULE_SHUTDOWN_TIMEOUT_MS) / 1000 + 10,
      );
    }
    const tooShort = await renderFails(REQUIRED, { consumer: { terminationGracePeriodSeconds: 513 } });
    assert.match(
      tooShort,
      /consumer\.terminationGracePeriodSeconds \(513\) must be longer than the consumer's stop bound of 513 s/,
    );
    await render(REQUIRED, { consumer: { terminationGracePeriodSeconds: 514 } });
    assert.match(
      await renderFails(PRODUCTION, {
        config: { BQ_INSERT_TIMEOUT_MS: '60000' },
        consumer: { terminationGracePeriodSeconds: 283 },
      }),
      /stop bound of 513 s/,
    );
    assert.match(
      await renderFails(REQUIRED, { scheduler: { terminationGracePeriodSeconds: 30 } }),
      /scheduler\.terminationGracePeriodSeconds \(30\) must be at least SCHEDULE_SHUTDOWN_TIMEOUT_MS \/ 1000 \+ 10 = 35/,
    );
  });

  test('the consumer rolls one member at a time and never below its replicas; PDBs cover every workload', async () => {
    const objects = await render(REQUIRED);
    const consumer = find<Workload>(objects, 'Deployment', '-consumer');
    assert.deepEqual(consumer.spec.strategy?.rollingUpdate, { maxSurge: 1, maxUnavailable: 0 });
    assert.ok(consumer.spec.replicas! <= Number(settings(objects).TOPIC_PARTITIONS));
    for (const w of objects.filter((o): o is Workload => o.kind === 'Deployment')) {
      assert.ok(
        matches(w.spec.selector.matchLabels, w.spec.template.metadata.labels),
        `${w.metadata.name} selects its pods`,
      );
      const pdbs = objects.filter(
        (o) =>
          o.kind === 'PodDisruptionBudget' &&
          matches(
            (o as unknown as { spec: { selector: { matchLabels: Record<string, string> } } }).spec.selector
              .matchLabels,
            w.spec.template.metadata.labels,
          ),
      );
      assert.equal(pdbs.length, 1, `one PodDisruptionBudget covers ${w.metadata.name}`);
      assert.equal((pdbs[0] as unknown as { spec: { maxUnavailable: number } }).spec.maxUnavailable, 1);
    }
    assert.match(
      await renderFails(REQUIRED, { consumer: { replicas: 7 } }),
      /consumer\.replicas \(7\) is above kafka\.partitions \(6\)/,
    );
  });

  test('KEDA scales the real consumer group on the fact topics, within the partitions, down slower than up', async () => {
    for (const topicPrefix of ['', 'staging.']) {
      const objects = await render(PRODUCTION, { topicPrefix });
      const s = settings(objects);
      const consumer = find<Workload>(objects, 'Deployment', '-consumer');
      assert.equal(consumer.spec.replicas, undefined, 'the autoscaler owns the replica count');
      const args = consumer.spec.template.spec.containers[0]!.args!;
      const group = args[args.indexOf('--group') + 1];
      const so = find(objects, 'ScaledObject') as unknown as {
        spec: {
          scaleTargetRef: { name: string };
          minReplicaCount: number;
          maxReplicaCount: number;
          triggers: {
            type: string;
            metadata: Record<string, string>;
            authenticationRef?: { name: string };
          }[];
          advanced: {
            horizontalPodAutoscalerConfig: {
              behavior: Record<
                string,
                { stabilizationWindowSeconds: number; policies: { value: number; periodSeconds: number }[] }
              >;
            };
          };
        };
      };
      assert.equal(so.spec.scaleTargetRef.name, consumer.metadata.name);
      const catalogue = createTopicCatalogue({ prefix: topicPrefix });
      const factTopics = [catalogue.get('transactions').name, catalogue.get('job-executions').name];
      assert.deepEqual(so.spec.triggers.map((t) => t.metadata.topic).sort(), factTopics.sort());
      for (const t of so.spec.triggers) {
        assert.equal(t.type, 'kafka');
        assert.equal(t.metadata.consumerGroup, 'txstream-warehouse');
        assert.equal(t.metadata.consumerGroup, group, 'the group the consumer joins');
        assert.equal(t.metadata.consumerGroup, s.ALERTS_CONSUMER_GROUP, 'the group the lag alerts measure');
        assert.equal(t.metadata.bootstrapServers, s.KAFKA_BROKERS);
        assert.equal(t.metadata.sasl, 'scram_sha512');
        assert.equal(t.metadata.tls, 'enable');
        assert.equal(t.metadata.allowIdleConsumers, 'false');
        assert.equal(t.metadata.offsetResetPolicy, 'earliest');
        assert.equal(t.authenticationRef?.name, 'txstream-consumer-kafka');
      }
      if (topicPrefix) assert.deepEqual(args.slice(-2), ['--topic-prefix', topicPrefix]);
      assert.equal(so.spec.minReplicaCount, 3);
      assert.equal(so.spec.maxReplicaCount, 10);
      assert.ok(so.spec.maxReplicaCount <= Number(s.TOPIC_PARTITIONS));
      const { scaleUp, scaleDown } = so.spec.advanced.horizontalPodAutoscalerConfig.behavior;
      assert.ok(scaleDown!.stabilizationWindowSeconds > scaleUp!.stabilizationWindowSeconds);
      const rate = (p: { value: number; periodSeconds: number }[]) =>
        Math.max(...p.map((x) => x.value / x.periodSeconds));
      assert.ok(
        rate(scaleDown!.policies) < rate(scaleUp!.policies),
        'fewer members removed than added per second',
      );
      const auth = find(objects, 'TriggerAuthentication') as unknown as {
        spec: {
          secretTargetRef: { parameter: string; name: string; key: string }[];
          env: { parameter: string; name: string }[];
        };
      };
      assert.deepEqual(
        auth.spec.secretTargetRef.map((r) => [r.parameter, r.name, r.key]),
        [
          ['password', 'txstream-kafka', 'password'],
          ['ca', 'txstream-kafka', 'ca.crt'],
        ],
      );
      assert.deepEqual(
        auth.spec.env.map((e) => [e.parameter, e.name]),
        [['username', 'KAFKA_SASL_USERNAME']],
      );
    }
    assert.match(
      await renderFails(PRODUCTION, { keda: { maxReplicas: 11 } }),
      /keda\.maxReplicas \(11\) is above kafka\.partitions \(10\)/,
    );
    assert.match(
      await renderFails(PRODUCTION, { kafka: { partitions: 8 } }),
      /keda\.maxReplicas \(10\) is above kafka\.partitions \(8\)/,
    );
    assert.match(await renderFails(PRODUCTION, { hpa: { enabled: true } }), /choose one autoscaler/);
  });

  test('the CPU HPA fallback scales the consumer Deployment within the partitions', async () => {
    const objects = await render(REQUIRED, { hpa: { enabled: true, minReplicas: 2, maxReplicas: 6 } });
    const hpa = find(objects, 'HorizontalPodAutoscaler') as unknown as {
      spec: {
        scaleTargetRef: { kind: string; name: string };
        maxReplicas: number;
        behavior: Record<string, { stabilizationWindowSeconds: number }>;
      };
    };
    assert.deepEqual(hpa.spec.scaleTargetRef, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: 'txstream-consumer',
    });
    assert.ok(
      hpa.spec.behavior.scaleDown!.stabilizationWindowSeconds >
        hpa.spec.behavior.scaleUp!.stabilizationWindowSeconds,
    );
    assert.equal(find<Workload>(objects, 'Deployment', '-consumer').spec.replicas, undefined);
    assert.equal(objects.filter((o) => o.kind === 'ScaledObject').length, 0);
    assert.match(
      await renderFails(REQUIRED, { hpa: { enabled: true, maxReplicas: 7 } }),
      /hpa\.maxReplicas \(7\) is above kafka\.partitions \(6\)/,
    );
  });

  test("the production example: every setting passes txstream's own check, PodMonitor and PrometheusRule from deploy/prometheus/rules.yaml", async () => {
    const objects = await render(PRODUCTION);
    assertConfigLoads(objects);
    const monitor = find(objects, 'PodMonitor') as unknown as {
      metadata: { labels: Record<string, string> };
      spec: {
        selector: { matchLabels: Record<string, string> };
        podMetricsEndpoints: { port: string; relabelings: { targetLabel: string; replacement: string }[] }[];
      };
    };
    assert.equal(monitor.metadata.labels.release, 'kube-prometheus-stack');
    assert.equal(monitor.spec.podMetricsEndpoints[0]!.port, 'metrics');
    // job="txstream-consumer" etc.: what the rules select.
    assert.deepEqual(monitor.spec.podMetricsEndpoints[0]!.relabelings[0], {
      sourceLabels: ['__meta_kubernetes_pod_label_app_kubernetes_io_component'],
      targetLabel: 'job',
      replacement: 'txstream-$1',
    });
    for (const w of objects.filter((o): o is Workload => o.kind === 'Deployment'))
      assert.ok(matches(monitor.spec.selector.matchLabels, w.spec.template.metadata.labels));
    const rule = find(objects, 'PrometheusRule') as unknown as { spec: { groups: unknown[] } };
    const rules = parse(
      fs.readFileSync(path.join(PROJECT_ROOT, 'deploy', 'prometheus', 'rules.yaml'), 'utf8'),
    ) as { groups: unknown[] };
    assert.deepEqual(rule.spec.groups, rules.groups);
    // Every job the rules select is one the monitor's relabeling names: txstream-<component>.
    const jobs = new Set(
      objects
        .filter((o): o is Workload => o.kind === 'Deployment')
        .map((w) => `txstream-${w.spec.template.metadata.labels['app.kubernetes.io/component']}`),
    );
    const selected = [...JSON.stringify(rules.groups).matchAll(/job=\\"([^"\\]+)\\"/g)].map((m) => m[1]!);
    assert.ok(selected.length > 0, 'the rules select scrape jobs by name');
    for (const job of selected)
      assert.ok(jobs.has(job), `rules select job=${job}, which no scraped workload is`);
    // The channel settings reach the forwarder only (SMTP_USERNAME without its password stops the others).
    const forwarder = find<Workload>(objects, 'Deployment', '-alert-forwarder').spec.template.spec
      .containers[0]!;
    assert.ok(forwarder.env?.some((e) => e.name === 'SMTP_USERNAME'));
    assert.equal(settings(objects).SMTP_USERNAME, undefined);
    assert.match(
      await renderFails(PRODUCTION, { config: { SMTP_USERNAME: 'x' } }),
      /config\.SMTP_USERNAME: an alert channel setting/,
    );
  });

  test('secrets are only referenced: mounted as files from named Secrets, never rendered as values', async () => {
    const sentinel = (entry: string) => ({
      name: `sentinel-secret-${entry.toLowerCase()}`,
      key: `sentinel-key-${entry.toLowerCase()}`,
    });
    const entries = [
      'gcpKey',
      'kafkaSaslPassword',
      'kafkaCa',
      'registryPassword',
      'slackWebhookUrl',
      'pagerdutyRoutingKey',
      'smtpPassword',
    ];
    const objects = await render(PRODUCTION, {
      secrets: Object.fromEntries(entries.map((e) => [e, sentinel(e)])),
      forwarder: { config: { SMTP_USERNAME: 'txstream' } },
      metrics: { podMonitor: { enabled: false }, serviceMonitor: { enabled: true } },
    });
    assert.equal(objects.filter((o) => o.kind === 'Secret').length, 0, 'the chart makes no Secret');
    // Every place a sentinel appears is a reference to a Secret or to one of its keys.
    const allowed =
      /(\.secret\.secretName|\.secret\.items\[\d+\]\.(key|path)|\.secretTargetRef\[\d+\]\.(name|key)|\.env\[\d+\]\.value)$/;
    const walk = (v: unknown, at: string, where: string) => {
      if (typeof v === 'string') {
        if (v.includes('sentinel')) {
          assert.match(at, allowed, `${where}: ${at} holds ${v}`);
          if (at.endsWith('.value'))
            assert.match(v, /^\/var\/run\/secrets\/txstream\/[a-z-]+\/sentinel-key-/);
        }
      } else if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${at}[${i}]`, where));
      else if (v && typeof v === 'object')
        for (const [k, x] of Object.entries(v)) walk(x, `${at}.${k}`, where);
    };
    for (const o of objects) walk(o, '', `${o.kind} ${o.metadata.name}`);
    // No secret variable is set directly anywhere: only the _FILE forms, each to a mounted key.
    const direct = [
      'KAFKA_SASL_PASSWORD',
      'SCHEMA_REGISTRY_PASSWORD',
      'SLACK_WEBHOOK_URL',
      'PAGERDUTY_ROUTING_KEY',
      'SMTP_PASSWORD',
    ];
    const files = [...direct.map((d) => `${d}_FILE`), 'GCP_KEY_FILE', 'KAFKA_SSL_CA_FILE'];
    assert.deepEqual(
      Object.keys(settings(objects)).filter((k) => direct.includes(k) || files.includes(k)),
      [],
      'the shared ConfigMap names no secret and no secret file',
    );
    const seen = new Map<string, Set<string>>();
    for (const w of workloads(objects))
      for (const c of [...(w.spec.template.spec.initContainers ?? []), ...w.spec.template.spec.containers]) {
        const names = new Set((c.env ?? []).map((e) => e.name));
        for (const d of direct) assert.ok(!names.has(d), `${w.metadata.name}/${c.name} sets ${d} directly`);
        seen.set(`${w.kind}/${c.name}`, names);
      }
    assertConfigLoads(objects); // and every _FILE variable names a key of a mounted Secret volume
    // Least privilege: the channel secrets reach the forwarder only, the GCP key never reaches it.
    assert.ok(seen.get('Deployment/alert-forwarder')!.has('SLACK_WEBHOOK_URL_FILE'));
    assert.ok(!seen.get('Deployment/alert-forwarder')!.has('GCP_KEY_FILE'));
    for (const c of ['Deployment/consumer', 'Deployment/scheduler', 'Job/init', 'Job/views-deploy']) {
      assert.ok(seen.get(c)!.has('GCP_KEY_FILE'), `${c} has the GCP key`);
      assert.ok(seen.get(c)!.has('KAFKA_SASL_PASSWORD_FILE'), `${c} has the Kafka password`);
      assert.ok(!seen.get(c)!.has('SLACK_WEBHOOK_URL_FILE'), `${c} lacks the channel secrets`);
    }
    // A secret given as a value is refused, and the refusal does not repeat it.
    const leak = 'sentinel-password-value-0123456789';
    for (const name of ['KAFKA_SASL_PASSWORD', 'SLACK_WEBHOOK_URL_FILE', 'GCP_KEY_FILE']) {
      const message = await renderFails(REQUIRED, { config: { [name]: leak } });
      assert.match(message, new RegExp(`config\\.${name}: secrets are not chart values`));
      assert.ok(!message.includes(leak), 'the error does not echo the secret');
    }
  });

  test('the init Job is a pre-install and pre-upgrade hook running init, then views deploy, with the shared settings inline', async () => {
    const objects = await render(REQUIRED, { topicPrefix: 'staging.' });
    const job = find(objects, 'Job', '-init') as unknown as Workload & {
      metadata: { annotations: Record<string, string> };
    };
    assert.deepEqual(job.metadata.annotations['helm.sh/hook']!.split(',').sort(), [
      'pre-install',
      'pre-upgrade',
    ]);
    assert.match(job.metadata.annotations['helm.sh/hook-delete-policy']!, /before-hook-creation/);
    const pod = job.spec.template.spec;
    assert.deepEqual(
      pod.initContainers!.map((c) => c.args),
      [['init', '--topic-prefix', 'staging.']],
    );
    assert.deepEqual(
      pod.containers.map((c) => c.args),
      [['views', 'deploy']],
    );
    // Before the release's ConfigMap and ServiceAccount exist: no envFrom, and a hook ServiceAccount made first.
    for (const c of [...pod.initContainers!, ...pod.containers]) {
      assert.equal(c.envFrom, undefined);
      const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));
      for (const [k, v] of Object.entries(settings(objects))) assert.equal(env[k], v, `${c.name}: ${k}`);
    }
    const sa = find(objects, 'ServiceAccount', '-init');
    assert.equal(
      (job.spec.template.spec as unknown as { serviceAccountName: string }).serviceAccountName,
      sa.metadata.name,
    );
    assert.ok(
      Number(sa.metadata.annotations!['helm.sh/hook-weight']) <
        Number(job.metadata.annotations['helm.sh/hook-weight']),
    );
    const without = await render(REQUIRED, { init: { viewsDeploy: false } });
    const only = find<Workload>(without, 'Job', '-init').spec.template.spec;
    assert.equal(only.initContainers, undefined);
    assert.deepEqual(
      only.containers.map((c) => c.args),
      [['init']],
    );
  });

  test('helm lint --strict passes, and the packaged chart carries the linked rules and alerts.yaml', async () => {
    await run(helm, ['lint', '--strict', CHART, '-f', PRODUCTION, '--kube-version', KUBE_VERSION], {
      env: helmEnv,
    });
    const { stdout } = await run(helm, ['package', CHART, '--destination', scratch], { env: helmEnv });
    const archive = stdout.trim().split(/\s+/).at(-1)!;
    assert.ok(fs.existsSync(archive), `helm package wrote ${archive}`);
    const { stdout: rendered } = await run(helm, helmArgs([PRODUCTION], archive), { env: helmEnv });
    const docs = parseAllDocuments(rendered).map((d) => d.toJS() as K8sObject | null);
    const rule = docs.find((o) => o?.kind === 'PrometheusRule') as unknown as { spec: { groups: unknown[] } };
    const rules = parse(
      fs.readFileSync(path.join(PROJECT_ROOT, 'deploy', 'prometheus', 'rules.yaml'), 'utf8'),
    ) as {
      groups: unknown[];
    };
    assert.deepEqual(rule.spec.groups, rules.groups);
    const alerts = docs.find(
      (o) => o?.kind === 'ConfigMap' && o.metadata.name.endsWith('-alerts'),
    ) as unknown as {
      data: Record<string, string>;
    };
    assert.match(alerts.data['alerts.yaml']!, /^version: 1$/m);
  });
});
