import type { Consumer, EachBatchPayload, KafkaMessage } from 'kafkajs';
import { pino } from 'pino';
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';
import type { GuardedDecoder } from '../codec/guarded-decoder.ts';
import { createGuardedDecoder, peekSchemaId } from '../codec/guarded-decoder.ts';
import { createRegistryClient, registryConnection } from '../codec/registry.ts';
import { createSchemaCatalog } from '../codec/schemas.ts';
import type { Config } from '../config/config.ts';
import { isMembershipError } from '../consumers/runner.ts';
import { createKafka, createTrackedConsumer, kafkaConnection } from '../kafka/client.ts';
import type { RecordSender } from '../kafka/producer.ts';
import { createKafkaSender } from '../kafka/producer.ts';
import type { ObservabilityServer } from '../observability/server.ts';
import { startObservabilityServer } from '../observability/server.ts';
import type { DlqStage } from '../producers/dlq.ts';
import { dlqMessage } from '../producers/dlq.ts';
import { createTopicCatalogue } from '../topics.ts';
import { createEmailChannel } from './channels/email.ts';
import { createPagerDutyChannel } from './channels/pagerduty.ts';
import { createSlackChannel } from './channels/slack.ts';
import type { Channel, DeliveryResult, RepeatSuppressor, RetryPolicy, TokenBucket } from './delivery.ts';
import {
  acquire,
  backoffDelay,
  createRepeatSuppressor,
  createTokenBucket,
  DEFAULT_BACKOFF,
  deliverWithRetry,
  routeKey,
} from './delivery.ts';
import type { Alert, AlertRule, ChannelKind, Route } from './model.ts';
import { defaultRoutes } from './model.ts';

// `txstream alerts forward`: the consumer group that delivers each alert of txstream.alerts.v1 to the
// channels its rule routes it to.
//
// Delivery rules:
// - Per partition, one alert at a time, in offset order; an alert's offset is committed (explicitly,
//   right after it) only once every one of its routes was delivered, suppressed as a repeat, or
//   dead-lettered with the DLQ acknowledging. A crash therefore repeats at most the alert in flight
//   (at-least-once; PagerDuty's dedup_key and the e-mail Message-ID let receivers fold the repeat).
// - A route's retries wait inside eachBatch (kafkajs fetches nothing for that partition meanwhile), so
//   a timer heartbeats every second while a batch runs: the default retry budget (5 min) is far
//   longer than the session timeout, and the member must not lose its partitions while it waits.
// - Undecodable messages and routes whose delivery failed for good go to txstream.alerts.dlq with the
//   original bytes and the reason; the partition moves on.
// - Stop: no new attempt starts, waits end at once, the attempt in flight finishes (bounded by the
//   per-request timeout), its alert is committed when it completed, then the member leaves the group.

export type RoutesFor = (alert: Alert) => { routes: readonly Route[]; repeatIntervalMs: number };

/**
 * Routing from the rules file: the rule's routes and repeat interval; for a rule the file does not know
 * (another producer, or a rule since removed), the severity's default routes and the default interval.
 */
export function routesFromRules(
  rules: ReadonlyMap<string, Pick<AlertRule, 'routing' | 'repeatIntervalMs'>>,
  defaultRepeatIntervalMs: number,
): RoutesFor {
  return (alert) => {
    const rule = rules.get(alert.rule_name);
    return rule
      ? { routes: rule.routing, repeatIntervalMs: rule.repeatIntervalMs }
      : { routes: defaultRoutes(alert.severity), repeatIntervalMs: defaultRepeatIntervalMs };
  };
}

/** Headers the forwarder adds to a dead letter besides the txstream.* ones of src/producers/dlq.ts. */
export const ALERT_DLQ_HEADERS = {
  channel: 'txstream.alert.channel',
  attempts: 'txstream.alert.attempts',
  status: 'txstream.alert.status',
} as const;

/**
 * The stage of a notification a channel refused or could not take; the error code says which:
 * DELIVERY_REJECTED, DELIVERY_FAILED or CHANNEL_NOT_CONFIGURED.
 */
export const DELIVERY_STAGE: DlqStage = 'deliver';

export interface AlertDeadLetter {
  topic: string;
  partition: number;
  message: KafkaMessage;
  stage: DlqStage;
  code: string;
  /** Short and free of secrets: it is written to a header. */
  reason: string;
  channel?: ChannelKind;
  attempts?: number;
  status?: number;
  schemaId?: number;
}

