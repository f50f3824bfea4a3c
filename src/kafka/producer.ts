import kafkajs from 'kafkajs';
import type { Message, PartitionMetadata, Producer, RecordMetadata } from 'kafkajs';
import { causeChain, TxstreamError } from '../errors.ts';
import type { ErrorCode } from '../errors.ts';
import { createKafka, kafkaRetry } from './client.ts';
import type { KafkaConnection } from './client.ts';

// The kafkajs side of txstream's producers: one idempotent kafkajs producer behind a small port
// (RecordSender) that returns, per message, the partition and offset the broker assigned, and turns
// kafkajs errors into txstream error codes. Everything above it (validation, batching, per-record
// results) is plain code that tests drive with a fake sender.
//
// Delivery decisions, checked against kafkajs 2.2.4's source:
// - idempotent: true, acks: -1 (all). kafkajs requires acks=all for idempotence.
// - maxInFlightRequests: 1. The Java client allows up to 5 with idempotence because it re-assigns
//   sequence numbers when a batch fails (KAFKA-5494) and the broker keeps the state of the last 5
//   batches; kafkajs implements no such re-assignment (maintainer's answer in tulios/kafkajs#980), and
//   concurrent idempotent sends produced OUT_OF_ORDER_SEQUENCE_NUMBER (tulios/kafkajs#598). kafkajs
//   2.2.4 now serialises idempotent produce requests per broker with a mutex
//   (eosManager.acquireBrokerLock), so 1 is both the safe and the effective value.
// - After any failed send the kafkajs producer is discarded and a new one (new producer id) made for
//   the next batch. kafkajs rolls a partition's sequence number back when a request fails; if that
//   request had in fact been written (response lost, timeout), the next batch would reuse the same
//   sequence numbers and the broker would acknowledge it as a duplicate of the first without writing
//   it: a success report for records that are not in the log. A fresh producer id cannot collide.
// - Retries are bounded (kafkajs' default for idempotence is unbounded, which would hang a caller for
//   ever while the broker is down). With a fresh producer after each failure, bounding them cannot
//   break the sequence logic above.
// - One kafkajs send per partition (in parallel): a kafkajs send spanning several brokers can skip a
//   partition or append records twice when one broker fails mid-send (see send()).
// - GZIP is the only codec built into kafkajs; Snappy, LZ4 and ZSTD need extra codec packages.
// - allowAutoTopicCreation: false, so a topic that `txstream init` did not create is an error instead
//   of a silently auto-created topic with the broker's default partitions and no compaction.

// kafkajs' CommonJS exports after `logLevel` are invisible to Node's named-import detection.
const { CompressionTypes, Partitioners } = kafkajs;

export type Compression = 'gzip' | 'none';

/** What kafkajs sends as is: dead letters carry binary or null keys, tombstones and Buffer headers. */
export interface OutgoingMessage {
  key: string | Buffer | null;
  value: Buffer | null;
  headers?: Record<string, string | Buffer | (string | Buffer)[]>;
}

export interface Ack {
  partition: number;
  /** Kafka offsets are int64; kept as decimal strings as kafkajs reports them. */
  offset: string;
}

/** Sends one batch and acknowledges every message of it, or throws a TxstreamError for the whole batch. */
export interface RecordSender {
  /** Fails with TOPIC_ERROR when the topic does not exist. */
  assertTopic(topic: string): Promise<{ partitions: number }>;
  send(topic: string, messages: readonly OutgoingMessage[]): Promise<Ack[]>;
  close(): Promise<void>;
}

export interface KafkaSenderOptions {
  compression?: Compression;
  /** Retries of one batch before it is reported failed; default 5 (about 10 s with kafkajs' backoff). */
  retries?: number;
  /** Broker-side wait for the in-sync replicas (acks=all), ms; default 30 s. */
  ackTimeoutMs?: number;
}

const UNAVAILABLE = new Set([
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSNoBrokerAvailableError',
  'KafkaJSBrokerNotFound',
  'KafkaJSMetadataNotLoaded',
  'KafkaJSTopicMetadataNotLoaded',
  'KafkaJSStaleTopicMetadataAssignment',
]);

const UNAVAILABLE_PROTOCOL = new Set([
  'LEADER_NOT_AVAILABLE',
  'NOT_LEADER_FOR_PARTITION',
  'NOT_LEADER_OR_FOLLOWER',
  'NOT_ENOUGH_REPLICAS',
  'NOT_ENOUGH_REPLICAS_AFTER_APPEND',
  'BROKER_NOT_AVAILABLE',
  'REPLICA_NOT_AVAILABLE',
  'NETWORK_EXCEPTION',
  'KAFKA_STORAGE_ERROR',
]);

