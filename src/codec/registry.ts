import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import type { Config } from '../config/config.ts';
import { TxstreamError } from '../errors.ts';
import type { ErrorCode } from '../errors.ts';
import { avroTypeOptions } from './schemas.ts';
import { unframe } from './wire.ts';

// A small client for the Confluent schema-registry REST API, as served by Confluent, Apicurio 3.x
// (/apis/ccompat/v7), Karapace and others. Administrative calls (config, lookup, register,
// compatibility) go through fetch: @kafkajs/confluent-schema-registry cannot set a subject's
// compatibility before its first version, returns no version numbers, has no compatibility check and
// reports a refused connection as HTTP 400, which would make "registry down" look like "bad request".
// The library is used where it fits: fetching writer schemas by id and decoding with them
// (createRegistryDecoder), with its own per-instance cache.
//
// Differences between registries that this client absorbs (found against Apicurio 3.x):
// - Apicurio ignores ?verbose=true on the compatibility check: an incompatible schema yields
//   {"is_compatible": false} without messages. The reason only comes with the 409 of a refused
//   registration, which is why `register` carries it (RegistryError.reason).
// - Apicurio's global default compatibility is NONE (Confluent's is BACKWARD), so a subject must get
//   its level explicitly (setCompatibility) or nothing is enforced.

export const COMPATIBILITY_LEVELS = [
  'NONE',
  'BACKWARD',
  'BACKWARD_TRANSITIVE',
  'FORWARD',
  'FORWARD_TRANSITIVE',
  'FULL',
  'FULL_TRANSITIVE',
] as const;
export type CompatibilityLevel = (typeof COMPATIBILITY_LEVELS)[number];

export interface RegistryConnection {
  /** Base URL of the Confluent-compatible API, e.g. http://127.0.0.1:8081/apis/ccompat/v7. */
  url: string;
  username?: string;
  password?: string;
  /** Per-request timeout; default 10 s. */
  timeoutMs?: number;
  /** Retries of a request that failed on the network or with 5xx; default 2. Every call here is idempotent. */
  retries?: number;
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
}

export function registryConnection(c: Readonly<Config>): RegistryConnection {
  return {
    url: c.registry.url,
    ...(c.registry.username ? { username: c.registry.username, password: c.registry.password ?? '' } : {}),
  };
}

export interface SubjectVersion {
  subject: string;
  id: number;
  version: number;
  schema: string;
}

export interface CompatibilityResult {
  compatible: boolean;
  /** The registry's explanation when it gives one (Confluent with verbose=true; Apicurio gives none). */
  messages: string[];
}

export class RegistryError extends TxstreamError {
  /** HTTP status, or 0 when no response arrived. */
  readonly status: number;
  /** The registry's numeric error_code (e.g. 40401, 409, 42201), when it sent one. */
  readonly registryCode: number | undefined;
  /** The registry's own message, without the Java exception class some registries prefix. */
  readonly reason: string;

  constructor(
    code: ErrorCode,
    message: string,
    status: number,
    registryCode: number | undefined,
    reason: string,
    cause?: unknown,
  ) {
    super(code, message, { retriable: code === 'REGISTRY_UNAVAILABLE', cause });
    this.name = 'RegistryError';
    this.status = status;
    this.registryCode = registryCode;
    this.reason = reason;
  }
}

export interface RegistryClient {
  /** Base URL without credentials. */
  readonly url: string;
  /** The subject's own compatibility level, or null when it has none (the global default applies). */
  getCompatibility(subject: string): Promise<CompatibilityLevel | null>;
  getGlobalCompatibility(): Promise<CompatibilityLevel>;
  setCompatibility(subject: string, level: CompatibilityLevel): Promise<void>;
  /** The version of `subject` holding this schema, or null when the subject does not hold it. */
  lookup(subject: string, schema: string): Promise<SubjectVersion | null>;
  /** Registers (or finds) the schema; RegistryError(SCHEMA_INCOMPATIBLE) with the registry's reason on 409. */
  register(subject: string, schema: string): Promise<{ id: number }>;
  /** Tests the schema against the latest version under the subject's compatibility level. */
  checkCompatibility(subject: string, schema: string): Promise<CompatibilityResult>;
  /** Version numbers under the subject; empty when the subject does not exist. */
  versions(subject: string): Promise<number[]>;
  latest(subject: string): Promise<SubjectVersion | null>;
  schemaById(id: number): Promise<string>;
  /** Deletes a subject (soft, then hard when `permanent`); returns the deleted versions. */
  deleteSubject(subject: string, options?: { permanent?: boolean }): Promise<number[]>;
}

const CONTENT_TYPE = 'application/vnd.schemaregistry.v1+json';

