import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Probe } from './health.ts';
import { probeBigQuery, probeKafka, probeRegistry } from './health.ts';
import type { ServerDirs } from './provision.ts';
import { bootstrapServers, nodeDataDir, nodeDir, nodeProperties } from './kafka-cluster.ts';
import type { KafkaNode, StackSettings } from './settings.ts';
import { PROJECT_ROOT } from './settings.ts';
import type { Toolchain } from './prerequisites.ts';

export const SERVICES = ['kafka', 'registry', 'bigquery'] as const;
export type ServiceName = (typeof SERVICES)[number];

export const SERVICE_TITLES: Record<ServiceName, string> = {
  kafka: 'Kafka (KRaft)',
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
    kafkaBrokers: bootstrapServers(s),
    schemaRegistryUrl: `http://127.0.0.1:${s.ports.registry}/apis/ccompat/v7`,
    bqApiEndpoint: `http://127.0.0.1:${s.ports.bq}`,
    bqStorageEndpoint: `127.0.0.1:${s.ports.bqGrpc}`,
    bqProjectId: s.projectId,
  };
}

/**
 * One process of the stack. Every service is one process, except Kafka in cluster mode: one per node
 * (units kafka, kafka-2, kafka-3), each with its own process record, state directory and log.
 */
export interface Unit {
  service: ServiceName;
  unit: string;
  /** The Kafka node this unit runs; absent for the other services. */
  node?: KafkaNode;
}

export function unitsOf(s: StackSettings, name: ServiceName): Unit[] {
  if (name === 'kafka') return s.kafkaNodes.map((node) => ({ service: name, unit: node.unit, node }));
  return [{ service: name, unit: name }];
}

export function unitTitle(u: Unit, s: StackSettings): string {
  if (u.node && s.kafkaNodes.length > 1)
    return `${SERVICE_TITLES.kafka} node ${u.node.id} of ${s.kafkaNodes.length}`;
  return SERVICE_TITLES[u.service];
}

export function unitPorts(s: StackSettings, u: Unit): number[] {
  if (u.node) return [u.node.brokerPort, u.node.controllerPort];
  switch (u.service) {
    case 'kafka':
      return [s.ports.kafka, s.ports.kafkaController];
    case 'registry':
      return [s.ports.registry, s.ports.registryManagement];
    case 'bigquery':
      return [s.ports.bq, s.ports.bqGrpc];
  }
}

export function portEnvNames(u: Unit): string[] {
  if (u.node && u.node.id > 1) return ['TXSTREAM_KAFKA_NODE_PORTS', 'TXSTREAM_KAFKA_NODE_PORTS'];
  switch (u.service) {
    case 'kafka':
      return ['TXSTREAM_KAFKA_PORT', 'TXSTREAM_KAFKA_CONTROLLER_PORT'];
    case 'registry':
      return ['TXSTREAM_REGISTRY_PORT', 'TXSTREAM_REGISTRY_MANAGEMENT_PORT'];
    case 'bigquery':
      return ['TXSTREAM_BQ_PORT', 'TXSTREAM_BQ_GRPC_PORT'];
  }
}

/** A Kafka node answers on its own port (in a cluster: once it is registered with the quorum). */
export function probe(s: StackSettings, u: Unit): Promise<Probe> {
  const e = endpointsOf(s);
  switch (u.service) {
    case 'kafka': {
      const port = s.kafkaNodes.length > 1 ? u.node!.brokerPort : s.kafkaAdvertisedPort;
      return probeKafka([`127.0.0.1:${port}`]);
    }
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
  u: Unit,
  s: StackSettings,
  dirs: ServerDirs,
  tools: Toolchain,
  kafkaClusterIdOf: () => string = kafkaClusterId,
): LaunchSpec {
  const dir = u.node ? nodeDir(s, u.node) : path.join(s.stackDir, u.service);
  fs.mkdirSync(dir, { recursive: true });
  switch (u.service) {
    case 'kafka': {
      const node = u.node!;
      const data = nodeDataDir(s, node);
      const props = path.join(dir, 'server.properties');
      // Rewritten on every start so changed ports take effect; the data directory is kept.
      fs.writeFileSync(props, nodeProperties(s, node));
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
          args: [...jvm, 'kafka.tools.StorageTool', 'format', '-t', kafkaClusterIdOf(), '-c', props],
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
