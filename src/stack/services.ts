import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Probe } from './health.ts';
import { probeBigQuery, probeKafka, probeRegistry } from './health.ts';
import type { ServerDirs } from './provision.ts';
import type { StackSettings } from './settings.ts';
import { PROJECT_ROOT } from './settings.ts';
import type { Toolchain } from './prerequisites.ts';

export const SERVICES = ['kafka', 'registry', 'bigquery'] as const;
export type ServiceName = (typeof SERVICES)[number];

export const SERVICE_TITLES: Record<ServiceName, string> = {
  kafka: 'Kafka broker (KRaft)',
  registry: 'Schema registry (Apicurio, Confluent API)',
  bigquery: 'BigQuery emulator (bqemulator)',
};

/** What clients need to reach the stack; written to endpoints.json, read by the CLI and tests. */
export interface Endpoints {
  kafkaBrokers: string;
  schemaRegistryUrl: string;
  bqApiEndpoint: string;
  /** host:port of the emulator's Storage Write API (gRPC, plaintext); absent in files of older versions. */
  bqStorageEndpoint?: string;
  bqProjectId: string;
}

export function endpointsOf(s: StackSettings): Endpoints {
  return {
    kafkaBrokers: `127.0.0.1:${s.ports.kafka}`,
    schemaRegistryUrl: `http://127.0.0.1:${s.ports.registry}/apis/ccompat/v7`,
    bqApiEndpoint: `http://127.0.0.1:${s.ports.bq}`,
    bqStorageEndpoint: `127.0.0.1:${s.ports.bqGrpc}`,
    bqProjectId: s.projectId,
  };
}

export function servicePorts(s: StackSettings, name: ServiceName): number[] {
  switch (name) {
    case 'kafka':
      return [s.ports.kafka, s.ports.kafkaController];
    case 'registry':
      return [s.ports.registry, s.ports.registryManagement];
    case 'bigquery':
      return [s.ports.bq, s.ports.bqGrpc];
  }
}

export function portEnvNames(name: ServiceName): string[] {
  switch (name) {
    case 'kafka':
      return ['TXSTREAM_KAFKA_PORT', 'TXSTREAM_KAFKA_CONTROLLER_PORT'];
    case 'registry':
      return ['TXSTREAM_REGISTRY_PORT', 'TXSTREAM_REGISTRY_MANAGEMENT_PORT'];
    case 'bigquery':
      return ['TXSTREAM_BQ_PORT', 'TXSTREAM_BQ_GRPC_PORT'];
  }
}

export function probe(s: StackSettings, name: ServiceName): Promise<Probe> {
  const e = endpointsOf(s);
  switch (name) {
    case 'kafka':
      return probeKafka([e.kafkaBrokers]);
    case 'registry':
      return probeRegistry(e.schemaRegistryUrl);
    case 'bigquery':
      return probeBigQuery(e.bqApiEndpoint, e.bqProjectId);
  }
}

