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

/** Counts dead letters the DLQ acknowledged: per topic, and per topic and error code. */
export function countDeadLetters(
  metrics:
    | {
        deadLettered(topic: string, n: number): void;
        deadLetteredByCode?(topic: string, code: string, n: number): void;
      }
    | undefined,
  topic: string,
  letters: readonly DeadLetter[],
): void {
  if (!metrics || letters.length === 0) return;
  metrics.deadLettered(topic, letters.length);
  if (!metrics.deadLetteredByCode) return;
  const byCode = new Map<string, number>();
  for (const d of letters) byCode.set(d.error.code, (byCode.get(d.error.code) ?? 0) + 1);
  for (const [code, n] of byCode) metrics.deadLetteredByCode(topic, code, n);
}
