import type {
  Alert,
  BankingNetwork,
  BankingTransaction,
  JobDefinition,
  JobExecution,
} from './codec/records.ts';

// The topic catalogue of DESIGN.md: which record travels on which topic, keyed by which field, under
// which cleanup policy, and where its rejects go. Every component derives names from here, so a
// prefix (tests, shared clusters) shifts the whole set at once and nothing hard-codes a topic name.

export const TOPIC_IDS = ['transactions', 'job-executions', 'networks', 'jobs', 'alerts'] as const;
export type TopicId = (typeof TOPIC_IDS)[number];

/** The TypeScript record carried by each topic. */
export interface RecordOf {
  transactions: BankingTransaction;
  'job-executions': JobExecution;
  networks: BankingNetwork;
  jobs: JobDefinition;
  alerts: Alert;
}

export type CleanupPolicy = 'delete' | 'compact';

/**
 * Kafka's default message.max.bytes (broker) and max.message.bytes (topic): the largest record batch a
 * topic takes. init leaves the data topics at the broker's value, so this is the source limit the
 * guarded decoder also defaults to, and the limit of any DLQ topic that init did not create.
 */
export const KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588;

/**
 * max.message.bytes of the DLQ topics init creates: the source limit plus 64 KiB. A dead letter is a
 * source record plus the txstream.* headers (and `txstream.original.` before every source header
 * name), so a DLQ with exactly the source limit has no room for a letter of a record at that limit.
 * The DLQ publisher bounds its letters to fit KAFKA_DEFAULT_MAX_MESSAGE_BYTES anyway (a DLQ topic made
 * by hand or by another tool has that); this headroom is for letters above that bound (a publisher
 * configured to keep records at the source limit whole, extra headers such as the alert forwarder's).
 */
export const DLQ_MAX_MESSAGE_BYTES = KAFKA_DEFAULT_MAX_MESSAGE_BYTES + 64 * 1024;

export interface TopicDefinition<K extends TopicId = TopicId> {
  readonly id: K;
  /** Topic name without prefix. */
  readonly baseName: string;
  /** Avro record name, also the schema file name without `.avsc`. */
  readonly recordName: string;
  /** Field of the record whose value is the Kafka key. */
  readonly keyField: keyof RecordOf[K] & string;
  readonly cleanupPolicy: CleanupPolicy;
  /** DLQ topic name without prefix: raw bytes, no schema. */
  readonly dlqBaseName: string;
}

export const TOPIC_DEFINITIONS: { readonly [K in TopicId]: TopicDefinition<K> } = {
  transactions: {
    id: 'transactions',
    baseName: 'banking.transactions.v1',
    recordName: 'BankingTransaction',
    keyField: 'account_number',
    cleanupPolicy: 'delete',
    dlqBaseName: 'banking.transactions.v1.dlq',
  },
  'job-executions': {
    id: 'job-executions',
    baseName: 'rpa.job-executions.v1',
    recordName: 'JobExecution',
    keyField: 'job_id',
    cleanupPolicy: 'delete',
    dlqBaseName: 'rpa.job-executions.v1.dlq',
  },
  networks: {
    id: 'networks',
    baseName: 'ref.banking-networks.v1',
    recordName: 'BankingNetwork',
    keyField: 'network_id',
    cleanupPolicy: 'compact',
    dlqBaseName: 'ref.banking-networks.v1.dlq',
  },
  jobs: {
    id: 'jobs',
    baseName: 'ref.jobs.v1',
    recordName: 'JobDefinition',
    keyField: 'job_id',
    cleanupPolicy: 'compact',
    dlqBaseName: 'ref.jobs.v1.dlq',
  },
  alerts: {
    id: 'alerts',
    baseName: 'txstream.alerts.v1',
    recordName: 'Alert',
    keyField: 'dedup_key',
    cleanupPolicy: 'delete',
    // Undeliverable alerts of the forwarder, not rejects of a decoder: named after the stream, not the version.
    dlqBaseName: 'txstream.alerts.dlq',
  },
};

/** A topic with its final (prefixed) names. */
export interface TopicSpec<K extends TopicId = TopicId> extends TopicDefinition<K> {
  readonly name: string;
  readonly dlqName: string;
  /** Registry subject of the value schema (TopicNameStrategy). */
  readonly subject: string;
  readonly schemaFile: string;
}

export interface TopicCatalogue {
  readonly prefix: string;
  get<K extends TopicId>(id: K): TopicSpec<K>;
  all(): TopicSpec[];
  /** Every topic init creates: the data topics followed by their DLQs. */
  allTopicNames(): string[];
}

const TOPIC_NAME = /^[A-Za-z0-9._-]+$/;

/** Subject of a topic's value schema, as Confluent's TopicNameStrategy names it. */
export function valueSubject(topicName: string): string {
  return `${topicName}-value`;
}

export function isTopicId(value: string): value is TopicId {
  return (TOPIC_IDS as readonly string[]).includes(value);
}

export function createTopicCatalogue(options: { prefix?: string } = {}): TopicCatalogue {
  const prefix = options.prefix ?? '';
  if (prefix && !TOPIC_NAME.test(prefix)) {
    throw new RangeError(
      `topic prefix ${JSON.stringify(prefix)} may only contain letters, digits, '.', '_', '-'`,
    );
  }
  const specs = new Map<TopicId, TopicSpec>();
  for (const id of TOPIC_IDS) {
    const d = TOPIC_DEFINITIONS[id] as TopicDefinition;
    const name = `${prefix}${d.baseName}`;
    if (name.length > 249) throw new RangeError(`topic name ${name} is longer than Kafka's 249 characters`);
    specs.set(id, {
      ...d,
      name,
      dlqName: `${prefix}${d.dlqBaseName}`,
      subject: valueSubject(name),
      schemaFile: `${d.recordName}.avsc`,
    });
  }
  return {
    prefix,
    get: <K extends TopicId>(id: K) => specs.get(id) as unknown as TopicSpec<K>,
    all: () => [...specs.values()],
    allTopicNames: () => [
      ...[...specs.values()].map((s) => s.name),
      ...[...specs.values()].map((s) => s.dlqName),
    ],
  };
}

/** The Kafka key of a record: the value of its topic's key field, as UTF-8 text. */
export function keyOf<K extends TopicId>(definition: TopicDefinition<K>, record: RecordOf[K]): string {
  const key = record[definition.keyField];
  if (typeof key !== 'string') {
    throw new TypeError(
      `${definition.recordName}.${definition.keyField} must be a string to serve as the key`,
    );
  }
  return key;
}
