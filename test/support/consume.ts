import type { KafkaMessage } from 'kafkajs';
import { createKafka } from '../../src/kafka/client.ts';
import { uniqueName } from './endpoints.ts';

export interface Consumed {
  partition: number;
  offset: string;
  key: string | null;
  value: Buffer;
  message: KafkaMessage;
}

/**
 * Reads a topic from the beginning with a fresh consumer group until `count` records arrived, then
 * leaves. It waits on the records themselves, not on a clock; the caller's test timeout bounds it.
 */
export async function readTopic(brokers: string[], topic: string, count: number): Promise<Consumed[]> {
  const consumer = createKafka({ brokers, clientId: 'txstream-test-reader' }).consumer({
    groupId: uniqueName('reader'),
  });
  const out: Consumed[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      if (count === 0) return resolve();
      consumer
        .run({
          eachBatch: async ({ batch }) => {
            for (const m of batch.messages) {
              out.push({
                partition: batch.partition,
                offset: m.offset,
                key: m.key?.toString() ?? null,
                value: m.value!,
                message: m,
              });
            }
            if (out.length >= count) resolve();
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return out;
}
