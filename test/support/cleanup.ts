import { createRegistryClient } from '../../src/codec/registry.ts';
import { createTopicAdmin } from '../../src/kafka/admin.ts';
import { createTopicCatalogue } from '../../src/topics.ts';
import { testEndpoints } from './endpoints.ts';

/** Deletes the topics and subjects `txstream init --topic-prefix <prefix>` creates. */
export async function removeInitialized(prefix: string): Promise<void> {
  const e = testEndpoints();
  const catalogue = createTopicCatalogue({ prefix });
  const admin = createTopicAdmin({ brokers: e.kafkaBrokers, clientId: 'txstream-test-cleanup' });
  try {
    const existing = await admin.describe(catalogue.allTopicNames(), []);
    await admin.delete([...existing.keys()]);
  } finally {
    await admin.close();
  }
  const registry = createRegistryClient({ url: e.schemaRegistryUrl });
  for (const spec of catalogue.all()) await registry.deleteSubject(spec.subject, { permanent: true });
}
