import fs from 'node:fs';
import { Kafka, logLevel } from 'kafkajs';
import type { KafkaConfig, SASLOptions } from 'kafkajs';
import type { Config } from '../config/config.ts';

// The only place that constructs kafkajs clients, so connection settings (TLS, SASL, timeouts,
// logging) are decided once for every producer, consumer and admin in the process.

export interface KafkaConnection {
  brokers: string[];
  clientId: string;
  /** kafkajs' own logger is silenced unless asked for: our logger reports what matters. */
  verbose?: boolean;
  connectionTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** Number of retries of a failed request; 0 for probes that must answer fast. */
  retries?: number;
  /** TLS: true for the system trust store, or a CA bundle (PEM) to trust. Verification stays on. */
  ssl?: boolean | { ca: string };
  sasl?: SASLOptions;
}

export function kafkaConnection(c: Readonly<Config>, clientIdSuffix?: string): KafkaConnection {
  return {
    brokers: [...c.kafka.brokers],
    clientId: clientIdSuffix ? `${c.kafka.clientId}-${clientIdSuffix}` : c.kafka.clientId,
    ...(c.kafka.ssl
      ? { ssl: c.kafka.sslCaFile ? { ca: fs.readFileSync(c.kafka.sslCaFile, 'utf8') } : true }
      : {}),
    ...(c.kafka.sasl ? { sasl: { ...c.kafka.sasl } as SASLOptions } : {}),
  };
}

export function createKafka(c: KafkaConnection): Kafka {
  const config: KafkaConfig = {
    brokers: c.brokers,
    clientId: c.clientId,
    logLevel: c.verbose ? logLevel.INFO : logLevel.NOTHING,
    connectionTimeout: c.connectionTimeoutMs ?? 3000,
    requestTimeout: c.requestTimeoutMs ?? 30_000,
    retry: { retries: c.retries ?? 5 },
    ...(c.ssl ? { ssl: c.ssl === true ? true : { ca: [c.ssl.ca], rejectUnauthorized: true } } : {}),
    ...(c.sasl ? { sasl: c.sasl } : {}),
  };
  return new Kafka(config);
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
