import { describeCluster } from '../kafka/client.ts';

// Readiness means the server answers a real request of its protocol, not merely that a port accepts
// connections: Kafka accepts TCP long before its metadata is ready, and Quarkus binds before its
// storage is up.

export interface Probe {
  ok: boolean;
  detail: string;
}

export async function probeKafka(brokers: string[]): Promise<Probe> {
  try {
    const d = await describeCluster({ brokers, clientId: 'txstream-stack-probe' });
    if (d.brokers < 1 || d.controller === null) return { ok: false, detail: 'no controller yet' };
    return { ok: true, detail: `cluster ${d.clusterId}, ${d.brokers} broker(s)` };
  } catch (err) {
    return { ok: false, detail: (err as Error).message };
  }
}

async function probeHttp(url: string, describe: (body: string) => string): Promise<Probe> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
    const body = await res.text();
    if (!res.ok) return { ok: false, detail: `HTTP ${res.status} from ${url}` };
    return { ok: true, detail: describe(body) };
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    return { ok: false, detail: `${url}: ${cause ?? (err as Error).message}` };
  }
}

/** Lists subjects through the Confluent-compatible API, the one txstream's clients use. */
export function probeRegistry(ccompatUrl: string): Promise<Probe> {
  return probeHttp(`${ccompatUrl}/subjects`, (body) => {
    const subjects = JSON.parse(body) as unknown[];
    return `${subjects.length} subject(s)`;
  });
}

/** Lists datasets through the BigQuery v2 REST API, the one @google-cloud/bigquery uses. */
export function probeBigQuery(apiEndpoint: string, projectId: string): Promise<Probe> {
  return probeHttp(`${apiEndpoint}/bigquery/v2/projects/${projectId}/datasets`, (body) => {
    const list = JSON.parse(body) as { datasets?: unknown[] };
    return `project ${projectId}, ${list.datasets?.length ?? 0} dataset(s)`;
  });
}
