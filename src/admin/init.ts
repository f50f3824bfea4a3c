import type { CompatibilityLevel, RegistryClient } from '../codec/registry.ts';
import { RegistryError } from '../codec/registry.ts';
import type { LoadedSchema, SchemaCatalog } from '../codec/schemas.ts';
import { TxstreamError } from '../errors.ts';
import type { ClusterSize, ExistingTopic, TopicAdmin, TopicRequest } from '../kafka/admin.ts';
import { DLQ_MAX_MESSAGE_BYTES, KAFKA_DEFAULT_MAX_MESSAGE_BYTES } from '../topics.ts';
import type { TopicCatalogue, TopicSpec } from '../topics.ts';

// `txstream init`: the topics of the catalogue (data topics and their DLQs) and the value schemas
// under `<topic>-value` with BACKWARD compatibility. Idempotent: what exists is reported as found and
// left alone. Schemas are checked before anything is created, so a breaking change leaves the cluster
// as it was (apart from the subjects' compatibility level, which init always enforces first: a check
// against a subject still at the registry's default level, NONE on Apicurio, would prove nothing).
//
// DLQ topics get max.message.bytes = DLQ_MAX_MESSAGE_BYTES (the source limit plus 64 KiB): a dead
// letter is a source record plus headers. A found DLQ topic with less is reported, not altered; dead
// letters are bounded to fit the broker default anyway, so below that default the note says letters
// may be sent stripped of their value.

export const INIT_COMPATIBILITY: CompatibilityLevel = 'BACKWARD';

export interface TopicSettings {
  partitions: number;
  replicationFactor: number;
  retentionMs: number;
}

/**
 * The replication factor of new topics. "auto" (the default) follows the cluster: three copies (and
 * min.insync.replicas=2, see topicRequests) when three or more brokers are up or the brokers' own
 * default.replication.factor is 3 or more, else one. The cluster's default keeps a broker that is
 * down while init runs from turning a three-node cluster's topics into single copies: init refuses
 * instead. A factor above the brokers up is refused here, before any topic, with both numbers.
 */
export function resolveReplicationFactor(configured: number | 'auto', cluster: ClusterSize): number {
  const { brokers } = cluster;
  if (configured === 'auto') {
    const rf = brokers >= 3 || (cluster.defaultReplicationFactor ?? 0) >= 3 ? 3 : 1;
    if (rf > brokers)
      throw new TxstreamError(
        'TOPIC_ERROR',
        `the cluster's default.replication.factor is ${cluster.defaultReplicationFactor}, but ${brokers} broker(s) are up: start the others, or set TOPIC_REPLICATION_FACTOR`,
      );
    return rf;
  }
  if (configured > brokers)
    throw new TxstreamError(
      'TOPIC_ERROR',
      `TOPIC_REPLICATION_FACTOR=${configured}, but the cluster has ${brokers} broker(s) up: set it to at most ${brokers}, or to auto`,
    );
  return configured;
}

export interface TopicReport {
  topic: string;
  kind: 'data' | 'dlq';
  status: 'created' | 'found';
  partitions: number;
  replicationFactor: number;
  cleanupPolicy: string;
  /** null for compacted topics, which keep the latest record per key however old. */
  retentionMs: number | null;
  /** Differences between a found topic and what init would create; init does not alter live topics. */
  notes: string[];
}

export interface SubjectReport {
  subject: string;
  topic: string;
  schemaFile: string;
  status: 'registered' | 'found';
  id: number;
  version: number;
  compatibility: CompatibilityLevel;
  /** 'set' when init changed the subject's level (or gave it one), 'found' when it already had it. */
  compatibilityStatus: 'set' | 'found';
}

export interface InitReport {
  topics: TopicReport[];
  subjects: SubjectReport[];
}

export interface SchemaRefusal {
  subject: string;
  schemaFile: string;
  /** The registry's reason. */
  reason: string;
  /** avsc's view of why the new schema cannot read the latest registered one, when it has one. */
  localReason?: string;
}

export class InitRefusedError extends TxstreamError {
  readonly refusals: SchemaRefusal[];
  constructor(refusals: SchemaRefusal[]) {
    super(
      'SCHEMA_INCOMPATIBLE',
      `refused: ${refusals.length} schema change(s) are not ${INIT_COMPATIBILITY} compatible; nothing was created or registered\n` +
        refusals
          .map(
            (r) =>
              `  - ${r.subject} (${r.schemaFile}): ${r.reason}` +
              (r.localReason ? `\n    (avsc: ${r.localReason})` : ''),
          )
          .join('\n'),
    );
    this.name = 'InitRefusedError';
    this.refusals = refusals;
  }
}

