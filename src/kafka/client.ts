import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { Kafka, logLevel } from 'kafkajs';
import type { Admin, Consumer, KafkaConfig, RetryOptions, SASLOptions } from 'kafkajs';
import type { Config } from '../config/config.ts';
import { causeChain, TxstreamError } from '../errors.ts';
import { installCoordinatorRediscovery, onCoordinatorMoved } from './coordinator.ts';
import { retryPolicy } from './retry.ts';

// The only place that constructs kafkajs clients, so connection settings (TLS, SASL, timeouts,
// logging) are decided once for every producer, consumer and admin in the process.

export interface KafkaConnection {
  brokers: string[];
  clientId: string;
  /** kafkajs' own logger is silenced unless asked for: our logger reports what matters. */
  verbose?: boolean;
  connectionTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** Number of retries of a failed request; 0 for probes that must answer fast. Wins over retryTimeoutMs. */
  retries?: number;
  /** How long to keep retrying a failed request (KAFKA_RETRY_TIMEOUT_MS): see retry.ts. */
  retryTimeoutMs?: number;
  /** TLS: true for the system trust store, or a CA bundle (PEM) to trust. Verification stays on. */
  ssl?: boolean | { ca: string };
  sasl?: SASLOptions;
}

export function kafkaConnection(c: Readonly<Config>, clientIdSuffix?: string): KafkaConnection {
  return {
    brokers: [...c.kafka.brokers],
    clientId: clientIdSuffix ? `${c.kafka.clientId}-${clientIdSuffix}` : c.kafka.clientId,
    retryTimeoutMs: c.kafka.retryTimeoutMs,
    ...(c.kafka.ssl
      ? { ssl: c.kafka.sslCaFile ? { ca: fs.readFileSync(c.kafka.sslCaFile, 'utf8') } : true }
      : {}),
    ...(c.kafka.sasl ? { sasl: { ...c.kafka.sasl } as SASLOptions } : {}),
  };
}

export function createKafka(c: KafkaConnection): Kafka {
  // Every consumer made here finds a moved group coordinator instead of rejoining (coordinator.ts).
  installCoordinatorRediscovery();
  const config: KafkaConfig = {
    brokers: c.brokers,
    clientId: c.clientId,
    logLevel: c.verbose ? logLevel.INFO : logLevel.NOTHING,
    connectionTimeout: c.connectionTimeoutMs ?? 3000,
    requestTimeout: c.requestTimeoutMs ?? 30_000,
    retry: kafkaRetry(c),
    ...(c.ssl ? { ssl: tlsOptions(c.ssl) } : {}),
    ...(c.sasl ? { sasl: c.sasl } : {}),
  };
  const kafka = new Kafka(config);
  if (c.ssl || c.sasl) guardConnects(kafka, c);
  return kafka;
}

/** Explicit retries, else the time budget, else kafkajs-like 5 retries (clients made outside the config). */
export function kafkaRetry(c: Pick<KafkaConnection, 'retries' | 'retryTimeoutMs'>): RetryOptions {
  if (c.retries !== undefined) return { retries: c.retries };
  if (c.retryTimeoutMs !== undefined) return retryPolicy(c.retryTimeoutMs);
  return { retries: 5 };
}

function tlsOptions(ssl: true | { ca: string }): tls.ConnectionOptions {
  return ssl === true ? { rejectUnauthorized: true } : { ca: [ssl.ca], rejectUnauthorized: true };
}

// Credentials and trust are wrong until someone changes the configuration, so retrying cannot fix
// them. kafkajs already gives up at once on a refused SASL authentication (a non-retriable
// KafkaJSSASLAuthenticationError), but reports an untrusted certificate as an ordinary connection
// error and retries it with backoff (about 10 s with 5 retries, for ever in a consumer restarting on
// failure), ending with a message about retries rather than trust. So every connect() of a client
// built here first makes one TLS handshake with the seed brokers, verified exactly as kafkajs will
// verify it, and both failures become one non-retriable TxstreamError whose message names the cause
// and the setting to fix, and never the password.

