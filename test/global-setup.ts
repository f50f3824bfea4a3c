import path from 'node:path';
import { loadStackSettings, PROJECT_ROOT } from '../src/stack/settings.ts';
import { down, status, up } from '../src/stack/stack.ts';

// Integration tests talk to real servers. Endpoints come from, in order:
//  1. KAFKA_BROKERS + SCHEMA_REGISTRY_URL + BQ_API_ENDPOINT already set (a stack you run yourself);
//  2. TXSTREAM_TEST_STACK=containers: testcontainers starts docker-compose.kafka.yml (needs Docker);
//  3. otherwise the local stack (`txstream stack up`), stopped again afterwards if this run started it.

let teardown: (() => Promise<void>) | undefined;

const log = (line: string) => process.stderr.write(`[global-setup] ${line}\n`);

export async function globalSetup(): Promise<void> {
  if (process.env.KAFKA_BROKERS && process.env.SCHEMA_REGISTRY_URL && process.env.BQ_API_ENDPOINT) {
    log(`using the endpoints from the environment (${process.env.KAFKA_BROKERS})`);
    return;
  }
  if (process.env.TXSTREAM_TEST_STACK === 'containers') {
    const { DockerComposeEnvironment, Wait } = await import('testcontainers');
    log('starting docker-compose.kafka.yml with testcontainers');
    const env = await new DockerComposeEnvironment(PROJECT_ROOT, path.basename('docker-compose.kafka.yml'))
      .withWaitStrategy('kafka-1', Wait.forHealthCheck())
      .withWaitStrategy('schema-registry-1', Wait.forHealthCheck())
      .withWaitStrategy('bigquery-1', Wait.forHealthCheck())
      .up();
    // The compose file publishes the same host ports as the local stack's defaults.
    process.env.KAFKA_BROKERS = '127.0.0.1:9092';
    process.env.SCHEMA_REGISTRY_URL = 'http://127.0.0.1:8081/apis/ccompat/v7';
    process.env.BQ_API_ENDPOINT = 'http://127.0.0.1:9050';
    process.env.BQ_STORAGE_API_ENDPOINT = '127.0.0.1:9060';
    process.env.GCP_PROJECT_ID ??= 'txstream-local';
    teardown = async () => {
      await env.down();
    };
    return;
  }
  const settings = loadStackSettings();
  const wasRunning = (await status(settings)).every((s) => s.healthy);
  const e = await up(settings, log);
  process.env.KAFKA_BROKERS = e.kafkaBrokers;
  process.env.SCHEMA_REGISTRY_URL = e.schemaRegistryUrl;
  process.env.BQ_API_ENDPOINT = e.bqApiEndpoint;
  process.env.BQ_STORAGE_API_ENDPOINT = e.bqStorageEndpoint;
  process.env.GCP_PROJECT_ID = e.bqProjectId;
  if (!wasRunning && process.env.TXSTREAM_TEST_KEEP_STACK !== '1') teardown = () => down(settings, log);
}

export async function globalTeardown(): Promise<void> {
  await teardown?.();
}
