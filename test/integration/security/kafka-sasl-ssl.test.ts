import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { runInit } from '../../../src/admin/init.ts';
import { createRegistryClient, createRegistryDecoder } from '../../../src/codec/registry.ts';
import { createSchemaCatalog } from '../../../src/codec/schemas.ts';
import { loadConfig } from '../../../src/config/config.ts';
import { isTxstreamError } from '../../../src/errors.ts';
import { createTopicAdmin } from '../../../src/kafka/admin.ts';
import { createKafka, kafkaConnection } from '../../../src/kafka/client.ts';
import { createProducer } from '../../../src/producers/producer.ts';
import { PROJECT_ROOT } from '../../../src/stack/settings.ts';
import { createTopicCatalogue } from '../../../src/topics.ts';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import { createGenerator } from '../../../src/workload/generator.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';
import { startBasicAuthProxy } from '../../support/security/basic-auth-proxy.ts';
import { startSecureBroker } from '../../support/security/secure-broker.ts';
import type { SecureBroker } from '../../support/security/secure-broker.ts';

// txstream against a Kafka broker that only speaks SASL_SSL (a private broker started here, with a CA
// made for this run): records go through and come back with SCRAM-SHA-512 and with PLAIN when the CA
// is configured; an untrusted certificate and a wrong password each fail within seconds, with a
// message that names the cause and never the secret, in the library and in the CLI.

const run = promisify(execFile);
const e = testEndpoints();
const prefix = `${uniqueName('secure')}.`;
const catalogue = createTopicCatalogue({ prefix });
const registry = createRegistryClient({ url: e.schemaRegistryUrl });
const decoder = createRegistryDecoder({ url: e.schemaRegistryUrl });
let broker: SecureBroker;

/** The suite's environment without any Kafka security settings it might carry. */
function baseEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (/^KAFKA_(SSL|SASL)/.test(k)) delete env[k];
  return {
    ...env,
    KAFKA_BROKERS: broker.brokers.join(','),
    SCHEMA_REGISTRY_URL: e.schemaRegistryUrl,
    TOPIC_PARTITIONS: '3',
  };
}

type Mechanism = 'scram-sha-512' | 'plain';

function securedEnv(
  mechanism: Mechanism,
  overrides: { password?: string; caFile?: string | null } = {},
): NodeJS.ProcessEnv {
  const user = mechanism === 'plain' ? broker.plain : broker.scram;
  const caFile = overrides.caFile === undefined ? broker.pki.caFile : overrides.caFile;
  return {
    ...baseEnv(),
    KAFKA_SSL: 'true',
    ...(caFile ? { KAFKA_SSL_CA_FILE: caFile } : {}),
    KAFKA_SASL_MECHANISM: mechanism,
    KAFKA_SASL_USERNAME: user.username,
    KAFKA_SASL_PASSWORD: overrides.password ?? user.password,
  };
}

before(async () => {
  broker = await startSecureBroker();
  const config = loadConfig(securedEnv('scram-sha-512'));
  const admin = createTopicAdmin(kafkaConnection(config, 'test-init'));
  try {
    await runInit({ catalogue, schemas: createSchemaCatalog(), registry, admin, settings: config.topics });
  } finally {
    await admin.close();
  }
});

after(async () => {
  await broker?.stop();
  for (const spec of catalogue.all())
    await registry.deleteSubject(spec.subject, { permanent: true }).catch(() => undefined);
});