export interface LaunchSpec {
  command: string;
  args: string[];
  /** A string unique to this stack directory that appears on the server's command line. */
  marker: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** One-time preparation before the first start (e.g. formatting Kafka's storage). */
  prepare?: { command: string; args: string[]; when: () => boolean };
}

/**
 * Kafka's storage id: 16 random bytes, base64url without padding, as kafka.tools.StorageTool makes.
 * Like Kafka's own Uuid.randomUuid(), it never starts with '-': `format -t -abc…` reads the id as an
 * option and fails (1 stack start in 64 did, which made CI fail now and then).
 */
export function kafkaClusterId(random: (n: number) => Buffer = randomBytes): string {
  for (;;) {
    const id = random(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

const KAFKA_LOG4J2 = `status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
`;

export function launchSpec(
  name: ServiceName,
  s: StackSettings,
  dirs: ServerDirs,
  tools: Toolchain,
): LaunchSpec {
  const dir = path.join(s.stackDir, name);
  fs.mkdirSync(dir, { recursive: true });
  switch (name) {
    case 'kafka': {
      const data = path.join(dir, 'data');
      const props = path.join(dir, 'server.properties');
      // Rewritten on every start so changed ports take effect; the data directory is kept.
      fs.writeFileSync(
        props,
        [
          'process.roles=broker,controller',
          'node.id=1',
          `controller.quorum.voters=1@127.0.0.1:${s.ports.kafkaController}`,
          `listeners=PLAINTEXT://127.0.0.1:${s.ports.kafka},CONTROLLER://127.0.0.1:${s.ports.kafkaController}`,
          `advertised.listeners=PLAINTEXT://127.0.0.1:${s.kafkaAdvertisedPort}`,
          'controller.listener.names=CONTROLLER',
          'inter.broker.listener.name=PLAINTEXT',
          'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
          `log.dirs=${data}`,
          'num.partitions=3',
          'offsets.topic.replication.factor=1',
          'offsets.topic.num.partitions=10',
          'transaction.state.log.replication.factor=1',
          'transaction.state.log.min.isr=1',
          'share.coordinator.state.topic.replication.factor=1',
          'share.coordinator.state.topic.min.isr=1',
          // A single-node dev broker: rebalances should not wait for members that will never come.
          'group.initial.rebalance.delay.ms=0',
          'auto.create.topics.enable=false',
          'log.retention.hours=168',
          '',
        ].join('\n'),
      );
      const log4j = path.join(dir, 'log4j2.properties');
      fs.writeFileSync(log4j, KAFKA_LOG4J2);
      const jvm = [
        `-Xmx${s.kafkaHeap}`,
        '-Xms256m',
        '-XX:+UseG1GC',
        '-Djava.awt.headless=true',
        `-Dlog4j2.configurationFile=${log4j}`,
        `-Dkafka.logs.dir=${path.join(dir, 'logs')}`,
        '-cp',
        path.join(dirs.kafka, 'lib', '*'),
      ];
      return {
        command: tools.kafkaJava,
        args: [...jvm, 'kafka.Kafka', props],
        marker: props,
        prepare: {
          command: tools.kafkaJava,
          args: [...jvm, 'kafka.tools.StorageTool', 'format', '-t', kafkaClusterId(), '-c', props],
          when: () => !fs.existsSync(path.join(data, 'meta.properties')),
        },
      };
    }
    case 'registry': {
      const db = path.join(dir, 'db', 'registry');
      return {
        command: tools.registryJava,
        args: [
          `-Xmx${s.registryHeap}`,
          '-Djava.awt.headless=true',
          '-Dquarkus.http.host=127.0.0.1',
          `-Dquarkus.http.port=${s.ports.registry}`,
          // The management interface (health, metrics) defaults to 0.0.0.0:9000; keep it on loopback.
          '-Dquarkus.management.host=127.0.0.1',
          `-Dquarkus.management.port=${s.ports.registryManagement}`,
          // File-backed H2 instead of the in-memory default, so schema ids survive a restart while the
          // Kafka topics that reference them survive too.
          `-Dapicurio.datasource.url=jdbc:h2:file:${db}`,
          '-jar',
          path.join(dirs.registry, 'app', 'quarkus-run.jar'),
        ],
        marker: db,
        cwd: dir,
      };
    }
    case 'bigquery': {
      const data = path.join(dir, 'data');
      fs.mkdirSync(data, { recursive: true });
      return {
        // Through a wrapper that serialises the emulator's one DuckDB connection between its REST and
        // Storage Write handlers (see the script: concurrent use corrupts or hangs it).
        command: path.join(dirs.bq, 'venv', 'bin', 'python'),
        args: [
          path.join(PROJECT_ROOT, 'scripts', 'stack', 'bqemulator-serialized.py'),
          'start',
          '--rest-host',
          '127.0.0.1',
          '--rest-port',
          String(s.ports.bq),
          '--grpc-host',
          '127.0.0.1',
          '--grpc-port',
          String(s.ports.bqGrpc),
          '--persistent',
          '--data-dir',
          data,
          '--project',
          s.projectId,
          '--log-format',
          'json',
          '--log-level',
          'warning',
        ],
        marker: data,
        // HOME holds the pre-installed DuckDB spatial extension (see provision.ts).
        env: { ...process.env, HOME: path.join(dirs.bq, 'home') },
        cwd: dir,
      };
    }
  }
}