/** OpenSSL's verification failures as Node reports them, plus Node's own hostname check. */
const TRUST_ERRORS = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_REVOKED',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function splitBroker(broker: string): { host: string; port: number } {
  const i = broker.lastIndexOf(':');
  return { host: broker.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(broker.slice(i + 1)) };
}

/** Node's reason without the advice it appends about its own command-line flags. */
function nodeReason(err: Error): string {
  return err.message.split(';')[0]!;
}

/**
 * Resolves when the broker's certificate is trusted, or when the broker cannot be reached at all
 * (availability is kafkajs' business, with its retries); rejects only on a verification failure.
 */
function checkTrust(broker: string, ssl: true | { ca: string }, timeoutMs: number): Promise<void> {
  const { host, port } = splitBroker(broker);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port,
      // As kafkajs' socket factory: SNI only for names, never for IP addresses (RFC 6066).
      ...(net.isIP(host) ? {} : { servername: host }),
      ...tlsOptions(ssl),
    });
    const done = (err?: TxstreamError) => {
      socket.destroy();
      if (err) reject(err);
      else resolve();
    };
    socket.setTimeout(timeoutMs, () => done());
    socket.once('secureConnect', () => done());
    socket.once('error', (err: NodeJS.ErrnoException) => {
      if (!err.code || !TRUST_ERRORS.has(err.code)) return done();
      done(
        new TxstreamError(
          'BROKER_REJECTED',
          `Kafka TLS: the certificate of broker ${broker} is not trusted (${err.code}: ${nodeReason(err)}); ` +
            (ssl === true
              ? 'set KAFKA_SSL_CA_FILE to the PEM of the CA that signed it'
              : 'KAFKA_SSL_CA_FILE does not hold the CA that signed it'),
          { cause: err },
        ),
      );
    });
  });
}

/** The SASL refusal in a kafkajs error chain, if that is what the error is. */
function saslRefusal(err: unknown): Error | undefined {
  for (let e = err as Error | undefined, depth = 0; e && depth < 5; e = e.cause as Error, depth++) {
    if (e.name === 'KafkaJSSASLAuthenticationError') return e;
  }
  return undefined;
}

/** The TxstreamError for a refused SASL authentication (a kafkajs error, possibly wrapped), else undefined. */
export function authFailure(err: unknown, c: KafkaConnection): TxstreamError | undefined {
  const refusal = saslRefusal(err);
  if (!refusal || !c.sasl) return undefined;
  const sasl = c.sasl as { mechanism: string; username?: string; password?: string };
  const secret = sasl.password;
  // The broker's reason is worth keeping (wrong credentials or a mechanism it does not offer), but it
  // is not ours to trust with the password.
  const reason = secret ? refusal.message.split(secret).join('***') : refusal.message;
  return new TxstreamError(
    'BROKER_REJECTED',
    `Kafka SASL authentication failed (mechanism ${sasl.mechanism.toUpperCase()}, user ${sasl.username ?? '?'}, brokers ${c.brokers.join(',')}): ${reason}; ` +
      'check KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD(_FILE)',
    { cause: refusal },
  );
}

function guardConnects(kafka: Kafka, c: KafkaConnection): void {
  let trusted: Promise<void> | undefined;
  const preflight = (): Promise<void> => {
    if (!c.ssl) return Promise.resolve();
    const ssl = c.ssl;
    // A success is remembered for the life of this client (producers are re-created after failures);
    // a failure is not: the next connect() checks again, as the broker's certificate may have changed.
    trusted ??= Promise.all(c.brokers.map((b) => checkTrust(b, ssl, c.connectionTimeoutMs ?? 3000))).then(
      () => undefined,
      (err: unknown) => {
        trusted = undefined;
        throw err;
      },
    );
    return trusted;
  };
  const guard = <T extends { connect(): Promise<void> }>(client: T): T => {
    const connect = client.connect.bind(client);
    client.connect = async () => {
      await preflight();
      try {
        await connect();
      } catch (err) {
        throw authFailure(err, c) ?? err;
      }
    };
    return client;
  };
  const admin = kafka.admin.bind(kafka);
  const producer = kafka.producer.bind(kafka);
  const consumer = kafka.consumer.bind(kafka);
  kafka.admin = (cfg) => guard(admin(cfg));
  kafka.producer = (cfg) => guard(producer(cfg));
  kafka.consumer = (cfg) => guard(consumer(cfg));
}