/** Maps a kafkajs error (or one it wrapped after exhausting retries) to a txstream error code. */
export function classifyKafkaError(err: unknown, what: string): TxstreamError {
  if (err instanceof TxstreamError) return err;
  const chain = causeChain(err);
  // The innermost error says what went wrong; the outer ones only say that retrying gave up.
  const root = chain.at(-1) ?? {};
  const message =
    chain
      .map((e) => e.message)
      .filter(Boolean)
      .at(-1) ?? String(err);
  let code: ErrorCode;
  if (
    root.name === 'KafkaJSRequestTimeoutError' ||
    root.name === 'KafkaJSTimeout' ||
    root.name === 'KafkaJSLockTimeout'
  ) {
    code = 'DELIVERY_TIMEOUT';
  } else if (
    (root.name && UNAVAILABLE.has(root.name)) ||
    (root.type && UNAVAILABLE_PROTOCOL.has(root.type))
  ) {
    code = 'BROKER_UNAVAILABLE';
  } else if (root.type === 'UNKNOWN_TOPIC_OR_PARTITION') {
    code = 'TOPIC_ERROR';
  } else {
    code = 'BROKER_REJECTED';
  }
  const retriable = code === 'BROKER_UNAVAILABLE' || code === 'DELIVERY_TIMEOUT';
  const detail = root.type ? `${root.type}: ${message}` : message;
  return new TxstreamError(code, `${what}: ${detail}`, { retriable, cause: err });
}

const TOO_LARGE = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE']);

/**
 * Whether the broker refused a send for its size (MESSAGE_TOO_LARGE: a record batch over the topic's
 * max.message.bytes; RECORD_LIST_TOO_LARGE: over the segment size), however kafkajs and classifyKafkaError
 * wrapped it. classifyKafkaError calls these BROKER_REJECTED, not retriable: the same bytes are refused
 * again. A caller that can send something smaller (the DLQ publisher) asks here rather than reading
 * kafkajs' error types itself.
 */
export function isRecordTooLarge(err: unknown): boolean {
  return causeChain(err, 8).some((e) => typeof e.type === 'string' && TOO_LARGE.has(e.type));
}

/**
 * A RecordSender over kafkajs. Partitioning is kafkajs' default (murmur2 of the key, as the Java
 * client), so a key always lands in the same partition whichever client produced it.
 */