export interface AlertDlq {
  /** Resolves once the broker acknowledged every letter. */
  publish(letters: readonly AlertDeadLetter[]): Promise<void>;
}

/**
 * Dead letters built by src/producers/dlq.ts' dlqMessage (so parseDlqHeaders and replay tools read
 * them like any other), plus the channel, attempts and status headers, sent with acks=all.
 */
export function createAlertDlq(o: { sender: RecordSender; dlqTopic: string; now?: () => Date }): AlertDlq {
  const now = o.now ?? (() => new Date());
  return {
    async publish(letters) {
      if (letters.length === 0) return;
      const at = now();
      const messages = letters.map((l) => {
        const m = dlqMessage(
          {
            source: {
              topic: l.topic,
              partition: l.partition,
              offset: l.message.offset,
              timestamp: l.message.timestamp,
            },
            key: l.message.key ?? null,
            value: l.message.value ?? null,
            ...(l.message.headers ? { headers: l.message.headers } : {}),
            error: { code: l.code, reason: l.reason, stage: l.stage },
            ...(l.schemaId !== undefined ? { schemaId: l.schemaId } : {}),
          },
          at,
        );
        if (l.channel) m.headers[ALERT_DLQ_HEADERS.channel] = l.channel;
        if (l.attempts !== undefined) m.headers[ALERT_DLQ_HEADERS.attempts] = String(l.attempts);
        if (l.status !== undefined) m.headers[ALERT_DLQ_HEADERS.status] = String(l.status);
        return m;
      });
      const acks = await o.sender.send(o.dlqTopic, messages);
      if (acks.length !== messages.length)
        throw new Error(`expected ${messages.length} DLQ acknowledgements, got ${acks.length}`);
    },
  };
}

export interface ForwarderMetrics {
  registry: Registry;
  consumed(): void;
  notification(channel: string, outcome: 'delivered' | 'suppressed' | 'dead_lettered'): void;
  failedAttempt(channel: string, retriable: boolean): void;
  latency(channel: string, ms: number): void;
}