/** Reads `count` records of a topic from the beginning through the given (secured) configuration. */
async function readBack(
  config: ReturnType<typeof loadConfig>,
  topic: string,
  count: number,
): Promise<{ key: string; value: Buffer }[]> {
  const consumer = createKafka(kafkaConnection(config, 'test-reader')).consumer({
    groupId: uniqueName('secure-reader'),
  });
  const out: { key: string; value: Buffer }[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      consumer
        .run({
          eachMessage: async ({ message }) => {
            out.push({ key: message.key!.toString(), value: message.value! });
            if (out.length >= count) resolve();
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return out;
}

describe('Kafka over SASL_SSL', () => {
  for (const [mechanism, topicId] of [
    ['scram-sha-512', 'transactions'],
    ['plain', 'job-executions'],
  ] as const) {
    it(`${mechanism}: records sent by the producer library are read back and decode to what was sent`, async () => {
      const config = loadConfig(securedEnv(mechanism));
      assert.equal(config.kafka.sasl?.mechanism, mechanism);
      const g = createGenerator({ seed: `secure-${mechanism}`, startTime: new Date('2026-01-05T00:00:00Z') });
      const records: unknown[] =
        topicId === 'transactions'
          ? [...g.transactions({ count: 200 })]
          : [
              ...g.jobExecutions({
                from: new Date('2026-01-05T00:00:00Z'),
                to: new Date('2026-01-05T06:00:00Z'),
              }),
            ].slice(0, 200);
      assert.ok(records.length > 10);
      const producer = await createProducer({ config, topic: topicId, registry, topicPrefix: prefix });
      const results = await producer.send(records);
      await producer.close();
      assert.deepEqual(
        results.filter((r) => r.status !== 'sent'),
        [],
      );
      const consumed = await readBack(config, catalogue.get(topicId).name, records.length);
      assert.equal(consumed.length, records.length);
      const decoded = await Promise.all(
        consumed.map(async (c) => ({ ...((await decoder.decode(c.value)) as object) })),
      );
      const id = (r: unknown) => JSON.stringify(r);
      assert.deepEqual(decoded.map(id).sort(), records.map(id).sort());
    });
  }
});

/** Runs fn and returns its rejection with the time it took; fails when it resolves. */
async function failure(fn: () => Promise<unknown>): Promise<{ err: unknown; ms: number }> {
  const t0 = Date.now();
  try {
    await fn();
  } catch (err) {
    return { err, ms: Date.now() - t0 };
  }
  assert.fail('expected a failure');
}

async function describeTopics(env: NodeJS.ProcessEnv): Promise<unknown> {
  const admin = createTopicAdmin(kafkaConnection(loadConfig(env), 'test-probe'));
  try {
    return await admin.describe(catalogue.allTopicNames(), []);
  } finally {
    await admin.close();
  }
}

describe('certificate verification', () => {
  it('is on by default: without KAFKA_SSL_CA_FILE the broker is not trusted, and the failure is fast and says so', async () => {
    const { err, ms } = await failure(() => describeTopics(securedEnv('scram-sha-512', { caFile: null })));
    assert.ok(isTxstreamError(err, 'BROKER_REJECTED'), String(err));
    assert.equal(err.retriable, false);
    assert.match(err.message, /^Kafka TLS: the certificate of broker 127\.0\.0\.1:\d+ is not trusted/);
    assert.match(err.message, /\(UNABLE_TO_VERIFY_LEAF_SIGNATURE: unable to verify the first certificate\)/);
    assert.match(err.message, /set KAFKA_SSL_CA_FILE/);
    assert.ok(ms < 3000, `took ${ms} ms`);
  });

  it('a CA file holding another CA does not make the broker trusted', async () => {
    const { err, ms } = await failure(() =>
      describeTopics(securedEnv('scram-sha-512', { caFile: broker.pki.otherCaFile })),
    );
    assert.ok(isTxstreamError(err, 'BROKER_REJECTED'), String(err));
    assert.match(err.message, /not trusted .*KAFKA_SSL_CA_FILE does not hold the CA that signed it/);
    assert.ok(ms < 3000, `took ${ms} ms`);
  });

  it('a consumer is refused the same way before it joins a group', async () => {
    const config = loadConfig(securedEnv('plain', { caFile: null }));
    const consumer = createKafka(kafkaConnection(config, 'test-untrusted')).consumer({
      groupId: uniqueName('untrusted'),
    });
    const { err } = await failure(() => consumer.connect());
    await consumer.disconnect();
    assert.ok(isTxstreamError(err, 'BROKER_REJECTED'), String(err));
    assert.match(err.message, /Kafka TLS: .* not trusted/);
  });
});

describe('a wrong password', () => {
  for (const mechanism of ['scram-sha-512', 'plain'] as const) {
    it(`${mechanism}: fails fast, names SASL and the mechanism, and not the password`, async () => {
      const wrong = `${broker.scram.password}-wrong`;
      const { err, ms } = await failure(() => describeTopics(securedEnv(mechanism, { password: wrong })));
      assert.ok(isTxstreamError(err, 'BROKER_REJECTED'), String(err));
      assert.equal(err.retriable, false);
      assert.match(
        err.message,
        new RegExp(`^Kafka SASL authentication failed \\(mechanism ${mechanism.toUpperCase()}, user \\w+`),
      );
      assert.match(err.message, /check KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD/);
      for (const secret of [wrong, broker.scram.password, broker.plain.password])
        assert.ok(!err.message.includes(secret), 'the message holds a password');
      assert.ok(ms < 3000, `took ${ms} ms`);
    });
  }
});

/** Runs the CLI as a child process; never rejects, so every outcome is asserted on. */
async function txstream(env: NodeJS.ProcessEnv, ...args: string[]) {
  const t0 = Date.now();
  try {
    const r = await run(
      process.execPath,
      ['--disable-warning=TimeoutNegativeWarning', path.join(PROJECT_ROOT, 'bin', 'txstream.js'), ...args],
      { env, timeout: 60_000 },
    );
    return { code: 0, ...r, ms: Date.now() - t0 };
  } catch (err) {
    const x = err as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr, ms: Date.now() - t0 };
  }
}

describe('`txstream init` against the secured broker', () => {
  const init = (env: NodeJS.ProcessEnv) => txstream(env, 'init', '--no-warehouse', '--topic-prefix', prefix);

  it('succeeds with the CA and the right password (the topics are found)', async () => {
    const r = await init(securedEnv('scram-sha-512'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      new RegExp(`topic\\s+${prefix.replace(/\./g, '\\.')}banking\\.transactions\\.v1\\s+found`),
    );
    assert.ok(!`${r.stdout}${r.stderr}`.includes(broker.scram.password));
  });

  it('exits 1 with one line naming the certificate when the CA is missing; no secret printed', async () => {
    const r = await init(securedEnv('scram-sha-512', { caFile: null }));
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^txstream: init: Kafka TLS: the certificate of broker \S+ is not trusted .*\n$/);
    assert.ok(!r.stderr.includes(broker.scram.password), 'the password is printed');
    assert.ok(r.ms < 15_000, `took ${r.ms} ms`);
  });

  it('exits 1 with one line naming SASL when the password (from a _FILE) is wrong; no secret printed', async () => {
    const file = path.join(path.dirname(broker.pki.caFile), 'wrong-password');
    const wrong = `${broker.scram.password}-x`;
    fs.writeFileSync(file, `${wrong}\n`, { mode: 0o600 });
    const env = securedEnv('scram-sha-512');
    delete env.KAFKA_SASL_PASSWORD;
    const r = await init({ ...env, KAFKA_SASL_PASSWORD_FILE: file });
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(
      r.stderr,
      /^txstream: init: Kafka SASL authentication failed \(mechanism SCRAM-SHA-512, user txstream, brokers \S+\): .*\n$/,
    );
    for (const secret of [wrong, broker.scram.password])
      assert.ok(!r.stderr.includes(secret), 'a password is printed');
    assert.ok(r.ms < 15_000, `took ${r.ms} ms`);
  });
});

describe('trust settings that would do nothing', () => {
  it('a CA file without KAFKA_SSL, or one holding no certificate, is refused at start-up (exit 2)', async () => {
    const notPem = path.join(path.dirname(broker.pki.caFile), 'not-a-certificate.pem');
    fs.writeFileSync(notPem, 'not a certificate\n');
    const env = securedEnv('scram-sha-512', { caFile: notPem });
    delete env.KAFKA_SSL;
    const r = await txstream(env, 'init', '--no-warehouse', '--topic-prefix', prefix);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /KAFKA_SSL_CA_FILE: \S+ holds no PEM certificate/);
    assert.match(r.stderr, /KAFKA_SSL_CA_FILE is set but KAFKA_SSL is not: set KAFKA_SSL=true/);
    assert.ok(!r.stderr.includes(broker.scram.password));
  });
});

describe('schema registry over basic auth, with every secret set', () => {
  const registryUser = { username: 'txstream-registry', password: randomBytes(18).toString('base64url') };
  let proxy: Awaited<ReturnType<typeof startBasicAuthProxy>>;
  before(async () => {
    proxy = await startBasicAuthProxy(e.schemaRegistryUrl, registryUser);
  });
  after(() => proxy?.close());

  const produce = (env: NodeJS.ProcessEnv) =>
    txstream(
      env,
      'produce',
      'transactions',
      '--synthetic',
      '--count',
      '50',
      '--seed',
      '8',
      '--no-progress',
      '--topic-prefix',
      prefix,
    );
  const secrets = () => [
    broker.scram.password,
    registryUser.password,
    Buffer.from(`${registryUser.username}:${registryUser.password}`).toString('base64'),
  ];

  it('`txstream produce` sends through SASL_SSL and the authenticated registry; no secret in its output', async () => {
    const before = proxy.forwarded();
    const r = await produce({
      ...securedEnv('scram-sha-512'),
      SCHEMA_REGISTRY_URL: proxy.url,
      SCHEMA_REGISTRY_USERNAME: registryUser.username,
      SCHEMA_REGISTRY_PASSWORD: registryUser.password,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /sent 50, rejected 0, failed 0/);
    assert.ok(proxy.forwarded() > before, 'the registry was asked through the proxy');
    for (const secret of secrets())
      assert.ok(!`${r.stdout}${r.stderr}`.includes(secret), 'a secret is printed');
  });

  it('a wrong registry password: exit 3 with one line naming the registry refusal; no secret printed', async () => {
    const refusedBefore = proxy.refused();
    const wrong = `${registryUser.password}-wrong`;
    const r = await produce({
      ...securedEnv('scram-sha-512'),
      SCHEMA_REGISTRY_URL: proxy.url,
      SCHEMA_REGISTRY_USERNAME: registryUser.username,
      SCHEMA_REGISTRY_PASSWORD: wrong,
    });
    assert.equal(r.code, 3);
    assert.match(r.stderr, /^txstream: REGISTRY_AUTH: schema registry refused .*\(HTTP 401\).*\n$/);
    assert.ok(proxy.refused() > refusedBefore);
    for (const secret of [...secrets(), wrong])
      assert.ok(!`${r.stdout}${r.stderr}`.includes(secret), 'a secret is printed');
  });

  it('a wrong Kafka password: `txstream produce` exits 3 with one line naming SASL; no secret printed', async () => {
    const wrong = `${broker.scram.password}-wrong`;
    const r = await produce({
      ...securedEnv('scram-sha-512', { password: wrong }),
      SCHEMA_REGISTRY_URL: proxy.url,
      SCHEMA_REGISTRY_USERNAME: registryUser.username,
      SCHEMA_REGISTRY_PASSWORD: registryUser.password,
    });
    assert.equal(r.code, 3);
    assert.match(
      r.stderr,
      /^txstream: BROKER_REJECTED: Kafka SASL authentication failed \(mechanism SCRAM-SHA-512, .*\n$/,
    );
    for (const secret of [...secrets(), wrong])
      assert.ok(!`${r.stdout}${r.stderr}`.includes(secret), 'a secret is printed');
    assert.ok(r.ms < 15_000, `took ${r.ms} ms`);
  });
});

describe('every component with every secret set, at debug level: no secret in any output', () => {
  const registryUser = { username: 'txstream-registry', password: randomBytes(18).toString('base64url') };
  const slackSecret = randomBytes(12).toString('hex');
  const pagerdutyKey = randomBytes(16).toString('hex');
  const smtpPassword = randomBytes(12).toString('base64url');
  const dataset = uniqueName('secrets');
  let proxy: Awaited<ReturnType<typeof startBasicAuthProxy>>;
  const outputs: { what: string; text: string }[] = [];

  const env = (): NodeJS.ProcessEnv => ({
    ...securedEnv('scram-sha-512'),
    SCHEMA_REGISTRY_URL: proxy.url,
    SCHEMA_REGISTRY_USERNAME: registryUser.username,
    SCHEMA_REGISTRY_PASSWORD: registryUser.password,
    BQ_API_ENDPOINT: e.bqApiEndpoint,
    GCP_PROJECT_ID: e.bqProjectId,
    BQ_DATASET: dataset,
    // Unreachable on purpose: the channels' credentials are only configured, so they must not leak
    // from configuration, start-up or error logs either.
    SLACK_WEBHOOK_URL: `http://127.0.0.1:9/services/T000/B000/${slackSecret}`,
    PAGERDUTY_ROUTING_KEY: pagerdutyKey,
    PAGERDUTY_EVENTS_URL: 'http://127.0.0.1:9/v2/enqueue',
    SMTP_HOST: '127.0.0.1',
    SMTP_PORT: '9',
    SMTP_USERNAME: 'alerts',
    SMTP_PASSWORD: smtpPassword,
    ALERT_EMAIL_TO: 'ops@example.com',
    METRICS_PORT: '0',
    LOG_LEVEL: 'debug',
  });
  const secrets = () => [
    broker.scram.password,
    registryUser.password,
    Buffer.from(`${registryUser.username}:${registryUser.password}`).toString('base64'),
    slackSecret,
    pagerdutyKey,
    smtpPassword,
  ];

  /** Runs a long-running command until `ready` appears in its output, then stops it with SIGTERM. */
  async function runUntil(args: string[], ready: RegExp): Promise<{ code: number | null; text: string }> {
    const child = spawn(
      process.execPath,
      ['--disable-warning=TimeoutNegativeWarning', path.join(PROJECT_ROOT, 'bin', 'txstream.js'), ...args],
      { env: env(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let text = '';
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no ${ready} from ${args.join(' ')}:\n${text}`)),
        60_000,
      );
      const onData = (b: Buffer) => {
        text += b.toString('utf8');
        if (ready.test(text)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', () => {
        clearTimeout(timer);
        if (!ready.test(text)) reject(new Error(`${args.join(' ')} exited before ${ready}:\n${text}`));
      });
    });
    child.kill('SIGTERM');
    return { code: await exited, text };
  }

  before(async () => {
    proxy = await startBasicAuthProxy(e.schemaRegistryUrl, registryUser);
  });
  after(async () => {
    await proxy?.close();
    await createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint })
      .dataset(dataset)
      .delete({ force: true })
      .catch(() => undefined);
  });

  it('init, produce, consume, schedule run, alerts evaluate and alerts forward all work and print no secret', async () => {
    const init = await txstream(env(), 'init', '--topic-prefix', prefix);
    assert.equal(init.code, 0, init.stderr);
    outputs.push({ what: 'init', text: init.stdout + init.stderr });

    const produced = await txstream(
      env(),
      'produce',
      'transactions',
      '--synthetic',
      '--count',
      '20',
      '--no-progress',
      '--topic-prefix',
      prefix,
    );
    assert.equal(produced.code, 0, produced.stderr);
    outputs.push({ what: 'produce', text: produced.stdout + produced.stderr });

    const consume = await runUntil(
      ['consume', '--topic-prefix', prefix, '--group', uniqueName('secrets')],
      /"consuming"/,
    );
    assert.equal(consume.code, 0, consume.text);
    outputs.push({ what: 'consume', text: consume.text });

    const jobs = await txstream(env(), 'schedule', 'run', 'dimensions', '--topic-prefix', prefix);
    assert.equal(jobs.code, 0, jobs.stderr);
    outputs.push({ what: 'schedule run dimensions', text: jobs.stdout + jobs.stderr });

    const evaluate = await txstream(env(), 'alerts', 'evaluate', '--dry-run', '--topic-prefix', prefix);
    outputs.push({ what: 'alerts evaluate', text: evaluate.stdout + evaluate.stderr });

    const forward = await runUntil(['alerts', 'forward', '--topic-prefix', prefix], /"forwarding alerts"/);
    assert.equal(forward.code, 0, forward.text);
    outputs.push({ what: 'alerts forward', text: forward.text });

    // The long-running components logged (start-up lines carry their settings' context).
    for (const what of ['consume', 'alerts forward'])
      assert.match(outputs.find((o) => o.what === what)!.text, /"level":30/, `${what} logged`);
    for (const o of outputs)
      for (const [i, secret] of secrets().entries())
        assert.ok(!o.text.includes(secret), `secret #${i} appears in the output of ${o.what}`);
  });
});