/** Strips a Java exception class prefix ("io.apicurio....RuleViolationException: ") from a message. */
export function registryReason(message: string): string {
  return message.replace(/^(?:[a-z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error): /, '');
}

interface SplitUrl {
  base: string;
  auth: string | undefined;
  username: string | undefined;
  password: string | undefined;
}

function splitCredentials(c: RegistryConnection): SplitUrl {
  const url = new URL(c.url);
  // fetch refuses URLs that embed credentials; turn them into the header instead.
  const username = c.username ?? (url.username ? decodeURIComponent(url.username) : undefined);
  const password = c.password ?? (url.password ? decodeURIComponent(url.password) : undefined);
  url.username = '';
  url.password = '';
  const base = url.toString().replace(/\/+$/, '');
  const auth =
    username !== undefined
      ? `Basic ${Buffer.from(`${username}:${password ?? ''}`).toString('base64')}`
      : undefined;
  return { base, auth, username, password };
}

export function createRegistryClient(c: RegistryConnection): RegistryClient {
  const { base, auth } = splitCredentials(c);
  const doFetch = c.fetch ?? fetch;
  const timeoutMs = c.timeoutMs ?? 10_000;
  const retries = c.retries ?? 2;
  const sleep = c.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));

  interface Answer {
    status: number;
    body: unknown;
  }

  async function once(method: string, path: string, body: unknown): Promise<Answer> {
    const headers: Record<string, string> = { accept: `${CONTENT_TYPE}, application/json` };
    if (body !== undefined) headers['content-type'] = CONTENT_TYPE;
    if (auth) headers.authorization = auth;
    const res = await doFetch(`${base}${path}`, {
      method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // Proxies and some errors answer with HTML or plain text; keep it for the message.
    }
    return { status: res.status, body: parsed };
  }

  /** Sends a request; 2xx and 404 are answers, everything else becomes a classified RegistryError. */
  async function request(method: string, path: string, body?: unknown): Promise<Answer> {
    const what = `${method} ${path}`;
    for (let attempt = 0; ; attempt++) {
      let answer: Answer;
      try {
        answer = await once(method, path, body);
      } catch (err) {
        const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
        if (attempt < retries) {
          await sleep(100 * 2 ** attempt);
          continue;
        }
        throw new RegistryError(
          'REGISTRY_UNAVAILABLE',
          `schema registry at ${base} is unreachable (${cause}) on ${what}`,
          0,
          undefined,
          String(cause),
          err,
        );
      }
      if (answer.status >= 500 && attempt < retries) {
        await sleep(100 * 2 ** attempt);
        continue;
      }
      if (answer.status < 300 || answer.status === 404) return answer;
      throw classify(what, answer);
    }
  }

  function classify(what: string, a: Answer): RegistryError {
    const b = a.body as { message?: unknown; error_code?: unknown } | string | undefined;
    const raw =
      typeof b === 'string'
        ? b.slice(0, 300)
        : typeof b?.message === 'string'
          ? b.message
          : JSON.stringify(b);
    const registryCode =
      typeof b === 'object' && typeof b?.error_code === 'number' ? b.error_code : undefined;
    const reason = registryReason(raw ?? '');
    const code: ErrorCode =
      a.status === 401 || a.status === 403
        ? 'REGISTRY_AUTH'
        : a.status === 409
          ? 'SCHEMA_INCOMPATIBLE'
          : a.status === 422
            ? 'SCHEMA_INVALID'
            : a.status >= 500
              ? 'REGISTRY_UNAVAILABLE'
              : 'REGISTRY_ERROR';
    return new RegistryError(
      code,
      `schema registry refused ${what} (HTTP ${a.status}): ${reason}`,
      a.status,
      registryCode,
      reason,
    );
  }

  function unexpected(what: string, a: Answer): RegistryError {
    return new RegistryError(
      'REGISTRY_ERROR',
      `unexpected answer to ${what} (HTTP ${a.status}): ${JSON.stringify(a.body)?.slice(0, 300)}`,
      a.status,
      undefined,
      '',
    );
  }

  const enc = encodeURIComponent;

  function notFound(what: string, a: Answer): RegistryError {
    const b = a.body as { message?: unknown; error_code?: unknown } | undefined;
    const reason = typeof b?.message === 'string' ? registryReason(b.message) : 'not found';
    return new RegistryError(
      'SCHEMA_NOT_FOUND',
      `${what}: ${reason}`,
      404,
      typeof b?.error_code === 'number' ? b.error_code : undefined,
      reason,
    );
  }

  function asLevel(what: string, a: Answer, v: unknown): CompatibilityLevel {
    if (typeof v === 'string' && (COMPATIBILITY_LEVELS as readonly string[]).includes(v))
      return v as CompatibilityLevel;
    throw unexpected(what, a);
  }

  function asVersion(what: string, a: Answer): SubjectVersion {
    const b = a.body as Partial<SubjectVersion> | undefined;
    if (typeof b?.id !== 'number' || typeof b.version !== 'number' || typeof b.schema !== 'string')
      throw unexpected(what, a);
    return { subject: String(b.subject), id: b.id, version: b.version, schema: b.schema };
  }

  return {
    url: base,

    async getCompatibility(subject) {
      const path = `/config/${enc(subject)}`;
      const a = await request('GET', path);
      if (a.status === 404) return null;
      return asLevel(`GET ${path}`, a, (a.body as { compatibilityLevel?: unknown })?.compatibilityLevel);
    },

    async getGlobalCompatibility() {
      const a = await request('GET', '/config');
      if (a.status === 404) throw notFound('GET /config', a);
      return asLevel('GET /config', a, (a.body as { compatibilityLevel?: unknown })?.compatibilityLevel);
    },

    async setCompatibility(subject, level) {
      const path = `/config/${enc(subject)}`;
      const a = await request('PUT', path, { compatibility: level });
      if (a.status === 404) throw notFound(`PUT ${path}`, a);
      asLevel(`PUT ${path}`, a, (a.body as { compatibility?: unknown })?.compatibility);
    },

    async lookup(subject, schema) {
      const path = `/subjects/${enc(subject)}`;
      const a = await request('POST', path, { schema });
      // 40401 subject not found, 40403 schema not found under the subject: both mean "not there".
      if (a.status === 404) return null;
      return asVersion(`POST ${path}`, a);
    },

    async register(subject, schema) {
      const path = `/subjects/${enc(subject)}/versions`;
      const a = await request('POST', path, { schema });
      if (a.status === 404) throw notFound(`POST ${path}`, a);
      const id = (a.body as { id?: unknown })?.id;
      if (typeof id !== 'number') throw unexpected(`POST ${path}`, a);
      return { id };
    },

    async checkCompatibility(subject, schema) {
      const path = `/compatibility/subjects/${enc(subject)}/versions/latest?verbose=true`;
      const a = await request('POST', path, { schema });
      // Confluent answers 404 when the subject has no version yet: anything is compatible with nothing.
      if (a.status === 404) return { compatible: true, messages: [] };
      const b = a.body as { is_compatible?: unknown; messages?: unknown };
      if (typeof b?.is_compatible !== 'boolean') throw unexpected(`POST ${path}`, a);
      const messages = Array.isArray(b.messages) ? b.messages.map(String) : [];
      return { compatible: b.is_compatible, messages };
    },

    async versions(subject) {
      const path = `/subjects/${enc(subject)}/versions`;
      const a = await request('GET', path);
      if (a.status === 404) return [];
      if (!Array.isArray(a.body) || !a.body.every((v) => typeof v === 'number'))
        throw unexpected(`GET ${path}`, a);
      return a.body as number[];
    },

    async latest(subject) {
      const path = `/subjects/${enc(subject)}/versions/latest`;
      const a = await request('GET', path);
      if (a.status === 404) return null;
      return asVersion(`GET ${path}`, a);
    },

    async schemaById(id) {
      const path = `/schemas/ids/${id}`;
      const a = await request('GET', path);
      if (a.status === 404) throw notFound(`schema id ${id}`, a);
      const schema = (a.body as { schema?: unknown })?.schema;
      if (typeof schema !== 'string') throw unexpected(`GET ${path}`, a);
      return schema;
    },

    async deleteSubject(subject, options = {}) {
      const path = `/subjects/${enc(subject)}`;
      const a = await request('DELETE', path);
      if (a.status === 404) return [];
      const deleted = Array.isArray(a.body) ? (a.body as number[]) : [];
      if (options.permanent) await request('DELETE', `${path}?permanent=true`);
      return deleted;
    },
  };
}