export function createForwarderMetrics(o: { defaultMetrics?: boolean } = {}): ForwarderMetrics {
  const registry = new Registry();
  // Process metrics (start time, CPU, memory) as the consumer and scheduler export them: restarts and
  // resource use of the forwarder show on the same dashboard panels.
  if (o.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const consumed = new Counter({
    name: 'txstream_alerts_consumed_total',
    help: 'Alerts read from the alerts topic (re-deliveries included).',
    registers: [registry],
  });
  const notifications = new Counter({
    name: 'txstream_alert_notifications_total',
    help: 'Notifications per channel by outcome: delivered, suppressed (a repeat), dead_lettered (channel "none": undecodable).',
    labelNames: ['channel', 'outcome'] as const,
    registers: [registry],
  });
  const failures = new Counter({
    name: 'txstream_alert_delivery_failures_total',
    help: 'Failed delivery attempts per channel; retriable ones are retried.',
    labelNames: ['channel', 'retriable'] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'txstream_alert_delivery_seconds',
    help: 'From the first attempt to the channel accepting the notification, retries and rate-limit waits included.',
    labelNames: ['channel'] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers: [registry],
  });
  return {
    registry,
    consumed: () => consumed.inc(),
    notification: (channel, outcome) => notifications.inc({ channel, outcome }),
    failedAttempt: (channel, retriable) => failures.inc({ channel, retriable: String(retriable) }),
    latency: (channel, ms) => latency.observe({ channel }, ms / 1000),
  };
}

export interface ForwarderLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface ForwarderOptions {
  consumer: Consumer;
  topic: string;
  decoder: GuardedDecoder;
  /** The configured channels; a route to another channel is dead-lettered (CHANNEL_NOT_CONFIGURED). */
  channels: readonly Channel[];
  routesFor: RoutesFor;
  dlq: AlertDlq;
  policy: Omit<RetryPolicy, 'baseDelayMs' | 'maxDelayMs'> & Partial<RetryPolicy>;
  /** Per-request timeout of a channel, ms. */
  requestTimeoutMs: number;
  ratePerMinute: number;
  logger: ForwarderLogger;
  metrics?: ForwarderMetrics;
  /** How long stop() waits for the batch in progress; default 15 s (above the request timeout). */
  shutdownTimeoutMs?: number;
  now?: () => number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  random?: () => number;
}

export interface Forwarder {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

type Outcome = 'done' | 'stopped';

export function createForwarder(o: ForwarderOptions): Forwarder {
  const now = o.now ?? (() => performance.now());
  const sleep = o.sleep ?? abortableSleep;
  const random = o.random ?? Math.random;
  const policy: RetryPolicy = { ...DEFAULT_BACKOFF, ...o.policy };
  const channels = new Map(o.channels.map((c) => [c.kind, c]));
  const buckets = new Map<ChannelKind, TokenBucket>(
    o.channels.map((c) => [c.kind, createTokenBucket({ ratePerMinute: o.ratePerMinute, now })]),
  );
  const suppressor: RepeatSuppressor = createRepeatSuppressor({ now });
  const stopping = new AbortController();
  const inBatch = new Set<Promise<void>>();

  /**
   * Retries an infrastructure step (schema fetch, DLQ write, commit) until it succeeds; false when the
   * forwarder stopped first. It always tries once, so a DLQ write started before stop still happens.
   * A membership error goes up: the group took the partition and kafkajs must rejoin.
   */
  async function untilDone(what: string, fn: () => Promise<void>, halt: AbortSignal): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      try {
        await fn();
        return true;
      } catch (err) {
        if (isMembershipError(err)) throw err;
        if (halt.aborted) return false;
        const wait = backoffDelay(attempt, { baseDelayMs: 200, maxDelayMs: 30_000 }, random);
        o.logger.warn(
          { what, attempt, waitMs: wait, err: (err as Error).message },
          'transient failure, retrying',
        );
        await sleep(wait, halt);
      }
    }
  }

  async function deliverRoute(
    alert: Alert,
    route: Route,
    repeatIntervalMs: number,
    halt: AbortSignal,
  ): Promise<DeliveryResult | 'suppressed' | undefined> {
    const channel = channels.get(route.channel);
    if (!channel) return undefined;
    const key = routeKey(route);
    if (suppressor.suppress(alert, key, repeatIntervalMs)) return 'suppressed';
    const bucket = buckets.get(route.channel)!;
    const started = now();
    const result = await deliverWithRetry({
      attempt: (signal) => channel.send(alert, route, signal),
      policy,
      timeoutMs: o.requestTimeoutMs,
      beforeAttempt: (h) => acquire(bucket, h, sleep),
      halt,
      now,
      sleep,
      random,
      onRetry: ({ attempt, waitMs, error }) => {
        o.metrics?.failedAttempt(route.channel, true);
        o.logger.warn(
          {
            channel: route.channel,
            status: error.status,
            attempt,
            waitMs,
            reason: error.message,
            dedupKey: alert.dedup_key,
          },
          'delivery failed, retrying',
        );
      },
    });
    if (result.outcome === 'delivered') {
      suppressor.delivered(alert, key, repeatIntervalMs);
      o.metrics?.latency(route.channel, now() - started);
    } else if (result.outcome === 'failed') {
      o.metrics?.failedAttempt(route.channel, !result.permanent);
    }
    return result;
  }

  /** Every route of one alert; 'done' once each is delivered, suppressed or dead-lettered. */
  async function handle(
    topic: string,
    partition: number,
    message: KafkaMessage,
    halt: AbortSignal,
  ): Promise<Outcome> {
    o.metrics?.consumed();
    const at = { topic, partition, offset: message.offset };
    let decoded = o.decoder.decode(message.value);
    if (!decoded.ok && decoded.retriable) {
      // Only an id prepare() never saw; fetch it and decode again.
      const ok = await untilDone(
        'fetch schemas',
        () => o.decoder.prepare([peekSchemaId(message.value)]),
        halt,
      );
      if (!ok) return 'stopped';
      decoded = o.decoder.decode(message.value);
    }
    if (!decoded.ok) {
      const letter: AlertDeadLetter = {
        topic,
        partition,
        message,
        stage: 'decode',
        code: decoded.code,
        reason: decoded.reason,
        ...(decoded.schemaId !== undefined ? { schemaId: decoded.schemaId } : {}),
      };
      if (!(await untilDone('dead-letter', () => o.dlq.publish([letter]), halt))) return 'stopped';
      o.metrics?.notification('none', 'dead_lettered');
      o.logger.warn({ ...at, code: decoded.code, reason: decoded.reason }, 'undecodable alert dead-lettered');
      return 'done';
    }
    const alert = decoded.value as Alert;
    const { routes, repeatIntervalMs } = o.routesFor(alert);
    // One delivery per distinct route, the channels in parallel: a slow channel does not hold the others.
    const unique = [...new Map(routes.map((r) => [routeKey(r), r])).values()];
    const results = await Promise.all(unique.map((r) => deliverRoute(alert, r, repeatIntervalMs, halt)));
    if (results.some((r) => typeof r === 'object' && r.outcome === 'stopped')) return 'stopped';
    const letters: AlertDeadLetter[] = [];
    const base = { topic, partition, message, stage: DELIVERY_STAGE, schemaId: decoded.schemaId };
    unique.forEach((route, i) => {
      const r = results[i];
      const ctx = {
        ...at,
        channel: route.channel,
        rule: alert.rule_name,
        dedupKey: alert.dedup_key,
        status: alert.status,
      };
      if (r === undefined) {
        letters.push({
          ...base,
          code: 'CHANNEL_NOT_CONFIGURED',
          reason: `channel ${route.channel} is not configured`,
          channel: route.channel,
          attempts: 0,
        });
      } else if (r === 'suppressed') {
        o.metrics?.notification(route.channel, 'suppressed');
      } else if (r.outcome === 'delivered') {
        o.metrics?.notification(route.channel, 'delivered');
        o.logger.info({ ...ctx, attempts: r.attempts }, 'alert delivered');
      } else if (r.outcome === 'failed') {
        letters.push({
          ...base,
          code: r.permanent ? 'DELIVERY_REJECTED' : 'DELIVERY_FAILED',
          reason: r.reason,
          channel: route.channel,
          attempts: r.attempts,
          ...(r.status !== undefined ? { status: r.status } : {}),
        });
      }
    });
    if (letters.length === 0) return 'done';
    if (!(await untilDone('dead-letter', () => o.dlq.publish(letters), halt))) return 'stopped';
    for (const l of letters) {
      o.metrics?.notification(l.channel!, 'dead_lettered');
      o.logger.warn(
        {
          ...at,
          channel: l.channel,
          code: l.code,
          status: l.status,
          attempts: l.attempts,
          reason: l.reason,
          rule: alert.rule_name,
        },
        'alert dead-lettered',
      );
    }
    return 'done';
  }

  async function eachBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, heartbeat, resolveOffset, commitOffsetsIfNecessary, isRunning, isStale } = payload;
    if (batch.topic !== o.topic || batch.messages.length === 0) return;
    const lost = new AbortController();
    const halt = AbortSignal.any([stopping.signal, lost.signal]);
    let membership: unknown;
    const beat = () =>
      heartbeat().catch((err: unknown) => {
        if (isMembershipError(err)) {
          membership ??= err;
          lost.abort();
        }
      });
    const timer = setInterval(() => void beat(), 1000);
    try {
      const ids = batch.messages.map((m) => peekSchemaId(m.value));
      if (!(await untilDone('fetch schemas', () => o.decoder.prepare(ids), halt))) return;
      for (const message of batch.messages) {
        if (!isRunning() || isStale() || halt.aborted) break;
        if ((await handle(batch.topic, batch.partition, message, halt)) === 'stopped') break;
        resolveOffset(message.offset);
        const next = (BigInt(message.offset) + 1n).toString();
        const topics = [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: next }] }];
        if (!(await untilDone('commit', () => commitOffsetsIfNecessary({ topics }), halt))) break;
      }
    } finally {
      clearInterval(timer);
    }
    if (membership) throw membership;
  }

  return {
    async start() {
      await o.consumer.subscribe({ topics: [o.topic], fromBeginning: true });
      await o.consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        // Partitions in parallel (each still in order): one slow channel holds one partition, not all.
        partitionsConsumedConcurrently: 4,
        eachBatch: (payload) => {
          const run = eachBatch(payload);
          const settled = run.catch(() => undefined).finally(() => inBatch.delete(settled));
          inBatch.add(settled);
          return run;
        },
      });
    },
    async stop() {
      stopping.abort();
      try {
        o.consumer.pause([{ topic: o.topic }]);
      } catch {
        // kafkajs throws when it has no group: after a crash it disconnected the member and dropped
        // the group, so nothing is fetched any more and there is nothing to pause.
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.all(inBatch),
        new Promise<void>((r) => (timer = setTimeout(r, o.shutdownTimeoutMs ?? 15_000))),
      ]);
      clearTimeout(timer);
      await o.consumer.disconnect();
    },
  };
}

