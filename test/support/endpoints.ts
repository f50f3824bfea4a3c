import { randomBytes } from 'node:crypto';

/** Endpoints of the servers under test, published by test/global-setup.ts through the environment. */
export interface TestEndpoints {
  kafkaBrokers: string[];
  schemaRegistryUrl: string;
  bqApiEndpoint: string;
  /** host:port of the emulator's Storage Write API (gRPC). */
  bqStorageEndpoint: string;
  bqProjectId: string;
}

export function testEndpoints(): TestEndpoints {
  const missing = ['KAFKA_BROKERS', 'SCHEMA_REGISTRY_URL', 'BQ_API_ENDPOINT'].filter((k) => !process.env[k]);
  if (missing.length)
    throw new Error(
      `integration tests need ${missing.join(', ')}: run them through \`npm test\` (whose global setup starts the local stack) or export the variables`,
    );
  return {
    kafkaBrokers: process.env.KAFKA_BROKERS!.split(','),
    schemaRegistryUrl: process.env.SCHEMA_REGISTRY_URL!,
    bqApiEndpoint: process.env.BQ_API_ENDPOINT!,
    bqStorageEndpoint: process.env.BQ_STORAGE_API_ENDPOINT ?? '127.0.0.1:9060',
    bqProjectId: process.env.GCP_PROJECT_ID ?? 'txstream-local',
  };
}

/**
 * A name no other test (or earlier run against a long-lived stack) uses, valid as a Kafka topic, a
 * registry subject and a BigQuery dataset or table id.
 */
export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
}

/** The environment of a txstream child process pointed at `e`, with `extra` on top. */
export function txstreamEnv(e: TestEndpoints, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    KAFKA_BROKERS: e.kafkaBrokers.join(','),
    SCHEMA_REGISTRY_URL: e.schemaRegistryUrl,
    BQ_API_ENDPOINT: e.bqApiEndpoint,
    BQ_STORAGE_API_ENDPOINT: e.bqStorageEndpoint,
    GCP_PROJECT_ID: e.bqProjectId,
    ...extra,
  };
}