export interface InitDeps {
  catalogue: TopicCatalogue;
  schemas: SchemaCatalog;
  registry: RegistryClient;
  admin: TopicAdmin;
  /** replicationFactor "auto" is resolved against the cluster (resolveReplicationFactor). */
  settings: Omit<TopicSettings, 'replicationFactor'> & { replicationFactor: number | 'auto' };
  /** Progress lines for a human; the report is the result. */
  log?: (line: string) => void;
}

const DESCRIBED_CONFIGS = ['cleanup.policy', 'retention.ms', 'min.insync.replicas', 'max.message.bytes'];

export function topicRequests(
  catalogue: TopicCatalogue,
  s: TopicSettings,
): { request: TopicRequest; kind: 'data' | 'dlq' }[] {
  const out: { request: TopicRequest; kind: 'data' | 'dlq' }[] = [];
  // With three or more replicas an acks=all write must reach two of them, so one broker loss loses nothing.
  const isr: Record<string, string> = s.replicationFactor >= 3 ? { 'min.insync.replicas': '2' } : {};
  const base = { partitions: s.partitions, replicationFactor: s.replicationFactor };
  for (const spec of catalogue.all()) {
    const configs: Record<string, string> =
      spec.cleanupPolicy === 'compact'
        ? { 'cleanup.policy': 'compact', ...isr }
        : { 'cleanup.policy': 'delete', 'retention.ms': String(s.retentionMs), ...isr };
    out.push({ kind: 'data', request: { name: spec.name, ...base, configs } });
  }
  for (const spec of catalogue.all()) {
    // DLQs are never compacted, even for compacted sources: two rejects with the same key are two
    // separate problems, and compaction would silently drop the older one.
    out.push({
      kind: 'dlq',
      request: {
        name: spec.dlqName,
        ...base,
        configs: {
          'cleanup.policy': 'delete',
          'retention.ms': String(s.retentionMs),
          ...isr,
          'max.message.bytes': String(DLQ_MAX_MESSAGE_BYTES),
        },
      },
    });
  }
  return out;
}

function driftNotes(want: TopicRequest, have: ExistingTopic): string[] {
  const notes: string[] = [];
  if (have.partitions !== want.partitions)
    notes.push(`has ${have.partitions} partitions, configured ${want.partitions}`);
  if (have.replicationFactor !== want.replicationFactor)
    notes.push(`has replication factor ${have.replicationFactor}, configured ${want.replicationFactor}`);
  for (const [name, value] of Object.entries(want.configs)) {
    const actual = have.configs[name];
    if (actual === undefined || actual === value) continue;
    if (name === 'max.message.bytes') {
      const note = maxMessageBytesNote(want.name, Number(actual), Number(value));
      if (note) notes.push(note);
    } else notes.push(`${name}=${actual}, configured ${value}`);
  }
  return notes;
}

/** A found DLQ topic's max.message.bytes: more than init asks for is fine; less is said with its effect. */
function maxMessageBytesNote(topic: string, actual: number, wanted: number): string | undefined {
  if (actual >= wanted) return undefined;
  const effect =
    actual >= KAFKA_DEFAULT_MAX_MESSAGE_BYTES
      ? `dead letters still fit (they are bounded to the broker default ${KAFKA_DEFAULT_MAX_MESSAGE_BYTES}), without the headroom`
      : `below the broker default ${KAFKA_DEFAULT_MAX_MESSAGE_BYTES} that dead letters are bounded to: a letter the topic refuses ` +
        'for its size is sent stripped (no value bytes, no source headers, only their sha256 and length)';
  return (
    `max.message.bytes=${actual}, configured ${wanted}: ${effect}; to change it: kafka-configs.sh ` +
    `--bootstrap-server <broker> --alter --entity-type topics --entity-name ${topic} --add-config max.message.bytes=${wanted}`
  );
}

