import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

/** Repository root (where package.json, scripts/ and schemas/ live), from this file's location. */
export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

const port = z.coerce.number().int().min(1).max(65535);

const schema = z.object({
  TXSTREAM_CACHE_DIR: z.string().min(1).optional(),
  TXSTREAM_STACK_DIR: z.string().min(1).optional(),
  TXSTREAM_KAFKA_PORT: port.default(9092),
  TXSTREAM_KAFKA_CONTROLLER_PORT: port.default(9093),
  // The port the broker tells clients to connect to, when something listens there in front of it
  // (the fault suite's TCP proxy); default: the broker's own port.
  TXSTREAM_KAFKA_ADVERTISED_PORT: port.optional(),
  // 1 (the default: the demo and the fast tests) or 3: a KRaft cluster of three combined
  // broker+controller nodes, for the cluster fault scenarios and for trying replication locally.
  TXSTREAM_KAFKA_BROKERS: z.coerce
    .number()
    .int()
    .refine((n) => n === 1 || n === 3, 'must be 1 or 3')
    .default(1),
  // Ports of nodes 2 and 3 as "broker:controller,broker:controller"; default: the next pairs after
  // node 1's (9094:9095,9096:9097 with the default ports).
  TXSTREAM_KAFKA_NODE_PORTS: z
    .string()
    .regex(/^\d+:\d+(,\d+:\d+)*$/, 'must look like 9094:9095,9096:9097')
    .optional(),
  TXSTREAM_REGISTRY_PORT: port.default(8081),
  TXSTREAM_REGISTRY_MANAGEMENT_PORT: port.default(8091),
  TXSTREAM_BQ_PORT: port.default(9050),
  TXSTREAM_BQ_GRPC_PORT: port.default(9060),
  GCP_PROJECT_ID: z
    .string()
    .regex(/^[a-z][a-z0-9-]{4,28}[a-z0-9]$/, 'must be a valid GCP project id (6-30 chars, a-z 0-9 -)')
    .default('txstream-local'),
  TXSTREAM_KAFKA_HEAP: z
    .string()
    .regex(/^\d+[mMgG]$/, 'must look like 768m or 1g')
    .default('768m'),
  TXSTREAM_REGISTRY_HEAP: z
    .string()
    .regex(/^\d+[mMgG]$/, 'must look like 512m or 1g')
    .default('512m'),
  TXSTREAM_REGISTRY_JAVA: z.string().min(1).optional(),
  TXSTREAM_STACK_TIMEOUT_MS: z.coerce.number().int().positive().default(120_000),
});

export interface StackSettings {
  cacheDir: string;
  stackDir: string;
  ports: {
    kafka: number;
    kafkaController: number;
    registry: number;
    registryManagement: number;
    bq: number;
    bqGrpc: number;
  };
  /** The port advertised to clients; the broker's own port unless TXSTREAM_KAFKA_ADVERTISED_PORT is set. */
  kafkaAdvertisedPort: number;
  /** Every Kafka node, node 1 first (its ports are ports.kafka and ports.kafkaController). */
  kafkaNodes: KafkaNode[];
  projectId: string;
  kafkaHeap: string;
  registryHeap: string;
  registryJava: string | undefined;
  readyTimeoutMs: number;
}

/** One KRaft node of the local stack: broker and controller in one process. */
export interface KafkaNode {
  id: number;
  /** Its process record and state directory under the stack directory: kafka, kafka-2, kafka-3. */
  unit: string;
  brokerPort: number;
  controllerPort: number;
}

export function kafkaUnit(id: number): string {
  return id === 1 ? 'kafka' : `kafka-${id}`;
}

export class StackConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid stack configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'StackConfigError';
    this.problems = problems;
  }
}

