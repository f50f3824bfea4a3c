// The public library API of txstream, for upstream ETL and RPA services that publish to Kafka:
// typed producers per topic, the schemas and their validation, the workload generator and the config.

export { loadConfig, redactConfig, ConfigError } from './config/config.ts';
export type { Config } from './config/config.ts';

export { ERROR_CODES, TxstreamError, isTxstreamError } from './errors.ts';
export type { ErrorCode } from './errors.ts';

export {
  TOPIC_IDS,
  TOPIC_DEFINITIONS,
  createTopicCatalogue,
  isTopicId,
  keyOf,
  valueSubject,
} from './topics.ts';
export type {
  CleanupPolicy,
  RecordOf,
  TopicCatalogue,
  TopicDefinition,
  TopicId,
  TopicSpec,
} from './topics.ts';

export { createProducer } from './producers/producer.ts';
export type { CreateProducerOptions } from './producers/producer.ts';
export { createBatchingProducer } from './producers/batching.ts';
export type {
  BatchingOptions,
  Delivery,
  DeliveryError,
  ProducerStats,
  RecordResult,
  TopicProducer,
} from './producers/batching.ts';
export { createEtlPipeline } from './producers/etl.ts';
export type { EtlOutcome, EtlPipeline, EtlPipelineOptions, EtlSummary } from './producers/etl.ts';
export { createKafkaSender } from './kafka/producer.ts';
export type {
  Ack,
  Compression,
  KafkaSenderOptions,
  OutgoingMessage,
  RecordSender,
} from './kafka/producer.ts';

export { createSchemaCatalog, DEFAULT_SCHEMAS_DIR } from './codec/schemas.ts';
export type { LoadedSchema, SchemaCatalog } from './codec/schemas.ts';
export { createValidator } from './codec/validate.ts';
export type { FieldError, RecordValidator, ValidationResult, ValidatorOptions } from './codec/validate.ts';
export {
  COMPATIBILITY_LEVELS,
  RegistryError,
  createRegistryClient,
  createRegistryDecoder,
  registryConnection,
} from './codec/registry.ts';
export type {
  CompatibilityLevel,
  CompatibilityResult,
  RegistryClient,
  RegistryConnection,
  RegistryDecoder,
  SubjectVersion,
} from './codec/registry.ts';
export { createWireEncoder, decodeWith, frame, unframe } from './codec/wire.ts';
export type { WireEncoder, WireFrame } from './codec/wire.ts';
export { DecimalStringType, formatDecimal, isDecimalString, parseDecimal } from './codec/decimal.ts';
export * from './codec/records.ts';

export * from './workload/index.ts';