function localIncompatibility(
  schemas: SchemaCatalog,
  schema: LoadedSchema,
  latestText: string,
): string | undefined {
  try {
    const previous = schemas.typeFromText(latestText);
    // BACKWARD: a reader with the new schema must read data written with the previous one.
    schema.type.createResolver(previous);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

export async function runInit(deps: InitDeps): Promise<InitReport> {
  const { catalogue, schemas, registry, admin, settings } = deps;
  const replicationFactor = resolveReplicationFactor(settings.replicationFactor, await admin.clusterSize());
  const log = deps.log ?? (() => undefined);
  const specs = catalogue.all();
  // Every local schema must parse before anything talks to a server.
  const loaded = new Map<TopicSpec, LoadedSchema>(specs.map((s) => [s, schemas.load(s.recordName)]));

  const compatibility = new Map<string, 'set' | 'found'>();
  for (const spec of specs) {
    const level = await registry.getCompatibility(spec.subject);
    if (level === INIT_COMPATIBILITY) {
      compatibility.set(spec.subject, 'found');
    } else {
      await registry.setCompatibility(spec.subject, INIT_COMPATIBILITY);
      compatibility.set(spec.subject, 'set');
      log(`subject ${spec.subject}: compatibility ${level ?? '(registry default)'} -> ${INIT_COMPATIBILITY}`);
    }
  }

  const found = new Map<TopicSpec, { id: number; version: number }>();
  const pending: TopicSpec[] = [];
  const refusals: SchemaRefusal[] = [];
  for (const spec of specs) {
    const schema = loaded.get(spec)!;
    const existing = await registry.lookup(spec.subject, schema.text);
    if (existing) {
      found.set(spec, { id: existing.id, version: existing.version });
      continue;
    }
    const latest = await registry.latest(spec.subject);
    if (!latest) {
      pending.push(spec);
      continue;
    }
    const check = await registry.checkCompatibility(spec.subject, schema.text);
    if (check.compatible) {
      pending.push(spec);
      continue;
    }
    const localReason = localIncompatibility(schemas, schema, latest.schema);
    let reason = check.messages.join('; ');
    if (!reason) {
      // Apicurio's compatibility check gives no reason; its refusal of the registration does. The
      // subject is at BACKWARD (set above), so the registry refuses it as it just said it would.
      try {
        const accepted = await registry.register(spec.subject, schema.text);
        reason = `the registry's compatibility check said incompatible, yet it accepted the registration (id ${accepted.id})`;
      } catch (err) {
        if (!(err instanceof RegistryError) || err.code !== 'SCHEMA_INCOMPATIBLE') throw err;
        reason = err.reason;
      }
    }
    refusals.push({
      subject: spec.subject,
      schemaFile: schema.file,
      reason,
      ...(localReason ? { localReason } : {}),
    });
  }
  if (refusals.length > 0) throw new InitRefusedError(refusals);

  const wanted = topicRequests(catalogue, { ...settings, replicationFactor });
  const existing = await admin.describe(
    wanted.map((w) => w.request.name),
    DESCRIBED_CONFIGS,
  );
  const missing = wanted.filter((w) => !existing.has(w.request.name));
  await admin.create(missing.map((m) => m.request));
  for (const m of missing) log(`topic ${m.request.name}: created`);
  const topics: TopicReport[] = wanted.map(({ request, kind }) => {
    const have = existing.get(request.name);
    const policy = have?.configs['cleanup.policy'] ?? request.configs['cleanup.policy'] ?? 'delete';
    const retention = have?.configs['retention.ms'] ?? request.configs['retention.ms'];
    return {
      topic: request.name,
      kind,
      status: have ? 'found' : 'created',
      partitions: have?.partitions ?? request.partitions,
      replicationFactor: have?.replicationFactor ?? request.replicationFactor,
      cleanupPolicy: policy,
      retentionMs: policy.includes('delete') && retention !== undefined ? Number(retention) : null,
      notes: have ? driftNotes(request, have) : [],
    };
  });

  const subjects: SubjectReport[] = [];
  for (const spec of specs) {
    const schema = loaded.get(spec)!;
    let status: SubjectReport['status'] = 'found';
    let ids = found.get(spec);
    if (!ids) {
      await registry.register(spec.subject, schema.text);
      // Registration answers with the id only; the lookup gives the version as well.
      const v = await registry.lookup(spec.subject, schema.text);
      if (!v) {
        throw new TxstreamError(
          'REGISTRY_ERROR',
          `${spec.subject}: registered, but the registry cannot find the schema it just registered`,
        );
      }
      ids = { id: v.id, version: v.version };
      status = 'registered';
      log(`subject ${spec.subject}: registered id ${v.id} version ${v.version}`);
    }
    subjects.push({
      subject: spec.subject,
      topic: spec.name,
      schemaFile: schema.file,
      status,
      id: ids.id,
      version: ids.version,
      compatibility: INIT_COMPATIBILITY,
      compatibilityStatus: compatibility.get(spec.subject)!,
    });
  }
  return { topics, subjects };
}
