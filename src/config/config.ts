import fs from 'node:fs';
import { validateDetailed } from 'node-cron';
import { z } from 'zod';
import { readEndpoints } from '../stack/stack.ts';
import { loadStackSettings } from '../stack/settings.ts';

// The one declared configuration of txstream: every setting, its env variable, its default, validated
// once at start-up (all problems reported together) and frozen. The seed's names are kept
// (ENABLE_BQ_STREAMING, BQ_STREAMING_BATCH_SIZE, BQ_STREAMING_INTERVAL_MS, GCP_PROJECT_ID, GCP_KEY_FILE).
// Secrets may be given inline or as <NAME>_FILE pointing to a file (Docker/Kubernetes secrets).

/** BigQuery dataset/table ids: letters, digits, underscores; at most 1024 chars; they go into SQL. */
export const SQL_IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,1023}$/;

/** Names of scheduled jobs (`dimensions`, `views`, …): lower case, digits, `-` and `_`. */
export const JOB_NAME = /^[a-z][a-z0-9_-]{0,62}$/;

/** The variable that sets a job's cron expression: SCHEDULE_<NAME>_CRON, `-` written as `_`. */
export function scheduleCronVariable(jobName: string): string {
  return `SCHEDULE_${jobName.toUpperCase().replace(/-/g, '_')}_CRON`;
}

const CRON_VARIABLE = /^SCHEDULE_([A-Z0-9_]+)_CRON$/;

function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** Problems with a cron expression (node-cron syntax: five fields, or six with seconds first). */
export function cronProblems(expression: string): string[] {
  const fields = expression.trim().split(/\s+/).length;
  if (fields < 5 || fields > 6)
    return [
      `${JSON.stringify(expression)} has ${fields} field(s); a cron expression has 5 (or 6 with seconds)`,
    ];
  const v = validateDetailed(expression);
  return v.valid ? [] : v.errors.map((e) => `${JSON.stringify(expression)}: ${e.message}`);
}

/**
 * Every SCHEDULE_<JOB>_CRON variable set, keyed by the variable's <JOB> part (upper case, `_`). Cron
 * expressions are validated here, at start-up; whether a job of that name exists is the scheduler's
 * check, since only it knows the job list.
 */
function scheduleCrons(env: NodeJS.ProcessEnv, problems: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    const m = CRON_VARIABLE.exec(name);
    if (!m || value === undefined) continue;
    const expression = value.trim();
    const found = cronProblems(expression);
    if (found.length) problems.push(...found.map((p) => `${name}: ${p}`));
    else out[m[1]!] = expression;
  }
  return out;
}

const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const ratio = z.coerce.number().gt(0).lt(1);
const list = z
  .string()
  .transform((v) =>
    v
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  )
  .pipe(z.array(z.string().regex(/^[^\s:]+:\d{1,5}$/, 'each broker must be host:port')).min(1));

