import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { describeCluster } from '../../../src/kafka/client.ts';
import { findJava } from '../../../src/stack/prerequisites.ts';
import { exitOf, isRunning, startProcess, stopProcess, tailFile } from '../../../src/stack/processes.ts';
import type { ProcessRecord } from '../../../src/stack/processes.ts';
import { isProvisioned, serverDirs } from '../../../src/stack/provision.ts';
import { kafkaClusterId } from '../../../src/stack/services.ts';
import { loadStackSettings } from '../../../src/stack/settings.ts';
import { JAVA_MIN } from '../../../src/stack/versions.ts';
import { freePorts } from '../ports.ts';
import { createTestPki } from './certs.ts';
import type { TestPki } from './certs.ts';

// A private, secured Kafka broker for tests: the same jars and KRaft single-node layout as the local
// stack, in its own temporary directory on free ports, with one SASL_SSL listener for clients
// (SCRAM-SHA-512 and PLAIN), a certificate from a CA made for this run, and users whose passwords are
// random per run. The shared stack is never touched.

const run = promisify(execFile);

export interface Credentials {
  username: string;
  password: string;
}

export interface SecureBroker {
  /** host:port of the SASL_SSL listener. */
  brokers: string[];
  pki: TestPki;
  /** A SCRAM-SHA-512 user, created when the storage was formatted. */
  scram: Credentials;
  /** A PLAIN user, declared in the listener's JAAS configuration. */
  plain: Credentials;
  /** The broker's log, for diagnosing a failed test. */
  log: string;
  stop(): Promise<void>;
}

const LOG4J2 = `status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
`;

/** Passwords made of base64url characters: nothing that JAAS or --add-scram would need quoted. */
function password(): string {
  return randomBytes(18).toString('base64url');
}

function serverProperties(o: {
  port: number;
  controllerPort: number;
  data: string;
  pki: TestPki;
  interBroker: Credentials;
  plain: Credentials;
  authorizer: boolean;
}): string {
  const plainJaas =
    'org.apache.kafka.common.security.plain.PlainLoginModule required ' +
    `username="${o.interBroker.username}" password="${o.interBroker.password}" ` +
    `user_${o.interBroker.username}="${o.interBroker.password}" ` +
    `user_${o.plain.username}="${o.plain.password}";`;
  return [
    'process.roles=broker,controller',
    'node.id=1',
    `controller.quorum.voters=1@127.0.0.1:${o.controllerPort}`,
    `listeners=SASL_SSL://127.0.0.1:${o.port},CONTROLLER://127.0.0.1:${o.controllerPort}`,
    `advertised.listeners=SASL_SSL://127.0.0.1:${o.port}`,
    'controller.listener.names=CONTROLLER',
    'listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT',
    // The broker's own client (inter-broker traffic) goes through the secured listener too, as PLAIN,
    // verifying the certificate against the same CA.
    'inter.broker.listener.name=SASL_SSL',
    'sasl.mechanism.inter.broker.protocol=PLAIN',
    'sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN',
    `listener.name.sasl_ssl.plain.sasl.jaas.config=${plainJaas}`,
    'listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;',
    'ssl.keystore.type=PEM',
    `ssl.keystore.location=${o.pki.serverKeystoreFile}`,
    'ssl.truststore.type=PEM',
    `ssl.truststore.location=${o.pki.caFile}`,
    `log.dirs=${o.data}`,
    'num.partitions=3',
    'offsets.topic.replication.factor=1',
    'offsets.topic.num.partitions=3',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'share.coordinator.state.topic.replication.factor=1',
    'share.coordinator.state.topic.min.isr=1',
    'group.initial.rebalance.delay.ms=0',
    'auto.create.topics.enable=false',
    ...(o.authorizer
      ? [
          // ACLs that tests add while clients run (a DENY takes effect at once). With no ACL on a
          // resource everyone may use it, so a test that adds none sees the broker as without the
          // authorizer. The broker's own principals (inter-broker PLAIN; the PLAINTEXT controller
          // listener's ANONYMOUS) are super users so that no ACL can lock the node out of itself.
          'authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer',
          'allow.everyone.if.no.acl.found=true',
          `super.users=User:${o.interBroker.username};User:ANONYMOUS`,
        ]
      : []),
    '',
  ].join('\n');
}

class ExitedDuringStartUp extends Error {}

