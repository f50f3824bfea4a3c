import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import kafkajs from 'kafkajs';
import type { Admin } from 'kafkajs';
import { runInit } from '../../../src/admin/init.ts';
import { createRegistryClient } from '../../../src/codec/registry.ts';
import { createSchemaCatalog } from '../../../src/codec/schemas.ts';
import { loadConfig } from '../../../src/config/config.ts';
import { createTopicAdmin } from '../../../src/kafka/admin.ts';
import { createKafka, kafkaConnection } from '../../../src/kafka/client.ts';
import { PROJECT_ROOT } from '../../../src/stack/settings.ts';
import { createTopicCatalogue } from '../../../src/topics.ts';
import { TXSTREAM_BIN, until } from '../../support/consumer-harness.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';
import { freePorts } from '../../support/ports.ts';
import { startSecureBroker } from '../../support/security/secure-broker.ts';
import type { SecureBroker } from '../../support/security/secure-broker.ts';

// A kafkajs crash that kafkajs does not restart (a non-retriable error: here the broker starts refusing
// the member's group, as after an ACL change) must stop the long-running commands with exit 1 and one
// line naming the cause, so that a supervisor restarts them. Before, the member logged "consumer
// crashed", left the group and the process ran on for ever consuming nothing, /healthz still 200.

const { AclOperationTypes, AclPermissionTypes, AclResourceTypes, ResourcePatternTypes } = kafkajs;
const e = testEndpoints();
const prefix = `${uniqueName('crash')}.`;
const catalogue = createTopicCatalogue({ prefix });
const registry = createRegistryClient({ url: e.schemaRegistryUrl });
/** How long a crashed command may take to exit; without the fix it never does. */
const EXIT_WITHIN_MS = 60_000;
let broker: SecureBroker;
let admin: Admin;

function securedEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (/^KAFKA_(SSL|SASL)/.test(k)) delete env[k];
  return {
    ...env,
    KAFKA_BROKERS: broker.brokers.join(','),
    KAFKA_SSL: 'true',
    KAFKA_SSL_CA_FILE: broker.pki.caFile,
    KAFKA_SASL_MECHANISM: 'scram-sha-512',
    KAFKA_SASL_USERNAME: broker.scram.username,
    KAFKA_SASL_PASSWORD: broker.scram.password,
    SCHEMA_REGISTRY_URL: e.schemaRegistryUrl,
    BQ_API_ENDPOINT: e.bqApiEndpoint,
    GCP_PROJECT_ID: e.bqProjectId,
    TOPIC_PARTITIONS: '3',
    // A heartbeat a second: the refusal is met within about a second of the ACL.
    KAFKA_SESSION_TIMEOUT_MS: '6000',
    KAFKA_HEARTBEAT_INTERVAL_MS: '1000',
    METRICS_HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    ...extra,
  };
}

before(async () => {
  broker = await startSecureBroker({ authorizer: true });
  const config = loadConfig(securedEnv({}));
  const topics = createTopicAdmin(kafkaConnection(config, 'test-init'));
  try {
    await runInit({
      catalogue,
      schemas: createSchemaCatalog(),
      registry,
      admin: topics,
      settings: config.topics,
    });
  } finally {
    await topics.close();
  }
  admin = createKafka(kafkaConnection(config, 'test-acl')).admin();
  await admin.connect();
});

after(async () => {
  await admin?.disconnect();
  await broker?.stop();
  for (const spec of catalogue.all())
    await registry.deleteSubject(spec.subject, { permanent: true }).catch(() => undefined);
});

/** A txstream command as a child process, with its combined output kept for failure messages. */
function start(args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, [TXSTREAM_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exited, output: () => output };
}

/** The exit code, or 'running' when the process is still up after `ms`. */
async function exitWithin(
  p: { exited: Promise<number | null> },
  ms: number,
): Promise<number | null | 'running'> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<'running'>((resolve) => (timer = setTimeout(() => resolve('running'), ms)));
  try {
    return await Promise.race([p.exited, bound]);
  } finally {
    clearTimeout(timer);
  }
}

async function status(port: number, route: string): Promise<number> {
  try {
    return (await fetch(`http://127.0.0.1:${port}${route}`)).status;
  } catch {
    return 0;
  }
}

/** From now on the broker refuses every request of the consumer's user about `group`. */
async function denyGroup(group: string): Promise<void> {
  await admin.createAcls({
    acl: [
      {
        resourceType: AclResourceTypes.GROUP,
        resourceName: group,
        resourcePatternType: ResourcePatternTypes.LITERAL,
        principal: `User:${broker.scram.username}`,
        host: '*',
        operation: AclOperationTypes.ALL,
        permissionType: AclPermissionTypes.DENY,
      },
    ],
  });
}

describe('a consumer crash kafkajs does not restart', () => {
  for (const command of ['consume', 'alerts forward'] as const) {
    it(
      `${command}: the group refused while running (ACL) stops it with exit 1 and one line naming the cause`,
      {
        timeout: 150_000,
      },
      async (t) => {
        const group = uniqueName(`crash-${command.replace(' ', '-')}`);
        const [port] = (await freePorts(1)) as [number];
        const args =
          command === 'consume'
            ? ['consume', '--topic-prefix', prefix, '--group', group]
            : ['alerts', 'forward', '--topic-prefix', prefix, '--group', group];
        const proc = start(
          args,
          securedEnv({ METRICS_PORT: String(port), ALERTS_FILE: path.join(PROJECT_ROOT, 'alerts.yaml') }),
        );
        t.after(() => proc.child.kill('SIGKILL'));
        await until(
          'the member to join its group',
          async () => (await status(port, '/readyz')) === 200,
          60_000,
        ).catch((err: unknown) => {
          throw new Error(`${(err as Error).message}\n${proc.output()}`);
        });
        assert.equal(await status(port, '/healthz'), 200);

        const t0 = Date.now();
        await denyGroup(group);
        const code = await exitWithin(proc, EXIT_WITHIN_MS);
        t.diagnostic(`exit ${code} ${Date.now() - t0} ms after the ACL`);
        assert.notEqual(
          code,
          'running',
          `still running ${EXIT_WITHIN_MS} ms after the crash:\n${proc.output()}`,
        );
        assert.equal(code, 1, proc.output());
        t.diagnostic(proc.output().match(/^txstream: .*$/m)?.[0] ?? '(no txstream: line)');
        assert.match(
          proc.output(),
          /txstream: stopped on a fatal error: .*GROUP_AUTHORIZATION_FAILED.*Not authorized to access group/,
        );
        assert.doesNotMatch(proc.output(), /\n\s+at /, 'no stack trace');
        // The app's stop completes (consume logs "unclean stop" at error level when it throws); the
        // runner's own report that the crashed member left records uncommitted is a warning.
        assert.doesNotMatch(proc.output(), /"msg":"unclean stop"/, 'the stop after the crash completes');
        assert.ok(!proc.output().includes(broker.scram.password), 'no password in the output');
      },
    );
  }
});
