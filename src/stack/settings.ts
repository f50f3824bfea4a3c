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
  projectId: string;
  kafkaHeap: string;
  registryHeap: string;
  registryJava: string | undefined;
  readyTimeoutMs: number;
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
  const seen = new Map<number, string>();
  const clashes: string[] = [];
  for (const [name, p] of Object.entries(ports)) {
    const other = seen.get(p);
    if (other) clashes.push(`port ${p} is configured for both ${other} and ${name}`);
    seen.set(p, name);
  }
  if (clashes.length) throw new StackConfigError(clashes);
  return {
    cacheDir,
    stackDir: path.resolve(v.TXSTREAM_STACK_DIR ?? path.join(cacheDir, 'stack')),
    ports,
    kafkaAdvertisedPort: v.TXSTREAM_KAFKA_ADVERTISED_PORT ?? v.TXSTREAM_KAFKA_PORT,
    projectId: v.GCP_PROJECT_ID,
    kafkaHeap: v.TXSTREAM_KAFKA_HEAP,
    registryHeap: v.TXSTREAM_REGISTRY_HEAP,
    registryJava: v.TXSTREAM_REGISTRY_JAVA,
    readyTimeoutMs: v.TXSTREAM_STACK_TIMEOUT_MS,
  };
}