export function createKafkaSender(
  connection: KafkaConnection,
  options: KafkaSenderOptions = {},
): RecordSender {
  const kafka = createKafka(connection);
  const compression = options.compression === 'none' ? CompressionTypes.None : CompressionTypes.GZIP;
  // The connection's time budget (KAFKA_RETRY_TIMEOUT_MS) unless the caller counts retries itself.
  const retry = kafkaRetry(options.retries !== undefined ? { retries: options.retries } : connection);
  const ackTimeoutMs = options.ackTimeoutMs ?? 30_000;

  let current: Promise<Producer> | undefined;
  let closed = false;
  /**
   * The partitions of each topic sent to, as kafkajs' partitioner wants them (only their number
   * matters to it, and which have a leader for keyless records: all are taken as led). Filled by
   * assertTopic, which send() calls for a topic it has not seen.
   */
  const layouts = new Map<string, PartitionMetadata[]>();
  const choose = Partitioners.DefaultPartitioner();
  const layout = (n: number): PartitionMetadata[] =>
    Array.from({ length: n }, (_, partitionId) => ({
      partitionId,
      leader: 0,
      replicas: [],
      isr: [],
      partitionErrorCode: 0,
    }));

  /**
   * The partition and offset of every message whose partition the broker acknowledged: kafkajs reports
   * a base offset per partition, and a request carries one record batch per partition, in order.
   * Messages of partitions missing from `metadata` are left out; send() refuses such a result.
   */
  async function acknowledge(
    topic: string,
    messages: readonly Message[],
    metadata: readonly RecordMetadata[],
  ): Promise<Map<Message, Ack>> {
    const base = new Map<number, bigint>();
    for (const m of metadata) {
      if (m.errorCode !== 0 || m.baseOffset === undefined) {
        await discard();
        throw new TxstreamError(
          'BROKER_REJECTED',
          `${topic}[${m.partition}]: broker error code ${m.errorCode}`,
        );
      }
      base.set(m.partition, BigInt(m.baseOffset));
    }
    const next = new Map<number, bigint>();
    const out = new Map<Message, Ack>();
    for (const m of messages) {
      const partition = m.partition!; // set by send() before anything is sent
      const first = base.get(partition);
      if (first === undefined) continue;
      const offset = next.get(partition) ?? first;
      next.set(partition, offset + 1n);
      out.set(m, { partition, offset: offset.toString() });
    }
    return out;
  }

  function producer(): Promise<Producer> {
    if (!current) {
      const p = kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        // Honours the partition send() set on each message.
        createPartitioner: Partitioners.DefaultPartitioner,
        retry,
      });
      current = p.connect().then(
        () => p,
        (err: unknown) => {
          current = undefined;
          void p.disconnect().catch(() => undefined);
          throw classifyKafkaError(err, 'cannot connect the producer');
        },
      );
    }
    return current;
  }

  async function discard(): Promise<void> {
    const old = current;
    current = undefined;
    if (old) await old.then((p) => p.disconnect()).catch(() => undefined);
  }

  const sender: RecordSender = {
    async assertTopic(topic) {
      const admin = kafka.admin();
      try {
        await admin.connect();
        const topics = await admin.listTopics();
        if (!topics.includes(topic)) {
          throw new TxstreamError(
            'TOPIC_ERROR',
            `topic ${topic} does not exist; create it with \`txstream init\``,
          );
        }
        const meta = await admin.fetchTopicMetadata({ topics: [topic] });
        const partitions = meta.topics[0]?.partitions.length ?? 0;
        if (partitions > 0) layouts.set(topic, layout(partitions));
        return { partitions };
      } catch (err) {
        throw classifyKafkaError(err, `cannot look up topic ${topic}`);
      } finally {
        await admin.disconnect().catch(() => undefined);
      }
    },

    async send(topic, outgoing) {
      if (closed) throw new TxstreamError('PRODUCER_CLOSED', 'the sender is closed');
      if (outgoing.length === 0) return [];
      const messages: Message[] = outgoing.map((m) => ({
        key: m.key,
        value: m.value,
        ...(m.headers ? { headers: m.headers } : {}),
      }));
      // One kafkajs send per partition, so that each send talks to one broker. A kafkajs send to
      // several brokers goes wrong when one of them fails: its retry skips a partition whose new leader
      // had already answered the send (the records are reported as acknowledged by no one:
      // tulios/kafkajs#1303, a fix proposed in #1798), and it resends to a broker whose request of the
      // failed attempt is still in flight, with sequence numbers that attempt already took, so the
      // broker appends the same records twice. Both showed in the cluster fault suite when a broker
      // of three was killed. With one partition per send, a retry resends exactly the failed request
      // with its own sequence numbers, which the broker deduplicates.
      let partitionMetadata = layouts.get(topic);
      if (!partitionMetadata) {
        try {
          await sender.assertTopic(topic);
        } catch (err) {
          await discard();
          throw err;
        }
        partitionMetadata = layouts.get(topic);
        if (!partitionMetadata) throw new TxstreamError('TOPIC_ERROR', `topic ${topic} has no partitions`);
      }
      const groups = new Map<number, Message[]>();
      for (const m of messages) {
        const partition = choose({ topic, partitionMetadata, message: m });
        m.partition = partition;
        const g = groups.get(partition);
        if (g) g.push(m);
        else groups.set(partition, [m]);
      }
      let p: Producer;
      try {
        p = await producer();
      } catch (err) {
        await discard();
        throw classifyKafkaError(err, `sending ${messages.length} records to ${topic} failed`);
      }
      const sent = await Promise.allSettled(
        [...groups.values()].map((group) =>
          p.send({ topic, messages: group, acks: -1, timeout: ackTimeoutMs, compression }),
        ),
      );
      const failed = sent.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) {
        await discard();
        layouts.delete(topic); // the topic may have grown
        throw classifyKafkaError(failed.reason, `sending ${messages.length} records to ${topic} failed`);
      }
      const metadata = sent.flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
      const acks = await acknowledge(topic, messages, metadata);
      if (acks.size !== messages.length) {
        // Cannot happen with one partition per send; if it ever does, claiming an offset would be a lie.
        await discard();
        throw new TxstreamError('BROKER_REJECTED', `${topic}: no acknowledgement matched a sent record`);
      }
      return messages.map((m) => acks.get(m)!);
    },

    async close() {
      closed = true;
      await discard();
    },
  };
  return sender;
}