/** One metadata round trip: succeeds only when a broker answers and reports a controller. */
export async function describeCluster(
  c: KafkaConnection,
): Promise<{ brokers: number; controller: number | null; clusterId: string }> {
  const admin = createKafka({ retries: 0, connectionTimeoutMs: 1500, requestTimeoutMs: 3000, ...c }).admin();
  try {
    await admin.connect();
    const d = await admin.describeCluster();
    return { brokers: d.brokers.length, controller: d.controller, clusterId: d.clusterId };
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/** A kafkajs group consumer whose readiness (a joined, running member) is tracked for /readyz. */
export interface TrackedConsumer {
  consumer: Consumer;
  /** True between a group join and a stop or crash, and never after stopping() was called. */
  ready(): boolean;
  /** False for good once kafkajs crashed and will not restart the member (/healthz). */
  alive(): boolean;
  /** Readiness goes away now and does not come back with a late join. */
  stopping(): void;
}

/** The original error under kafkajs' wrappers (KafkaJSNonRetriableError and the like keep it as cause). */
function rootCause(err: Error): Error {
  return causeChain(err).findLast((e) => e instanceof Error) as Error;
}

/**
 * The fatal error for a consumer kafkajs crashed and will not restart: one line naming the cause
 * (the broker's error type, or the error class for a bug in our eachBatch) and, for a refusal, the
 * settings or ACLs to look at. A refusal by the broker is BROKER_REJECTED; anything else stays a
 * plain Error, as it is no broker's doing.
 */
export function consumerCrash(err: Error, o: { groupId: string; connection?: KafkaConnection }): Error {
  const what = `the Kafka consumer of group ${o.groupId} crashed and kafkajs does not restart it`;
  // A rotated password is read once at start-up (KAFKA_SASL_PASSWORD_FILE): the next reconnect fails.
  const auth = o.connection ? authFailure(err, o.connection) : undefined;
  if (auth) return new TxstreamError('BROKER_REJECTED', `${what}: ${auth.message}`, { cause: auth.cause });
  const root = rootCause(err);
  const type = (root as { type?: unknown }).type;
  if (typeof type === 'string') {
    const user = (o.connection?.sasl as { username?: string } | undefined)?.username;
    const hint = type.endsWith('_AUTHORIZATION_FAILED')
      ? `; check the ACLs of ${user ? `user ${user}` : "this client's principal"} (READ on the group and on its topics)`
      : '';
    return new TxstreamError('BROKER_REJECTED', `${what}: ${type}: ${root.message}${hint}`, { cause: root });
  }
  return new Error(`${what}: ${root.name}: ${root.message}`, { cause: root });
}

/**
 * The consumers of txstream's long-running commands (`consume`, `alerts forward`) share their group
 * settings and readiness rules: the session and heartbeat from configuration; the broker may hold an
 * empty fetch 500 ms (kafkajs' default is 5 s: a topic paused while a write retries, or a partition
 * resumed, is served only after the fetch in flight returns, so this bounds that wait at the cost of
 * two idle fetches a second); ready from each GROUP_JOIN (kafkajs emits it after every rejoin,
 * including after it restarts itself from a retriable crash) until STOP or CRASH.
 *
 * A crash kafkajs does not restart is fatal. kafkajs 2.2.4 (consumer/index.js, onCrash) first
 * disconnects the member (it leaves the group), then emits CRASH with restart = the error is
 * KafkaJSNumberOfRetriesExceeded or its root cause is retriable (and no restartOnFailure said no;
 * we set none). restart: false therefore means a non-retriable error: an authorization refused
 * (GROUP_/TOPIC_AUTHORIZATION_FAILED after an ACL change), a SASL password refused at a reconnect,
 * a TypeError/RangeError/ReferenceError/SyntaxError thrown by eachBatch (its retrier never retries
 * those). Nothing will ever fetch again, so the process must not look healthy: alive() turns false,
 * and onFatal is called once so that the command stops and exits non-zero for its supervisor to
 * restart it. restart: true (a broker away for longer than the retries) only costs readiness until
 * kafkajs has rejoined by itself.
 */
export function createTrackedConsumer(
  kafka: Kafka,
  o: {
    groupId: string;
    sessionTimeoutMs: number;
    heartbeatIntervalMs: number;
    /** Fetch size bounds (KAFKA_FETCH_MAX_BYTES[_PER_PARTITION]); unset keeps kafkajs' defaults. */
    maxBytes?: number;
    maxBytesPerPartition?: number;
    logger: { error(obj: object, msg: string): void; warn?(obj: object, msg: string): void };
    /** The connection the consumer was built from: names the SASL settings in a refusal, never the password. */
    connection?: KafkaConnection;
    /** Called once when kafkajs crashed and will not restart the member (see above). */
    onFatal?: (err: Error) => void;
  },
): TrackedConsumer {
  const consumer = kafka.consumer({
    groupId: o.groupId,
    allowAutoTopicCreation: false,
    sessionTimeout: o.sessionTimeoutMs,
    heartbeatInterval: o.heartbeatIntervalMs,
    maxWaitTimeInMs: 500,
    ...(o.maxBytes ? { maxBytes: o.maxBytes } : {}),
    ...(o.maxBytesPerPartition ? { maxBytesPerPartition: o.maxBytesPerPartition } : {}),
  });
  let ready = false;
  let stopping = false;
  let dead = false;
  consumer.on(consumer.events.GROUP_JOIN, () => {
    if (!stopping && !dead) ready = true;
  });
  consumer.on(consumer.events.STOP, () => {
    ready = false;
  });
  // A coordinator move is worth a line: it is what a rolling restart or a broker loss looks like
  // from a member that rode it out (coordinator.ts). Kept for the consumer's life: a DISCONNECT also
  // comes with every crash kafkajs restarts from, after which the member is the same.
  onCoordinatorMoved((move) => {
    if (move.groupId === o.groupId)
      o.logger.warn?.(
        { from: move.from, to: move.to, during: move.during, reason: move.reason },
        move.from === move.to
          ? 'the group coordinator was not available; looked it up and asked it again'
          : 'the group coordinator moved; found it again',
      );
  });
  consumer.on(consumer.events.CRASH, (e) => {
    ready = false;
    const { error, restart } = e.payload;
    o.logger.error({ err: error.message, restart }, 'consumer crashed');
    // Reported even while stopping: a stop during which the member crashed did not end cleanly.
    if (restart || dead) return;
    dead = true;
    o.onFatal?.(
      consumerCrash(error, { groupId: o.groupId, ...(o.connection ? { connection: o.connection } : {}) }),
    );
  });
  return {
    consumer,
    ready: () => ready,
    alive: () => !dead,
    stopping: () => {
      stopping = true;
      ready = false;
    },
  };
}

/** A kafkajs admin client that connects on first use, again after a failed connect or a reset(). */
export interface LazyAdmin {
  get(): Promise<Admin>;
  /** Drops the connection (a broken one is rebuilt on the next get()). */
  reset(): Promise<void>;
}

export function lazyAdmin(kafka: Kafka, onConnectError: (err: unknown) => unknown = (err) => err): LazyAdmin {
  let admin: Promise<Admin> | undefined;
  return {
    get() {
      if (!admin) {
        const a = kafka.admin();
        admin = a.connect().then(
          () => a,
          (err: unknown) => {
            admin = undefined;
            throw onConnectError(err);
          },
        );
      }
      return admin;
    },
    async reset() {
      const a = admin;
      admin = undefined;
      if (a) await a.then((x) => x.disconnect()).catch(() => undefined);
    },
  };
}
