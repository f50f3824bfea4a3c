import type { CommittedOffset } from '../consumers/runner.ts';
import type { LazyAdmin } from './client.ts';
import { classifyKafkaError } from './producer.ts';

/**
 * What a consumer group has committed for a topic, with each commit's metadata (kafkajs' consumer
 * does not expose it; its admin does). Partitions without a commit are left out.
 */
export function committedOffsets(
  admin: LazyAdmin,
  groupId: string,
): (topic: string) => Promise<CommittedOffset[]> {
  return async (topic) => {
    try {
      const a = await admin.get();
      const [entry] = await a.fetchOffsets({ groupId, topics: [topic] });
      return (entry?.partitions ?? [])
        .filter((p) => p.offset !== '-1')
        .map((p) => ({ partition: p.partition, offset: p.offset, metadata: p.metadata ?? null }));
    } catch (err) {
      await admin.reset();
      throw classifyKafkaError(err, `cannot read the committed offsets of group ${groupId} for ${topic}`);
    }
  };
}