/** Reads every stack setting from the environment at once and reports all problems together. */
export function loadStackSettings(env: NodeJS.ProcessEnv = process.env): StackSettings {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    throw new StackConfigError(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
  }
  const v = parsed.data;
  const cacheDir = path.resolve(v.TXSTREAM_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'txstream'));
  const ports = {
    kafka: v.TXSTREAM_KAFKA_PORT,
    kafkaController: v.TXSTREAM_KAFKA_CONTROLLER_PORT,
    registry: v.TXSTREAM_REGISTRY_PORT,
    registryManagement: v.TXSTREAM_REGISTRY_MANAGEMENT_PORT,
    bq: v.TXSTREAM_BQ_PORT,
    bqGrpc: v.TXSTREAM_BQ_GRPC_PORT,
  };
  const nodes: KafkaNode[] = [
    { id: 1, unit: kafkaUnit(1), brokerPort: ports.kafka, controllerPort: ports.kafkaController },
  ];
  const problems: string[] = [];
  const given = v.TXSTREAM_KAFKA_NODE_PORTS?.split(',').map((pair) => pair.split(':').map(Number));
  if (given && given.length !== v.TXSTREAM_KAFKA_BROKERS - 1)
    problems.push(
      `TXSTREAM_KAFKA_NODE_PORTS: names ${given.length} node(s), but TXSTREAM_KAFKA_BROKERS=${v.TXSTREAM_KAFKA_BROKERS} needs ${v.TXSTREAM_KAFKA_BROKERS - 1}`,
    );
  for (let id = 2; id <= v.TXSTREAM_KAFKA_BROKERS; id++) {
    const [b, c] = given?.[id - 2] ?? [ports.kafka + 2 * (id - 1), ports.kafkaController + 2 * (id - 1)];
    if (!b || !c || b > 65535 || c > 65535)
      problems.push(`TXSTREAM_KAFKA_NODE_PORTS: node ${id}'s ports ${b}:${c} are not valid ports`);
    nodes.push({ id, unit: kafkaUnit(id), brokerPort: b ?? 0, controllerPort: c ?? 0 });
  }
  if (v.TXSTREAM_KAFKA_BROKERS > 1 && v.TXSTREAM_KAFKA_ADVERTISED_PORT !== undefined)
    problems.push(
      'TXSTREAM_KAFKA_ADVERTISED_PORT: a single advertised port needs TXSTREAM_KAFKA_BROKERS=1 (every node advertises its own)',
    );
  // Every port the stack binds, or advertises in front of the broker (a proxy listens there), once.
  const seen = new Map<number, string>();
  const all: [string, number][] = [
    ...Object.entries(ports),
    ...nodes.slice(1).flatMap((n): [string, number][] => [
      [`${n.unit} broker`, n.brokerPort],
      [`${n.unit} controller`, n.controllerPort],
    ]),
    ...(v.TXSTREAM_KAFKA_ADVERTISED_PORT !== undefined &&
    v.TXSTREAM_KAFKA_ADVERTISED_PORT !== v.TXSTREAM_KAFKA_PORT
      ? [['kafkaAdvertised', v.TXSTREAM_KAFKA_ADVERTISED_PORT] as [string, number]]
      : []),
  ];
  for (const [name, p] of all) {
    const other = seen.get(p);
    if (other && p > 0) problems.push(`port ${p} is configured for both ${other} and ${name}`);
    seen.set(p, name);
  }
  if (problems.length) throw new StackConfigError(problems);
  return {
    cacheDir,
    stackDir: path.resolve(v.TXSTREAM_STACK_DIR ?? path.join(cacheDir, 'stack')),
    ports,
    kafkaAdvertisedPort: v.TXSTREAM_KAFKA_ADVERTISED_PORT ?? v.TXSTREAM_KAFKA_PORT,
    kafkaNodes: nodes,
    projectId: v.GCP_PROJECT_ID,
    kafkaHeap: v.TXSTREAM_KAFKA_HEAP,
    registryHeap: v.TXSTREAM_REGISTRY_HEAP,
    registryJava: v.TXSTREAM_REGISTRY_JAVA,
    readyTimeoutMs: v.TXSTREAM_STACK_TIMEOUT_MS,
  };
}