export interface RegistryDecoder {
  /** Decodes a Confluent-framed value with the writer schema its id names, fetched from the registry once. */
  decode(bytes: Buffer): Promise<unknown>;
}

/**
 * Decoding through the registry with @kafkajs/confluent-schema-registry: it fetches the writer schema
 * by the id in the frame (cached per instance) and builds it with txstream's decimal logical type, so
 * amounts come back as the same decimal strings the producer was given.
 */
export function createRegistryDecoder(c: RegistryConnection): RegistryDecoder {
  const { base, username, password } = splitCredentials(c);
  const registry = new SchemaRegistry(
    {
      host: base,
      clientId: 'txstream',
      ...(username !== undefined ? { auth: { username, password: password ?? '' } } : {}),
    },
    { [SchemaType.AVRO]: avroTypeOptions() },
  );
  return {
    async decode(bytes) {
      const { schemaId } = unframe(bytes);
      try {
        return await registry.decode(bytes);
      } catch (err) {
        const status = (err as { status?: number }).status;
        if (status === 404) {
          throw new RegistryError(
            'SCHEMA_NOT_FOUND',
            `schema id ${schemaId} is not in the registry`,
            404,
            undefined,
            (err as Error).message,
            err,
          );
        }
        throw new TxstreamError(
          'DECODE_FAILED',
          `cannot decode a value with schema id ${schemaId}: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
    },
  };
}