/** The channels that have their settings in the configuration. */
export function channelsFromConfig(
  alerts: Readonly<Config['alerts']>,
  timeoutMs: number,
): { channels: Channel[]; close(): void } {
  const channels: Channel[] = [];
  let close = () => undefined as void;
  if (alerts.slack) channels.push(createSlackChannel({ webhookUrl: alerts.slack.webhookUrl, timeoutMs }));
  if (alerts.pagerduty)
    channels.push(
      createPagerDutyChannel({
        routingKey: alerts.pagerduty.routingKey,
        eventsUrl: alerts.pagerduty.eventsUrl,
        timeoutMs,
      }),
    );
  if (alerts.email) {
    const email = createEmailChannel({ settings: alerts.email, timeoutMs });
    channels.push(email);
    close = () => email.close();
  }
  return { channels, close };
}

export interface ForwarderApp {
  logger: pino.Logger;
  topic: string;
  /** The channels configured, by kind. */
  channels: ChannelKind[];
  metricsPort(): number | undefined;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export const REQUEST_TIMEOUT_MS = 10_000;

/**
 * Wires the forwarder to real clients from the configuration (the composition root of `txstream alerts
 * forward`). `channels` replaces the configured ones (tests).
 */
export function buildForwarderApp(o: {
  config: Readonly<Config>;
  routesFor: RoutesFor;
  groupId?: string;
  topicPrefix?: string;
  requestTimeoutMs?: number;
  logger?: pino.Logger;
  /**
   * kafkajs crashed and will not restart the member (see createTrackedConsumer): nothing will be
   * delivered again, so the caller should stop and exit non-zero for its supervisor to restart it.
   */
  onFatal?: (err: Error) => void;
}): ForwarderApp {
  const { config } = o;
  const groupId = o.groupId ?? config.alerts.forwarderGroup;
  const logger =
    o.logger ??
    pino({
      level: config.logLevel,
      base: { pid: process.pid, component: 'alerts-forward', group: groupId },
      redact: ['*.password', '*.webhookUrl', '*.routingKey'],
    });
  const spec = createTopicCatalogue({ prefix: o.topicPrefix ?? '' }).get('alerts');
  const registry = createRegistryClient(registryConnection(config));
  const alertSchema = createSchemaCatalog().load('Alert');
  const decoder = createGuardedDecoder({
    fetchSchema: (id) => registry.schemaById(id),
    readerTypes: new Map([['io.txstream.v1.Alert', alertSchema.type]]),
  });
  const timeoutMs = o.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  const configured = channelsFromConfig(config.alerts, timeoutMs);
  const sender = createKafkaSender(kafkaConnection(config, 'alerts-dlq'));
  const connection = kafkaConnection(config, 'alerts-forwarder');
  const tracked = createTrackedConsumer(createKafka(connection), {
    groupId,
    sessionTimeoutMs: config.consumer.sessionTimeoutMs,
    heartbeatIntervalMs: config.consumer.heartbeatIntervalMs,
    logger,
    connection,
    ...(o.onFatal ? { onFatal: o.onFatal } : {}),
  });
  const { consumer } = tracked;
  const metrics = createForwarderMetrics();
  const forwarder = createForwarder({
    consumer,
    topic: spec.name,
    decoder,
    channels: configured.channels,
    routesFor: o.routesFor,
    dlq: createAlertDlq({ sender, dlqTopic: spec.dlqName }),
    policy: { maxAttempts: config.alerts.maxAttempts, budgetMs: config.alerts.retryBudgetMs },
    requestTimeoutMs: timeoutMs,
    ratePerMinute: config.alerts.channelRatePerMinute,
    logger,
    metrics,
    shutdownTimeoutMs: timeoutMs + 5_000,
  });
  let server: ObservabilityServer | undefined;
  return {
    logger,
    topic: spec.name,
    channels: configured.channels.map((c) => c.kind),
    metricsPort: () => server?.port,
    async start() {
      if (config.metrics.port !== 0) {
        server = await startObservabilityServer({
          registry: metrics.registry,
          ready: tracked.ready,
          alive: tracked.alive,
          host: config.metrics.host,
          port: config.metrics.port,
          onError: (err) => logger.error({ err: err.message }, 'metrics server error'),
        });
      }
      try {
        // A missing DLQ would stall the first undeliverable alert for ever: refuse to start instead.
        await sender.assertTopic(spec.dlqName);
        await consumer.connect();
        await forwarder.start();
      } catch (err) {
        await server?.close().catch(() => undefined);
        await sender.close().catch(() => undefined);
        configured.close();
        throw err;
      }
    },
    async stop() {
      tracked.stopping();
      try {
        await forwarder.stop();
        await sender.close();
      } finally {
        configured.close();
        await server?.close();
      }
    },
  };
}
