import { DLQ_HEADERS } from '../../../src/producers/dlq.ts';
import { createKafka } from '../../../src/kafka/client.ts';
import { readTopic } from '../../support/consume.ts';

// The dead-letter path through a cluster fault: a poisoner sends records no decoder takes (no
// Confluent header) into the job-executions topic, which nothing else writes in the cluster
// scenarios, so every entry of that topic's log must reach its DLQ. The check compares the topic's
// log (every offset of every partition) with the sources the dead letters name in their headers:
// each entry at least once (the DLQ is at-least-once: a letter published again after a rebalance is
// counted as a duplicate, not as a loss).

export interface Poisoner {
  /** Stops sending and waits for the send in flight; the counts are what the producer reported. */
  stop(): Promise<{ acknowledged: number; failed: number }>;
}

/** One poison record every `everyMs` into `topic`, idempotent with acks=all, until stop(). */
export function startPoisoner(brokers: string[], topic: string, everyMs = 250): Poisoner {
  const producer = createKafka({
    brokers,
    clientId: 'faults-poisoner',
    retryTimeoutMs: 60_000,
  }).producer({ idempotent: true, maxInFlightRequests: 1 });
  let acknowledged = 0;
  let failed = 0;
  let running = true;
  const loop = (async () => {
    await producer.connect();
    for (let i = 0; running; i++) {
      try {
        await producer.send({
          topic,
          acks: -1,
          messages: [{ key: `poison-${i % 16}`, value: Buffer.from(`not an Avro record #${i}`) }],
        });
        acknowledged++;
      } catch {
        failed++;
      }
      await new Promise((r) => setTimeout(r, everyMs));
    }
    await producer.disconnect();
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { acknowledged, failed };
    },
  };
}

export interface DeadLetterCheck {
  /** Entries of the source topic's log. */
  entries: number;
  /** Distinct source entries the DLQ holds a letter for. */
  deadLettered: number;
  /** Letters beyond the first for one source entry. */
  duplicates: number;
  /** Source entries with no letter, as partition@offset. */
  missing: string[];
  /** Letters naming an entry that is not in the source log (or another topic). */
  unknown: number;
}

/** Compares a topic's log (offsets low..high-1 per partition) with the sources the letters name. */
export function checkDeadLetters(
  log: readonly { partition: number; low: number; high: number }[],
  sources: readonly { topic: string; partition: number; offset: number }[],
  topic: string,
): DeadLetterCheck {
  const seen = new Map<string, number>();
  let unknown = 0;
  const inLog = (p: number, o: number) => log.some((l) => l.partition === p && o >= l.low && o < l.high);
  for (const s of sources) {
    if (s.topic !== topic || !inLog(s.partition, s.offset)) {
      unknown++;
      continue;
    }
    const key = `${s.partition}@${s.offset}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  const missing: string[] = [];
  let entries = 0;
  for (const l of log)
    for (let o = l.low; o < l.high; o++) {
      entries++;
      if (!seen.has(`${l.partition}@${o}`)) missing.push(`${l.partition}@${o}`);
    }
  let duplicates = 0;
  for (const n of seen.values()) duplicates += n - 1;
  return { entries, deadLettered: seen.size, duplicates, missing, unknown };
}

export function deadLetterText(c: DeadLetterCheck): string {
  return (
    `DLQ: ${c.entries} poison entries, ${c.deadLettered} dead-lettered, ${c.missing.length} missing` +
    `${c.missing.length ? ` (${c.missing.slice(0, 5).join(', ')}${c.missing.length > 5 ? ', …' : ''})` : ''}, ` +
    `${c.duplicates} letters twice, ${c.unknown} unknown`
  );
}

/** Reads the topic's log bounds and every letter of its DLQ, then checks them. */
export async function deadLettersOf(
  brokers: string[],
  topic: string,
  dlqTopic: string,
): Promise<DeadLetterCheck> {
  const admin = createKafka({ brokers, clientId: 'faults-dlq-check', retryTimeoutMs: 30_000 }).admin();
  await admin.connect();
  try {
    const bounds = async (t: string) =>
      (await admin.fetchTopicOffsets(t)).map((o) => ({
        partition: o.partition,
        low: Number(o.low),
        high: Number(o.high),
      }));
    const log = await bounds(topic);
    const letters = (await bounds(dlqTopic)).reduce((n, b) => n + b.high - b.low, 0);
    const read = await readTopic(brokers, dlqTopic, letters);
    const header = (m: (typeof read)[number], name: string) => m.message.headers?.[name]?.toString() ?? '';
    const sources = read.map((m) => ({
      topic: header(m, DLQ_HEADERS.sourceTopic),
      partition: Number(header(m, DLQ_HEADERS.sourcePartition)),
      offset: Number(header(m, DLQ_HEADERS.sourceOffset)),
    }));
    return checkDeadLetters(log, sources, topic);
  } finally {
    await admin.disconnect();
  }
}