const schema = z.object({
  KAFKA_BROKERS: list.optional(),
  KAFKA_CLIENT_ID: z.string().min(1).default('txstream'),
  KAFKA_SSL: bool.default(false),
  KAFKA_SSL_CA_FILE: z.string().min(1).optional(),
  KAFKA_SASL_MECHANISM: z.enum(['plain', 'scram-sha-256', 'scram-sha-512']).optional(),
  KAFKA_SASL_USERNAME: z.string().min(1).optional(),
  KAFKA_SASL_PASSWORD: z.string().min(1).optional(),
  SCHEMA_REGISTRY_URL: z.url().optional(),
  SCHEMA_REGISTRY_USERNAME: z.string().min(1).optional(),
  SCHEMA_REGISTRY_PASSWORD: z.string().min(1).optional(),
  GCP_PROJECT_ID: z
    .string()
    .regex(/^[a-z][a-z0-9-]{4,28}[a-z0-9]$/, 'must be a GCP project id')
    .optional(),
  GCP_KEY_FILE: z.string().min(1).optional(),
  BQ_API_ENDPOINT: z.url().optional(),
  BQ_DATASET: z
    .string()
    .regex(SQL_IDENTIFIER, 'must be a BigQuery dataset id (letters, digits, _)')
    .default('rpa_warehouse'),
  BQ_LOCATION: z.string().min(1).default('US'),
  // Schema evolution: a newer writer schema's fields that the fact table lacks become NULLABLE columns
  // (tables.patch, additive only) before its records are written. false: they are not stored, and
  // txstream_fields_dropped_total counts the records that carried them. All sinks.
  BQ_AUTO_ADD_COLUMNS: bool.default(true),
  ENABLE_BQ_STREAMING: bool.default(true),
  // How streaming writes reach BigQuery: the Storage Write API with offsets tied to the Kafka commit
  // (exactly once, half the price; the default), or legacy insertAll (at least once; insertId dedup is
  // best effort), e.g. for an emulator without the Storage Write API. Ignored in load-job mode.
  BQ_WRITE_API: z.enum(['insert-all', 'storage']).default('storage'),
  // Open Storage Write connections per member (one per stream in use; idle ones are closed past it).
  // Unlimited by default: a member holds one per table and partition it writes, and BigQuery's quota
  // is 1,000 concurrent connections per region, 10,000 per multi-region, for the whole project.
  BQ_STORAGE_MAX_CONNECTIONS: int(1, 10_000).optional(),
  // Streaming writes (insertAll requests or Storage Write appends) in flight at once per member,
  // across tables and partitions; the Storage Write API sink still writes one batch per partition at
  // a time. Offsets are committed per partition only up to the first write not yet acknowledged.
  // Load-job mode always runs one job at a time.
  BQ_MAX_IN_FLIGHT: int(1, 256).default(4),
  // The Storage Write API's gRPC endpoint as host:port, plaintext: for an emulator only (the local
  // stack's by default when BQ_API_ENDPOINT comes from it). Unset with real BigQuery.
  BQ_STORAGE_API_ENDPOINT: z
    .string()
    .regex(/^[A-Za-z0-9.-]+:\d{1,5}$/, 'must be host:port')
    .optional(),
  BQ_STREAMING_BATCH_SIZE: int(1, 50_000).default(500),
  BQ_STREAMING_INTERVAL_MS: int(1, 600_000).default(1000),
  // Per insertAll request; the Google client's hidden default is 60 s. A timed-out request is retried
  // like a 5xx while its partitions stay paused (insertIds make the re-send safe).
  BQ_INSERT_TIMEOUT_MS: int(1000, 600_000).default(60_000),
  // Load-job mode (ENABLE_BQ_STREAMING=false). Every load is a table modification, and BigQuery allows
  // 1,500 per table per day: the default 5 minutes is 288 a day, with room for retries and isolation.
  BQ_LOAD_INTERVAL_MS: int(1000, 86_400_000).default(300_000),
  BQ_LOAD_MAX_ROWS: int(1, 10_000_000).default(100_000),
  BQ_LOAD_MAX_BYTES: int(1024 * 1024, 1024 * 1024 * 1024).default(64 * 1024 * 1024),
  BQ_LOAD_JOB_TIMEOUT_MS: int(10_000, 3_600_000).default(600_000),
  // A killed member's partitions move after the session timeout; the broker bounds it (6 s – 5 min).
  KAFKA_SESSION_TIMEOUT_MS: int(6000, 300_000).default(30_000),
  // Long enough to outlast a leader failover: a killed broker is fenced after 9 s, a paused leader
  // holds a request for the 30 s request timeout (src/kafka/retry.ts). Java's producer waits 120 s.
  KAFKA_RETRY_TIMEOUT_MS: int(0, 600_000).default(60_000),
  KAFKA_HEARTBEAT_INTERVAL_MS: int(100, 100_000).default(3000),
  // How much one fetch may bring back, in all and per partition. What a fetch brings is decoded and
  // held until it is written, so these bound the consumer's memory (and what a fault makes it read
  // again). kafkajs' defaults (10 MiB, 1 MiB) peaked at 550-680 MiB RSS draining a 1M backlog; these
  // at 461-465 MiB for the same 90k records/s; 2 MiB / 256 KiB at 423 MiB but 74k records/s.
  KAFKA_FETCH_MAX_BYTES: int(64 * 1024, 256 * 1024 * 1024).default(4 * 1024 * 1024),
  KAFKA_FETCH_MAX_BYTES_PER_PARTITION: int(16 * 1024, 64 * 1024 * 1024).default(512 * 1024),
  TOPIC_PARTITIONS: int(1, 10_000).default(6),
  // "auto": 3 on a cluster of three or more brokers (with min.insync.replicas=2), else 1.
  TOPIC_REPLICATION_FACTOR: z
    .string()
    .default('auto')
    .refine((x) => x === 'auto' || (/^\d+$/.test(x) && Number(x) >= 1 && Number(x) <= 32), {
      message: 'must be auto or a whole number from 1 to 32',
    })
    .transform((x) => (x === 'auto' ? ('auto' as const) : Number(x))),
  TOPIC_RETENTION_MS: int(60_000, Number.MAX_SAFE_INTEGER).default(7 * 86_400_000),
  // 9464: the port the OpenTelemetry Prometheus exporter uses by convention. 0 disables the server.
  METRICS_PORT: int(0, 65_535).default(9464),
  METRICS_HOST: z.string().min(1).default('127.0.0.1'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  // The scheduler (`txstream schedule`). Per-job cron expressions are SCHEDULE_<JOB>_CRON, read by
  // scheduleCrons() below because the job list is open (a job added later needs no change here).
  SCHEDULE_TIMEZONE: z
    .string()
    .min(1)
    .default('UTC')
    .refine(isTimeZone, 'must be an IANA time zone such as UTC or Europe/Berlin'),
  SCHEDULE_JOBS: z
    .string()
    .transform((v) =>
      v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    )
    .pipe(z.array(z.string().regex(JOB_NAME, 'each job must be a name such as dimensions')).min(1))
    .optional(),
  SCHEDULE_INSTANCE_ID: z.string().min(1).max(200).optional(),
  // How long a stopping scheduler waits for running jobs before it aborts them. Keep it under the
  // supervisor's grace period (Kubernetes: terminationGracePeriodSeconds, 30 s by default).
  SCHEDULE_SHUTDOWN_TIMEOUT_MS: int(0, 3_600_000).default(25_000),
  // A new leader runs the most recent tick of each job that no instance recorded, if it fell within
  // this window: the tick a leader change (session timeout plus a rejoin) would otherwise lose. 0: never.
  SCHEDULE_CATCHUP_MS: int(0, 86_400_000).default(300_000),
  // The dimensions job reads the compacted reference topics to their end; this bounds that read.
  DIMENSIONS_READ_TIMEOUT_MS: int(1000, 3_600_000).default(120_000),
  // Data-quality thresholds (the seed's two, then the rest); the checks' windows are in the SQL docs.
  QUALITY_MAX_VOLUME_DEVIATION: ratio.default(0.5),
  QUALITY_MAX_FAILURE_RATE: ratio.default(0.1),
  QUALITY_MIN_EXECUTIONS: int(1, 1_000_000).default(10),
  QUALITY_MAX_AGE_SECONDS: int(1, 30 * 86_400).default(3600),
  // Forecasting and anomaly detection (src/schedules/ml.ts): the seed's BigQuery ML settings, which the
  // local engine honours too. `auto` uses BigQuery ML where the warehouse has it, else the local engine.
  ANALYTICS_ENGINE: z.enum(['auto', 'bqml', 'local']).default('auto'),
  // The forecast model is trained with a 60-day horizon (sql/ml_tx_volume_forecast_model.sql).
  ANALYTICS_FORECAST_HORIZON_DAYS: int(1, 60).default(30),
  ANALYTICS_CONFIDENCE_LEVEL: ratio.default(0.95),
  ANALYTICS_FORECAST_HISTORY_DAYS: int(14, 3650).default(365),
  ANALYTICS_CONTAMINATION: z.coerce.number().gt(0).max(0.5).default(0.02),
  ANALYTICS_MIN_ANOMALY_SCORE: z.coerce.number().min(0).max(1000).default(6),
  ANALYTICS_DETECT_TRAINING_DAYS: int(28, 3650).default(90),
  ANALYTICS_DETECT_DAYS: int(1, 366).default(1),
  // Alerting (src/alerts/). The rules file, read by the monitors job and the forwarder.
  ALERTS_FILE: z.string().min(1).default('alerts.yaml'),
  // Evaluation (the scheduler's `monitors` job): where the consumers' /metrics are, which group's lag
  // counts, the window rates and percentiles are taken over, and BigQuery's list prices (USD).
  ALERTS_CONSUMER_METRICS_URLS: z
    .string()
    .transform((v) =>
      v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    )
    .pipe(z.array(z.url()))
    .optional(),
  ALERTS_CONSUMER_GROUP: z.string().min(1).default('txstream-warehouse'),
  ALERTS_WINDOW_MS: int(10_000, 86_400_000).default(300_000),
  // On-demand queries: $6.25 per TiB; legacy streaming inserts: $0.01 per 200 MB = $0.05 per GiB-ish.
  BQ_PRICE_PER_TIB_QUERIED: z.coerce.number().min(0).max(1_000_000).default(6.25),
  BQ_PRICE_PER_GIB_STREAMED: z.coerce.number().min(0).max(1_000_000).default(0.05),
  // Delivery (`txstream alerts forward`). Secrets may be given as <NAME>_FILE.
  ALERTS_FORWARDER_GROUP: z.string().min(1).default('txstream-alert-forwarder'),
  SLACK_WEBHOOK_URL: z.url().optional(),
  PAGERDUTY_ROUTING_KEY: z.string().min(1).optional(),
  PAGERDUTY_EVENTS_URL: z.url().default('https://events.pagerduty.com/v2/enqueue'),
  SMTP_HOST: z.string().min(1).optional(),
  SMTP_PORT: int(1, 65_535).default(587),
  // true: TLS from the first byte (port 465); false: STARTTLS when the server offers it.
  SMTP_SECURE: bool.default(false),
  SMTP_USERNAME: z.string().min(1).optional(),
  SMTP_PASSWORD: z.string().min(1).optional(),
  ALERT_EMAIL_FROM: z.email().default('txstream@localhost'),
  ALERT_EMAIL_TO: z
    .string()
    .transform((v) =>
      v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    )
    .pipe(z.array(z.email()))
    .optional(),
  // One alert's delivery to one channel: attempts and total time before it goes to txstream.alerts.dlq.
  ALERTS_MAX_ATTEMPTS: int(1, 100).default(8),
  ALERTS_RETRY_BUDGET_MS: int(1000, 86_400_000).default(300_000),
  // Per channel: notifications per minute at most (a token bucket), and the default repeat interval of an
  // unchanged firing alert (a rule's repeat_interval replaces it).
  ALERTS_CHANNEL_RATE_PER_MINUTE: int(1, 10_000).default(30),
  ALERTS_REPEAT_INTERVAL_MS: int(0, 30 * 86_400_000).default(4 * 3_600_000),
});

export type RawConfig = z.infer<typeof schema>;

export interface Config {
  kafka: {
    brokers: string[];
    clientId: string;
    ssl: boolean;
    sslCaFile?: string;
    sasl?: { mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; username: string; password: string };
    /** How long a Kafka client retries a failed request before giving up (KAFKA_RETRY_TIMEOUT_MS). */
    retryTimeoutMs: number;
  };
  registry: { url: string; username?: string; password?: string };
  bigquery: {
    projectId: string;
    apiEndpoint?: string;
    /** Plaintext gRPC endpoint of an emulator's Storage Write API. */
    storageEndpoint?: { host: string; port: number };
    keyFile?: string;
    dataset: string;
    location: string;
    /** Add NULLABLE columns for fields of newer writer schemas (BQ_AUTO_ADD_COLUMNS). */
    autoAddColumns: boolean;
  };
  streaming: {
    enabled: boolean;
    writeApi: 'insert-all' | 'storage';
    /** Open Storage Write connections per member; undefined = unlimited. */
    storageMaxConnections?: number;
    /** Writes in flight per member (BQ_MAX_IN_FLIGHT). */
    maxInFlight: number;
    batchSize: number;
    intervalMs: number;
    insertTimeoutMs: number;
  };
  load: { intervalMs: number; maxRows: number; maxBytes: number; jobTimeoutMs: number };
  consumer: {
    sessionTimeoutMs: number;
    heartbeatIntervalMs: number;
    fetchMaxBytes: number;
    fetchMaxBytesPerPartition: number;
  };
  topics: { partitions: number; replicationFactor: number | 'auto'; retentionMs: number };
  /** The /metrics, /healthz, /readyz server of long-running commands; port 0 means no server. */
  metrics: { host: string; port: number };
  schedule: {
    /** IANA time zone the cron expressions are read in. */
    timezone: string;
    /**
     * Cron expressions set through SCHEDULE_<JOB>_CRON, keyed by <JOB> as written in the variable
     * (e.g. DIMENSIONS); look a job up with cronFor(). A job without one runs on its defaultSchedule.
     */
    cron: Readonly<Record<string, string>>;
    /** SCHEDULE_JOBS: the jobs `txstream schedule` runs; undefined means all of them. */
    jobs?: string[];
    /** Recorded with every run; default `<hostname>:<pid>` (chosen by the scheduler). */
    instanceId?: string;
    shutdownTimeoutMs: number;
    catchUpMs: number;
  };
  dimensions: { readTimeoutMs: number };
  quality: {
    maxVolumeDeviation: number;
    maxFailureRate: number;
    minExecutions: number;
    maxAgeSeconds: number;
  };
  analytics: {
    engine: RawConfig['ANALYTICS_ENGINE'];
    horizonDays: number;
    confidenceLevel: number;
    historyDays: number;
    contamination: number;
    minAnomalyScore: number;
    trainingDays: number;
    detectDays: number;
  };
  alerts: {
    rulesFile: string;
    /** The monitors job: consumer /metrics endpoints, the group whose lag counts, the signal window. */
    consumerMetricsUrls: readonly string[];
    consumerGroup: string;
    windowMs: number;
    prices: { perTibQueried: number; perGibStreamed: number };
    /** The forwarder. A channel without its settings is not configured (alerts routed to it go to the DLQ). */
    forwarderGroup: string;
    slack?: { webhookUrl: string };
    pagerduty?: { routingKey: string; eventsUrl: string };
    email?: {
      host: string;
      port: number;
      secure: boolean;
      username?: string;
      password?: string;
      from: string;
      to: readonly string[];
    };
    maxAttempts: number;
    retryBudgetMs: number;
    channelRatePerMinute: number;
    repeatIntervalMs: number;
  };
  logLevel: RawConfig['LOG_LEVEL'];
}

const SECRETS = [
  'KAFKA_SASL_PASSWORD',
  'SCHEMA_REGISTRY_PASSWORD',
  'SLACK_WEBHOOK_URL',
  'PAGERDUTY_ROUTING_KEY',
  'SMTP_PASSWORD',
] as const;

/**
 * What the streaming consumer needs beyond loadConfig's checks, which every command shares: an
 * emulator's Storage Write endpoint when the Storage Write sink streams into it (`query`, `schedule`
 * or `alerts` against an emulator without one are fine). [] when nothing is missing.
 */
export function consumerProblems(c: Readonly<Config>): string[] {
  if (
    c.streaming.enabled &&
    c.streaming.writeApi === 'storage' &&
    c.bigquery.apiEndpoint &&
    !c.bigquery.storageEndpoint
  )
    return [
      'BQ_STORAGE_API_ENDPOINT: required with BQ_WRITE_API=storage (the default) when BQ_API_ENDPOINT points at an emulator (host:port of its gRPC port); an emulator without the Storage Write API needs BQ_WRITE_API=insert-all',
    ];
  return [];
}

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

function holdsPemCertificate(file: string): boolean {
  try {
    return /-----BEGIN CERTIFICATE-----/.test(fs.readFileSync(file, 'utf8'));
  } catch {
    return false;
  }
}

/** Resolves NAME_FILE into NAME for secrets, so a secret never has to sit in the environment. */
function withSecretFiles(env: NodeJS.ProcessEnv, problems: string[]): NodeJS.ProcessEnv {
  const out = { ...env };
  for (const name of SECRETS) {
    const file = env[`${name}_FILE`];
    if (!file) continue;
    if (env[name]) problems.push(`${name} and ${name}_FILE are both set; keep one`);
    try {
      out[name] = fs.readFileSync(file, 'utf8').trim();
    } catch (err) {
      problems.push(`${name}_FILE: cannot read ${file} (${(err as NodeJS.ErrnoException).code})`);
    }
  }
  return out;
}

/**
 * Builds the configuration from the environment. Endpoints not given fall back to the local stack's
 * endpoints.json when `txstream stack up` has written one, so commands work on a dev machine with no
 * setup; in production set them explicitly.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  const problems: string[] = [];
  const parsed = schema.safeParse(withSecretFiles(env, problems));
  const crons = scheduleCrons(env, problems);
  if (!parsed.success) {
    for (const i of parsed.error.issues) problems.push(`${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(problems);
  }
  const v = parsed.data;
  let local: ReturnType<typeof readEndpoints>;
  if (!v.KAFKA_BROKERS || !v.SCHEMA_REGISTRY_URL || !v.GCP_PROJECT_ID) {
    try {
      local = readEndpoints(loadStackSettings(env));
    } catch {
      local = undefined;
    }
  }
  const brokers = v.KAFKA_BROKERS ?? local?.kafkaBrokers.split(',');
  const registryUrl = v.SCHEMA_REGISTRY_URL ?? local?.schemaRegistryUrl;
  const projectId = v.GCP_PROJECT_ID ?? local?.bqProjectId;
  const apiEndpoint = v.BQ_API_ENDPOINT ?? (v.GCP_PROJECT_ID ? undefined : local?.bqApiEndpoint);
  const storageEndpoint =
    v.BQ_STORAGE_API_ENDPOINT ?? (v.GCP_PROJECT_ID ? undefined : local?.bqStorageEndpoint);
  const storageMaxConnections = v.BQ_STORAGE_MAX_CONNECTIONS;
  if (!brokers) problems.push('KAFKA_BROKERS: required (or run `npx txstream stack up` for a local stack)');
  if (!registryUrl) problems.push('SCHEMA_REGISTRY_URL: required (or run `npx txstream stack up`)');
  if (!projectId) problems.push('GCP_PROJECT_ID: required (or run `npx txstream stack up`)');
  if (v.KAFKA_SASL_MECHANISM && (!v.KAFKA_SASL_USERNAME || !v.KAFKA_SASL_PASSWORD))
    problems.push(
      'KAFKA_SASL_MECHANISM is set: KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD(_FILE) are required',
    );
  if (Boolean(v.SCHEMA_REGISTRY_USERNAME) !== Boolean(v.SCHEMA_REGISTRY_PASSWORD))
    problems.push('SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD(_FILE) go together');
  if (v.GCP_KEY_FILE && !fs.existsSync(v.GCP_KEY_FILE))
    problems.push(`GCP_KEY_FILE: ${v.GCP_KEY_FILE} does not exist`);
  if (v.KAFKA_SSL_CA_FILE && !fs.existsSync(v.KAFKA_SSL_CA_FILE))
    problems.push(`KAFKA_SSL_CA_FILE: ${v.KAFKA_SSL_CA_FILE} does not exist`);
  // Node ignores a CA bundle without certificates, and a CA file without TLS would be ignored too:
  // either way the user believes in a trust setting that does nothing.
  else if (v.KAFKA_SSL_CA_FILE && !holdsPemCertificate(v.KAFKA_SSL_CA_FILE))
    problems.push(`KAFKA_SSL_CA_FILE: ${v.KAFKA_SSL_CA_FILE} holds no PEM certificate`);
  if (v.KAFKA_SSL_CA_FILE && !v.KAFKA_SSL)
    problems.push('KAFKA_SSL_CA_FILE is set but KAFKA_SSL is not: set KAFKA_SSL=true to connect over TLS');
  if (v.KAFKA_HEARTBEAT_INTERVAL_MS * 3 > v.KAFKA_SESSION_TIMEOUT_MS)
    problems.push(
      `KAFKA_HEARTBEAT_INTERVAL_MS: ${v.KAFKA_HEARTBEAT_INTERVAL_MS} must be at most a third of KAFKA_SESSION_TIMEOUT_MS (${v.KAFKA_SESSION_TIMEOUT_MS})`,
    );
  if (Boolean(v.SMTP_USERNAME) !== Boolean(v.SMTP_PASSWORD))
    problems.push('SMTP_USERNAME and SMTP_PASSWORD(_FILE) go together');
  if (v.SMTP_HOST && !v.ALERT_EMAIL_TO?.length)
    problems.push('SMTP_HOST is set: ALERT_EMAIL_TO (comma-separated addresses) is required');
  if (problems.length) throw new ConfigError(problems);

  const config: Config = {
    kafka: {
      brokers: brokers!,
      clientId: v.KAFKA_CLIENT_ID,
      ssl: v.KAFKA_SSL,
      retryTimeoutMs: v.KAFKA_RETRY_TIMEOUT_MS,
      ...(v.KAFKA_SSL_CA_FILE ? { sslCaFile: v.KAFKA_SSL_CA_FILE } : {}),
      ...(v.KAFKA_SASL_MECHANISM
        ? {
            sasl: {
              mechanism: v.KAFKA_SASL_MECHANISM,
              username: v.KAFKA_SASL_USERNAME!,
              password: v.KAFKA_SASL_PASSWORD!,
            },
          }
        : {}),
    },
    registry: {
      url: registryUrl!,
      ...(v.SCHEMA_REGISTRY_USERNAME
        ? { username: v.SCHEMA_REGISTRY_USERNAME, password: v.SCHEMA_REGISTRY_PASSWORD! }
        : {}),
    },
    bigquery: {
      projectId: projectId!,
      ...(apiEndpoint ? { apiEndpoint } : {}),
      ...(storageEndpoint
        ? {
            storageEndpoint: {
              host: storageEndpoint.slice(0, storageEndpoint.lastIndexOf(':')),
              port: Number(storageEndpoint.slice(storageEndpoint.lastIndexOf(':') + 1)),
            },
          }
        : {}),
      ...(v.GCP_KEY_FILE ? { keyFile: v.GCP_KEY_FILE } : {}),
      dataset: v.BQ_DATASET,
      location: v.BQ_LOCATION,
      autoAddColumns: v.BQ_AUTO_ADD_COLUMNS,
    },
    streaming: {
      enabled: v.ENABLE_BQ_STREAMING,
      writeApi: v.BQ_WRITE_API,
      ...(storageMaxConnections ? { storageMaxConnections } : {}),
      maxInFlight: v.BQ_MAX_IN_FLIGHT,
      batchSize: v.BQ_STREAMING_BATCH_SIZE,
      intervalMs: v.BQ_STREAMING_INTERVAL_MS,
      insertTimeoutMs: v.BQ_INSERT_TIMEOUT_MS,
    },
    load: {
      intervalMs: v.BQ_LOAD_INTERVAL_MS,
      maxRows: v.BQ_LOAD_MAX_ROWS,
      maxBytes: v.BQ_LOAD_MAX_BYTES,
      jobTimeoutMs: v.BQ_LOAD_JOB_TIMEOUT_MS,
    },
    consumer: {
      sessionTimeoutMs: v.KAFKA_SESSION_TIMEOUT_MS,
      heartbeatIntervalMs: v.KAFKA_HEARTBEAT_INTERVAL_MS,
      fetchMaxBytes: v.KAFKA_FETCH_MAX_BYTES,
      fetchMaxBytesPerPartition: v.KAFKA_FETCH_MAX_BYTES_PER_PARTITION,
    },
    topics: {
      partitions: v.TOPIC_PARTITIONS,
      replicationFactor: v.TOPIC_REPLICATION_FACTOR,
      retentionMs: v.TOPIC_RETENTION_MS,
    },
    metrics: { host: v.METRICS_HOST, port: v.METRICS_PORT },
    schedule: {
      timezone: v.SCHEDULE_TIMEZONE,
      cron: crons,
      ...(v.SCHEDULE_JOBS ? { jobs: v.SCHEDULE_JOBS } : {}),
      ...(v.SCHEDULE_INSTANCE_ID ? { instanceId: v.SCHEDULE_INSTANCE_ID } : {}),
      shutdownTimeoutMs: v.SCHEDULE_SHUTDOWN_TIMEOUT_MS,
      catchUpMs: v.SCHEDULE_CATCHUP_MS,
    },
    dimensions: { readTimeoutMs: v.DIMENSIONS_READ_TIMEOUT_MS },
    quality: {
      maxVolumeDeviation: v.QUALITY_MAX_VOLUME_DEVIATION,
      maxFailureRate: v.QUALITY_MAX_FAILURE_RATE,
      minExecutions: v.QUALITY_MIN_EXECUTIONS,
      maxAgeSeconds: v.QUALITY_MAX_AGE_SECONDS,
    },
    analytics: {
      engine: v.ANALYTICS_ENGINE,
      horizonDays: v.ANALYTICS_FORECAST_HORIZON_DAYS,
      confidenceLevel: v.ANALYTICS_CONFIDENCE_LEVEL,
      historyDays: v.ANALYTICS_FORECAST_HISTORY_DAYS,
      contamination: v.ANALYTICS_CONTAMINATION,
      minAnomalyScore: v.ANALYTICS_MIN_ANOMALY_SCORE,
      trainingDays: v.ANALYTICS_DETECT_TRAINING_DAYS,
      detectDays: v.ANALYTICS_DETECT_DAYS,
    },
    alerts: {
      rulesFile: v.ALERTS_FILE,
      consumerMetricsUrls: v.ALERTS_CONSUMER_METRICS_URLS ?? [],
      consumerGroup: v.ALERTS_CONSUMER_GROUP,
      windowMs: v.ALERTS_WINDOW_MS,
      prices: { perTibQueried: v.BQ_PRICE_PER_TIB_QUERIED, perGibStreamed: v.BQ_PRICE_PER_GIB_STREAMED },
      forwarderGroup: v.ALERTS_FORWARDER_GROUP,
      ...(v.SLACK_WEBHOOK_URL ? { slack: { webhookUrl: v.SLACK_WEBHOOK_URL } } : {}),
      ...(v.PAGERDUTY_ROUTING_KEY
        ? { pagerduty: { routingKey: v.PAGERDUTY_ROUTING_KEY, eventsUrl: v.PAGERDUTY_EVENTS_URL } }
        : {}),
      ...(v.SMTP_HOST
        ? {
            email: {
              host: v.SMTP_HOST,
              port: v.SMTP_PORT,
              secure: v.SMTP_SECURE,
              ...(v.SMTP_USERNAME ? { username: v.SMTP_USERNAME, password: v.SMTP_PASSWORD! } : {}),
              from: v.ALERT_EMAIL_FROM,
              to: v.ALERT_EMAIL_TO!,
            },
          }
        : {}),
      maxAttempts: v.ALERTS_MAX_ATTEMPTS,
      retryBudgetMs: v.ALERTS_RETRY_BUDGET_MS,
      channelRatePerMinute: v.ALERTS_CHANNEL_RATE_PER_MINUTE,
      repeatIntervalMs: v.ALERTS_REPEAT_INTERVAL_MS,
    },
    logLevel: v.LOG_LEVEL,
  };
  return deepFreeze(config);
}

/** The cron expression configured for a job (SCHEDULE_<JOB>_CRON), or its own default. */
export function cronFor(c: Readonly<Config>, job: { name: string; defaultSchedule: string }): string {
  const key = scheduleCronVariable(job.name).slice('SCHEDULE_'.length, -'_CRON'.length);
  return c.schedule.cron[key] ?? job.defaultSchedule;
}

function deepFreeze<T>(o: T): Readonly<T> {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/** A copy safe to log or print: secrets replaced, URLs stripped of embedded credentials. */
export function redactConfig(c: Readonly<Config>): unknown {
  const stripUrl = (u: string) => {
    try {
      const url = new URL(u);
      if (url.username || url.password) {
        url.username = '***';
        url.password = '***';
      }
      return url.toString();
    } catch {
      return u;
    }
  };
  return {
    ...c,
    kafka: { ...c.kafka, ...(c.kafka.sasl ? { sasl: { ...c.kafka.sasl, password: '***' } } : {}) },
    registry: {
      ...c.registry,
      url: stripUrl(c.registry.url),
      ...(c.registry.password ? { password: '***' } : {}),
    },
    alerts: {
      ...c.alerts,
      // A Slack webhook URL is itself the credential; a PagerDuty routing key too.
      ...(c.alerts.slack ? { slack: { webhookUrl: '***' } } : {}),
      ...(c.alerts.pagerduty ? { pagerduty: { ...c.alerts.pagerduty, routingKey: '***' } } : {}),
      ...(c.alerts.email?.password ? { email: { ...c.alerts.email, password: '***' } } : {}),
    },
  };
}