/** Waits until the broker answers an authenticated, verified metadata request; fails early if it died. */
async function waitReady(
  b: Omit<SecureBroker, 'stop'>,
  rec: ProcessRecord,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const connection = {
    brokers: b.brokers,
    clientId: 'txstream-test-secure-ready',
    ssl: { ca: fs.readFileSync(b.pki.caFile, 'utf8') },
    sasl: { mechanism: 'scram-sha-512' as const, ...b.scram },
  };
  let last: unknown;
  while (Date.now() < deadline) {
    if (!isRunning(rec))
      throw new ExitedDuringStartUp(
        `the secured broker exited during start-up (${exitOf(rec) ?? 'how is unknown'}):\n${tailFile(b.log, 30)}`,
      );
    try {
      const d = await describeCluster(connection);
      if (d.controller !== null) return;
    } catch (err) {
      last = err;
    }
    await sleep(250);
  }
  throw new Error(
    `the secured broker was not ready within ${timeoutMs} ms (${(last as Error)?.message}):\n${tailFile(b.log, 30)}`,
  );
}

/**
 * Starts the broker (about 5–10 s: certificates, storage format, JVM start) and resolves once an
 * authenticated client gets metadata. Needs the Kafka jars the local stack provisioned.
 * `authorizer`: enforce ACLs (StandardAuthorizer), allowing everything no ACL mentions.
 *
 * A broker that dies during start-up is started once more, in a new directory on new ports, after
 * printing how the first one ended. One CI run saw the JVM gone within a second of its start with
 * an empty log (not reproduced in the runs since); the broker is the test's premise, not what
 * it tests, so one such loss should not fail the suite, and the printed exit says what ended it.
 * A second failure, or any other start-up error, fails the test.
 */
export async function startSecureBroker(
  opts: { readyTimeoutMs?: number; authorizer?: boolean } = {},
): Promise<SecureBroker> {
  try {
    return await startOnce(opts);
  } catch (err) {
    if (!(err instanceof ExitedDuringStartUp)) throw err;
    console.error(`[secure-broker] starting again once: ${err.message}`);
    return startOnce(opts);
  }
}

async function startOnce(opts: { readyTimeoutMs?: number; authorizer?: boolean }): Promise<SecureBroker> {
  const settings = loadStackSettings(process.env);
  const kafkaDir = serverDirs(settings.cacheDir).kafka;
  if (!isProvisioned(kafkaDir))
    throw new Error(`no Kafka in ${kafkaDir}: run \`npx txstream stack up\` once to provision it`);
  const java = await findJava(JAVA_MIN.kafka, undefined, process.env);
  if (!java) throw new Error(`the secured broker needs Java ${JAVA_MIN.kafka}+`);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'txstream-secure-kafka-'));
  let rec: ProcessRecord | undefined;
  const cleanup = async () => {
    if (rec) await stopProcess(dir, rec, 15_000).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const [port, controllerPort] = (await freePorts(2)) as [number, number];
    const pki = await createTestPki(path.join(dir, 'pki'));
    const scram = { username: 'txstream', password: password() };
    const plain = { username: 'txplain', password: password() };
    const interBroker = { username: 'broker', password: password() };
    const props = path.join(dir, 'server.properties');
    fs.writeFileSync(
      props,
      serverProperties({
        port,
        controllerPort,
        data: path.join(dir, 'data'),
        pki,
        interBroker,
        plain,
        authorizer: opts.authorizer ?? false,
      }),
      { mode: 0o600 },
    );
    const log4j = path.join(dir, 'log4j2.properties');
    fs.writeFileSync(log4j, LOG4J2);
    const jvm = [
      '-Xmx512m',
      '-Xms128m',
      '-XX:+UseG1GC',
      '-XX:TieredStopAtLevel=1',
      '-Djava.awt.headless=true',
      `-Dlog4j2.configurationFile=${log4j}`,
      `-Dkafka.logs.dir=${path.join(dir, 'logs')}`,
      '-cp',
      path.join(kafkaDir, 'lib', '*'),
    ];
    const clusterId = kafkaClusterId();
    // SCRAM credentials live in the cluster metadata; writing them at format time means the broker
    // starts with its users, with no unauthenticated bootstrap step.
    await run(
      java.bin,
      [
        ...jvm,
        'kafka.tools.StorageTool',
        'format',
        '-t',
        clusterId,
        '-c',
        props,
        '--add-scram',
        `SCRAM-SHA-512=[name=${scram.username},password=${scram.password}]`,
      ],
      { timeout: 60_000 },
    ).catch((err: { stdout?: string; stderr?: string; message: string }) => {
      // The command line carries the SCRAM password; only the tool's own output is reported.
      throw new Error(
        `formatting the secured broker's storage failed: ${err.stderr || err.stdout || 'no output'}`,
      );
    });
    rec = startProcess({
      stackDir: dir,
      service: 'kafka',
      command: java.bin,
      args: [...jvm, 'kafka.Kafka', props],
      marker: props,
    });
    const broker = { brokers: [`127.0.0.1:${port}`], pki, scram, plain, log: rec.log };
    await waitReady(broker, rec, opts.readyTimeoutMs ?? 60_000);
    return { ...broker, stop: cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
