import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createRegistryClient } from '../../../src/codec/registry.ts';
import { createSchemaCatalog } from '../../../src/codec/schemas.ts';
import { loadConfig } from '../../../src/config/config.ts';
import { isTxstreamError } from '../../../src/errors.ts';
import { createKafkaSender } from '../../../src/kafka/producer.ts';
import { createProducer } from '../../../src/producers/producer.ts';
import { createTopicCatalogue } from '../../../src/topics.ts';
import { freePorts } from '../../support/ports.ts';
import { testEndpoints } from '../../support/endpoints.ts';

// A broker nobody listens on: the library says so with a retriable code and never claims a record.

const [deadPort] = await freePorts(1);
const dead = `127.0.0.1:${deadPort}`;

describe('unreachable broker', () => {
  it('a send fails with BROKER_UNAVAILABLE (retriable) instead of hanging or succeeding', async () => {
    const sender = createKafkaSender(
      { brokers: [dead], clientId: 'unreachable-test', retries: 0 },
      { retries: 1 },
    );
    await assert.rejects(
      sender.send('banking.transactions.v1', [{ key: 'k', value: Buffer.from([0, 0, 0, 0, 1, 2]) }]),
      (err: unknown) => isTxstreamError(err, 'BROKER_UNAVAILABLE') && err.retriable,
    );
    await sender.close();
  });

  it('createProducer refuses to start and names the problem', async () => {
    const e = testEndpoints();
    // A short retry budget: what is tested is the error, not how long a client waits for a failover.
    const config = loadConfig({ ...process.env, KAFKA_BROKERS: dead, KAFKA_RETRY_TIMEOUT_MS: '1000' });
    const registry = createRegistryClient({ url: e.schemaRegistryUrl });
    // The schema is registered for real, so the broker is the only thing missing.
    const prefix = `unreachable_${Date.now().toString(36)}.`;
    const spec = createTopicCatalogue({ prefix }).get('alerts');
    await registry.register(spec.subject, createSchemaCatalog().load('Alert').text);
    try {
      await assert.rejects(
        createProducer({ config, topic: 'alerts', registry, topicPrefix: prefix }),
        (err: unknown) =>
          isTxstreamError(err, 'BROKER_UNAVAILABLE') && new RegExp(dead).test((err as Error).message),
      );
    } finally {
      await registry.deleteSubject(spec.subject, { permanent: true });
    }
  });
});
