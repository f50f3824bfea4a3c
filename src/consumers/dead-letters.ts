import type { KafkaMessage } from 'kafkajs';
import type { DeadLetter } from './runner.ts';

// The runner's dead letters: built from the consumed record as it came (bytes, key and headers
// unchanged, see src/producers/dlq.ts for how they are sent), and logged once per partition and code.

/** The consumed record a dead letter is made of. */
export interface DeadLetterSource {
  topic: string;
  partition: number;
  offset: string;
  timestamp: string;
  message: KafkaMessage;
  schemaId: number;
}

export function deadLetterOf(
  p: DeadLetterSource,
  stage: DeadLetter['error']['stage'],
  code: string,
  reason: string,
): DeadLetter {
  return {
    source: { topic: p.topic, partition: p.partition, offset: p.offset, timestamp: p.timestamp },
    key: p.message.key ?? null,
    value: p.message.value ?? null,
    headers: p.message.headers,
    error: { code, reason, stage },
    schemaId: p.schemaId,
  };
}

/** One warning per partition and error code, with the offsets: what an operator greps for. */
export function logDeadLetters(
  logger: { warn(obj: object, msg: string): void },
  entries: readonly DeadLetter[],
): void {
  const groups = new Map<string, { d: DeadLetter; offsets: string[] }>();
  for (const d of entries) {
    const key = `${d.source.topic}\u0000${d.source.partition}\u0000${d.error.code}`;
    const g = groups.get(key);
    if (g) g.offsets.push(d.source.offset);
    else groups.set(key, { d, offsets: [d.source.offset] });
  }
  for (const { d, offsets } of groups.values())
    logger.warn(
      {
        topic: d.source.topic,
        partition: d.source.partition,
        offsets: offsets.slice(0, 20),
        count: offsets.length,
        code: d.error.code,
        stage: d.error.stage,
        reason: d.error.reason,
      },
      'records dead-lettered',
    );
}
