import type { BigQuery } from '@google-cloud/bigquery';
import { managedwriter, protos } from '@google-cloud/bigquery-storage';
import { grpc } from 'google-gax';
import { TxstreamError } from '../../errors.ts';
import { queryError } from '../query.ts';
import { createRowEncoder, type RowEncoder } from './encoder.ts';
import type { AppendOutcome, StorageWriteClient } from './port.ts';
import { withDeadline } from '../deadline.ts';

// The StorageWriteClient port over @google-cloud/bigquery-storage's managedwriter: COMMITTED streams,
// one bidirectional AppendRows connection per stream, rows encoded by ./encoder.ts.
//
// - The library's write retries stay off: a retry inside the library resends the same offset behind
//   the sink's back, and the sink already retries WAREHOUSE_UNAVAILABLE with the same offset.
// - Appends to one stream run one at a time. The library matches responses to requests in order and
//   forgets nothing on its own, so a request that never got its answer (a timeout) would take the
//   next request's answer; after a timeout or a failure the connection is dropped and the next append
//   opens a new one.
// - Every connection has an error listener: the library re-emits connection errors ('error' on an
//   EventEmitter), and one without a listener ends the process (nodejs-bigquery-storage#592).

export interface StorageWriteClientOptions {
  projectId: string;
  dataset: string;
  /** Emulator: plaintext gRPC host:port (e.g. 127.0.0.1:9060). Unset: Google's endpoint with ADC/keyFile credentials. */
  endpoint?: { host: string; port: number };
  keyFilename?: string;
  /**
   * The table's BigQuery schema (`{fields: [...]}`, as tables.get returns it), read once per table
   * for the row encoder and again when the service reports a schema change. REST rather than the
   * stream's table_schema, which the emulator reports top-level only. See tableSchemaFromRest.
   */
  tableSchema(table: string): Promise<unknown>;
  /** An append (or a CreateWriteStream) not answered in this time is WAREHOUSE_UNAVAILABLE; default 60 s. */
  appendTimeoutMs?: number;
  /** Requests above this are REQUEST_TOO_LARGE without being sent; default BigQuery's 10 MiB. */
  maxRequestBytes?: number;
  /**
   * Open connections kept at most; past it the least recently used idle one is closed (and opened
   * again by its stream's next append). Default unlimited. bqemulator serves each open AppendRows
   * call on a thread of a small pool (min(32, cores + 4): 6 on a 2-core machine) shared by every
   * client, and a call beyond it waits with no answer, so against the emulator keep this low.
   * BigQuery's own limit is a quota of concurrent connections per project and region.
   */
  maxConnections?: number;
  logger?: { warn(obj: object, msg: string): void };
}

export const DEFAULT_APPEND_TIMEOUT_MS = 60_000;
/** BigQuery: "AppendRows request too large: 11854265 limit 10485760". */
export const MAX_REQUEST_BYTES = 10 * 1024 * 1024;

// gRPC status codes (google.rpc.Code).
const CANCELLED = 1;
const UNKNOWN = 2;
const INVALID_ARGUMENT = 3;
const DEADLINE_EXCEEDED = 4;
const NOT_FOUND = 5;
const ALREADY_EXISTS = 6;
const RESOURCE_EXHAUSTED = 8;
const FAILED_PRECONDITION = 9;
const ABORTED = 10;
const OUT_OF_RANGE = 11;
const INTERNAL = 13;
const UNAVAILABLE = 14;
const TRANSIENT = new Set([CANCELLED, UNKNOWN, DEADLINE_EXCEEDED, ABORTED, INTERNAL, UNAVAILABLE]);

const StorageErrorCode = protos.google.cloud.bigquery.storage.v1.StorageError.StorageErrorCode;
const STREAM_GONE_STORAGE_CODES = new Set<number>([
  StorageErrorCode.STREAM_NOT_FOUND,
  StorageErrorCode.STREAM_FINALIZED,
  StorageErrorCode.STREAM_ALREADY_COMMITTED,
]);

/**
 * The stream's end as the service's message states it: BigQuery "expected offset N, received M",
 * bqemulator "Offset M already committed; next expected N" / "Offset M beyond next expected N".
 */
export function parseStreamEnd(message: string): number | undefined {
  const m = /expected offset (\d+)/i.exec(message) ?? /next expected (\d+)/i.exec(message);
  if (!m) return undefined;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : undefined;
}

const TOO_LARGE = /too large|size cap|larger than (?:the )?max|exceeds? .*(?:limit|cap)/i;

/** A status the sink cannot act on as an outcome, as the error the port promises. */
export function statusError(code: number | undefined, message: string, cause?: unknown): TxstreamError {
  const options = cause === undefined ? {} : { cause };
  if ((code === RESOURCE_EXHAUSTED || code === INVALID_ARGUMENT) && TOO_LARGE.test(message))
    return new TxstreamError('REQUEST_TOO_LARGE', message, options);
  // RESOURCE_EXHAUSTED otherwise is a quota or a throttle, which passes.
  if (code === undefined || TRANSIENT.has(code) || code === RESOURCE_EXHAUSTED)
    return new TxstreamError('WAREHOUSE_UNAVAILABLE', message, { ...options, retriable: true });
  return new TxstreamError('WAREHOUSE_ERROR', message, options);
}

export interface StatusLike {
  code?: number | null;
  message?: string | null;
  /** StorageError.code when the status carried one (BigQuery does, the emulator does not). */
  storageCode?: number;
}

/**
 * What a status (in-band in the AppendRowsResponse, or the one a connection ended with) means for an
 * append. Pure; an error to throw is returned, not thrown.
 */
export function classifyStatus(status: StatusLike, cause?: unknown): AppendOutcome | TxstreamError {
  const code = status.code ?? undefined;
  const message = status.message ?? `status ${code}`;
  if (code === ALREADY_EXISTS) return withExpected({ kind: 'already-exists', message }, message);
  if (code === OUT_OF_RANGE) return withExpected({ kind: 'out-of-range', message }, message);
  if (
    code === NOT_FOUND ||
    (status.storageCode !== undefined && STREAM_GONE_STORAGE_CODES.has(status.storageCode)) ||
    (code === FAILED_PRECONDITION && /finali[sz]ed/i.test(message))
  )
    return { kind: 'stream-gone', message };
  // The writer schema has a column the stream does not know yet: BigQuery updates an open stream's
  // schema some minutes after a tables.patch added columns (and says so with updated_schema). Not a bad
  // row and not for good: the same append is retried until the stream has caught up.
  if (
    status.storageCode === StorageErrorCode.SCHEMA_MISMATCH_EXTRA_FIELDS ||
    (code === INVALID_ARGUMENT && /more fields than|extra fields/i.test(message))
  )
    return new TxstreamError(
      'WAREHOUSE_UNAVAILABLE',
      `${message} (a column added moments ago has not reached the write stream yet; retrying)`,
      { retriable: true, ...(cause === undefined ? {} : { cause }) },
    );
  return statusError(code, message, cause);
}

function withExpected<K extends 'already-exists' | 'out-of-range'>(
  outcome: { kind: K; message: string },
  message: string,
): { kind: K; message: string; expected?: number } {
  const expected = parseStreamEnd(message);
  return expected === undefined ? outcome : { ...outcome, expected };
}

type AppendRowsResponse = protos.google.cloud.bigquery.storage.v1.IAppendRowsResponse;

/** The response's status with the StorageError of its details (message and code) folded in. */
function statusOf(error: NonNullable<AppendRowsResponse['error']>): StatusLike {
  let message = error.message ?? '';
  let storageCode: number | undefined;
  for (const detail of error.details ?? []) {
    // The generated type says type_url; the decoded response has camel case.
    const any = detail as { typeUrl?: string; type_url?: string; value?: Uint8Array | string | null };
    const typeUrl = any.typeUrl ?? any.type_url ?? '';
    if (!typeUrl.endsWith('google.cloud.bigquery.storage.v1.StorageError') || !any.value) continue;
    try {
      const bytes = typeof any.value === 'string' ? Buffer.from(any.value, 'base64') : any.value;
      const se = protos.google.cloud.bigquery.storage.v1.StorageError.decode(bytes);
      storageCode = typeof se.code === 'number' ? se.code : StorageErrorCode[se.code];
      if (se.errorMessage && !message.includes(se.errorMessage)) message = `${message} (${se.errorMessage})`;
    } catch {
      // An undecodable detail leaves the status as it is.
    }
  }
  return { code: error.code ?? null, message, ...(storageCode !== undefined ? { storageCode } : {}) };
}

/** The outcome of an answered append at `offset` of `rowCount` rows. */
export function outcomeOf(
  res: AppendRowsResponse,
  offset: number,
  rowCount: number,
): AppendOutcome | TxstreamError {
  if (res.rowErrors?.length)
    return {
      kind: 'rows-rejected',
      rows: res.rowErrors.map((e) => ({
        index: Number(e.index ?? 0),
        message: e.message ?? `row error ${e.code}`,
      })),
    };
  if (!res.error?.code) return { kind: 'ok', nextOffset: offset + rowCount };
  const status = statusOf(res.error);
  const outcome = classifyStatus(status);
  // A refused request without row errors or a StorageError saying why: on BigQuery a malformed
  // request, on the emulator also a value it could not take (it reports no row_errors). With one row
  // the row is the only suspect; with more the sink cannot tell which, so it is not guessed.
  if (
    outcome instanceof TxstreamError &&
    outcome.code === 'WAREHOUSE_ERROR' &&
    status.code === INVALID_ARGUMENT &&
    status.storageCode === undefined &&
    rowCount === 1
  )
    return { kind: 'rows-rejected', rows: [{ index: 0, message: outcome.message }] };
  return outcome;
}

/** Bytes an int takes as a protobuf varint. */
function varintBytes(n: number): number {
  let bytes = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    bytes++;
  }
  return bytes;
}

/**
 * tableSchema for createStorageWriteClient from tables.get through @google-cloud/bigquery; errors
 * classified like every other warehouse call (WAREHOUSE_UNAVAILABLE or WAREHOUSE_ERROR).
 */
export function tableSchemaFromRest(bq: BigQuery, dataset: string): (table: string) => Promise<unknown> {
  return async (table) => {
    try {
      const [metadata] = await bq.dataset(dataset).table(table).getMetadata();
      return (metadata as { schema?: unknown }).schema;
    } catch (err) {
      throw queryError(err);
    }
  };
}

type StreamConnection = Awaited<ReturnType<managedwriter.WriterClient['createStreamConnection']>>;

interface Connection {
  readonly stream: string;
  readonly table: string;
  readonly encoder: RowEncoder;
  readonly connection: StreamConnection;
  readonly writer: managedwriter.Writer;
  /** An append is waiting for its answer on it. */
  busy: boolean;
}

export function createStorageWriteClient(o: StorageWriteClientOptions): StorageWriteClient {
  const timeoutMs = o.appendTimeoutMs ?? DEFAULT_APPEND_TIMEOUT_MS;
  const maxRequestBytes = o.maxRequestBytes ?? MAX_REQUEST_BYTES;
  const maxConnections = o.maxConnections ?? Number.POSITIVE_INFINITY;
  const client = new managedwriter.WriterClient(
    o.endpoint
      ? {
          projectId: o.projectId,
          apiEndpoint: o.endpoint.host,
          port: o.endpoint.port,
          // Insecure channel credentials keep the client from looking for Google credentials, and a
          // stated universe domain keeps google-auth-library from asking the GCE metadata server.
          sslCreds: grpc.credentials.createInsecure(),
          universeDomain: 'googleapis.com',
        }
      : { projectId: o.projectId, ...(o.keyFilename ? { keyFilename: o.keyFilename } : {}) },
  );
  const tablePath = (table: string) => `projects/${o.projectId}/datasets/${o.dataset}/tables/${table}`;

  const encoders = new Map<string, Promise<RowEncoder>>();
  const descriptorBytes = new WeakMap<RowEncoder, number>();
  const connections = new Map<string, Connection>();
  const queues = new Map<string, Promise<unknown>>();
  let closed = false;

  function encoderFor(table: string): Promise<RowEncoder> {
    let encoder = encoders.get(table);
    if (!encoder) {
      encoder = o.tableSchema(table).then(createRowEncoder);
      encoders.set(table, encoder);
      // A failed read is not cached: the next append asks again.
      encoder.catch(() => {
        if (encoders.get(table) === encoder) encoders.delete(table);
      });
    }
    return encoder;
  }

  function requestBytes(encoder: RowEncoder, rows: readonly Uint8Array[], rowBytes: number, stream: string) {
    let descriptor = descriptorBytes.get(encoder);
    if (descriptor === undefined) {
      descriptor = protos.google.protobuf.DescriptorProto.encode(encoder.descriptor).finish().length;
      descriptorBytes.set(encoder, descriptor);
    }
    let framing = 0;
    for (const r of rows) framing += 1 + varintBytes(r.length);
    // Stream name, trace id, offset and the nesting of proto_rows: a generous constant.
    return rowBytes + framing + descriptor + stream.length + 512;
  }

  /** Forgets a connection: takes it off our map and off the library's list, which never shrinks. */
  function forget(c: Connection): void {
    if (connections.get(c.stream) === c) connections.delete(c.stream);
    const list = (client as unknown as { _connections?: { connectionList?: unknown[] } })._connections
      ?.connectionList;
    const at = list?.indexOf(c.connection) ?? -1;
    if (at >= 0) list!.splice(at, 1);
  }

  /** Forgets a connection that may still be open, and ends it. */
  function drop(c: Connection): void {
    forget(c);
    try {
      c.connection.close();
    } catch {
      // Closing a broken connection has nothing left to do.
    }
  }

  async function connectionFor(stream: string, table: string, encoder: RowEncoder): Promise<Connection> {
    const existing = connections.get(stream);
    if (existing && existing.encoder === encoder) {
      // Map order is use order: the first entry is the least recently used.
      connections.delete(stream);
      connections.set(stream, existing);
      return existing;
    }
    // A new schema needs a new connection: BigQuery reads the writer schema of a connection once.
    if (existing) drop(existing);
    for (const other of connections.values()) {
      if (connections.size < maxConnections) break;
      if (!other.busy) drop(other);
    }
    let connection: StreamConnection;
    const opening = client.createStreamConnection({ streamId: stream });
    try {
      connection = await answered(opening, `connecting to ${stream}`);
    } catch (err) {
      if (err instanceof TxstreamError) {
        // Given up on: should it open after all, it is closed rather than left holding a call.
        opening.then(
          (late) => late.close(),
          () => undefined,
        );
        throw err;
      }
      throw statusError(
        (err as { code?: number }).code,
        `connecting to ${stream}: ${(err as Error).message}`,
        err,
      );
    }
    const c: Connection = {
      stream,
      table,
      encoder,
      connection,
      writer: new managedwriter.Writer({ connection, protoDescriptor: encoder.descriptor }),
      busy: false,
    };
    connection.onConnectionError((err) => {
      o.logger?.warn(
        { stream, code: err.code, err: err.message },
        'storage write connection failed; the next append opens a new one',
      );
      // Not closed here: the library still settles the writes in flight on this connection as it
      // winds down, and closing would take its listeners away first.
      forget(c);
    });
    // BigQuery announces a changed table schema on the connection; the next append reads it anew.
    connection.onSchemaUpdated(() => {
      encoders.delete(table);
    });
    connections.set(stream, c);
    return c;
  }

  function answered<T>(promise: Promise<T>, what: string): Promise<T> {
    return withDeadline(
      promise,
      timeoutMs,
      () =>
        new TxstreamError('WAREHOUSE_UNAVAILABLE', `${what}: no answer in ${timeoutMs} ms`, {
          retriable: true,
        }),
    );
  }

  function oneAtATime<T>(stream: string, task: () => Promise<T>): Promise<T> {
    const run = (queues.get(stream) ?? Promise.resolve()).then(task);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    queues.set(stream, tail);
    void tail.then(() => {
      if (queues.get(stream) === tail) queues.delete(stream);
    });
    return run;
  }

  async function encode(table: string, rows: readonly Record<string, unknown>[]) {
    let encoder = await encoderFor(table);
    let encoded = encoder.encode(rows);
    if (!encoded.ok && encoded.problems.some((p) => p.unknownColumn)) {
      // The table may have gained the column since its schema was read: read it once more.
      encoders.delete(table);
      encoder = await encoderFor(table);
      encoded = encoder.encode(rows);
      const unknown = encoded.ok ? undefined : encoded.problems.find((p) => p.unknownColumn);
      // Every row of a mapper has the same keys, so this is the table lagging behind the code, not
      // a bad record: dead-lettering would empty the topic into the DLQ.
      if (unknown)
        throw new TxstreamError(
          'WAREHOUSE_ERROR',
          `rows for ${o.dataset}.${table} have column ${unknown.unknownColumn}, which the table does not have (migrate the table)`,
        );
    }
    return { encoder, encoded };
  }

  async function appendNow(
    stream: string,
    table: string,
    rows: readonly Record<string, unknown>[],
    offset: number,
  ): Promise<AppendOutcome> {
    // Nothing to send; the stream's end is not checked.
    if (rows.length === 0) return { kind: 'ok', nextOffset: offset };
    const { encoder, encoded } = await encode(table, rows);
    if (!encoded.ok)
      return {
        kind: 'rows-rejected',
        rows: encoded.problems.map(({ index, message }) => ({ index, message })),
      };
    const size = requestBytes(encoder, encoded.rows, encoded.bytes, stream);
    if (size > maxRequestBytes)
      throw new TxstreamError(
        'REQUEST_TOO_LARGE',
        `append of ${rows.length} rows is about ${size} bytes, over the ${maxRequestBytes}-byte request limit`,
      );

    const c = await connectionFor(stream, table, encoder);
    let res: AppendRowsResponse;
    c.busy = true;
    try {
      res = await answered(
        c.writer.appendRows({ serializedRows: encoded.rows }, offset).getResult(),
        `append of ${rows.length} rows at ${offset} to ${stream}`,
      );
    } catch (err) {
      // Whatever happened, this connection may still owe an answer: never reuse it.
      drop(c);
      if (err instanceof TxstreamError) throw err;
      // Errors without a gRPC code are the library's own (a destroyed stream, "ended with no
      // status"); a new connection cures them, so statusError makes them retriable.
      const outcome = classifyStatus(
        {
          code: (err as { code?: number }).code ?? null,
          message: `append at ${offset} to ${stream}: ${(err as Error).message}`,
        },
        err,
      );
      if (outcome instanceof TxstreamError) throw outcome;
      return outcome;
    } finally {
      c.busy = false;
    }
    const outcome = outcomeOf(res, offset, rows.length);
    if (outcome instanceof TxstreamError) throw outcome;
    const at = res.appendResult?.offset?.value;
    // Int64Value arrives as a number, a string or a Long, whose toString all give the decimal.
    if (outcome.kind === 'ok' && at !== undefined && at !== null && String(at) !== String(offset))
      o.logger?.warn(
        { stream, offset, answered: String(at) },
        'storage write append answered another offset',
      );
    return outcome;
  }

  return {
    async createStream(table) {
      if (closed) throw new TxstreamError('WAREHOUSE_ERROR', 'storage write client is closed');
      let name: string | null | undefined;
      try {
        // No retries inside the library: the caller retries WAREHOUSE_UNAVAILABLE itself.
        const ws = await client.createWriteStreamFullResponse(
          { streamType: managedwriter.CommittedStream, destinationTable: tablePath(table) },
          { timeout: timeoutMs, maxRetries: 0 },
        );
        name = ws.name;
      } catch (err) {
        throw statusError(
          (err as { code?: number }).code,
          `creating a stream on ${o.dataset}.${table}: ${(err as Error).message}`,
          err,
        );
      }
      if (!name)
        throw new TxstreamError(
          'WAREHOUSE_ERROR',
          `CreateWriteStream on ${o.dataset}.${table} named no stream`,
        );
      return name;
    },

    append(stream, table, rows, offset) {
      if (closed)
        return Promise.reject(new TxstreamError('WAREHOUSE_ERROR', 'storage write client is closed'));
      return oneAtATime(stream, () => appendNow(stream, table, rows, offset)).catch((err: unknown) => {
        // The port rejects with TxstreamErrors only; what else escapes (a tableSchema callback's
        // own error) is not understood, so it stops the writer.
        if (err instanceof TxstreamError) throw err;
        throw new TxstreamError('WAREHOUSE_ERROR', `append to ${stream}: ${String(err)}`, { cause: err });
      });
    },

    tableChanged(table) {
      encoders.delete(table);
    },

    async close() {
      closed = true;
      // Appends already under way finish first (each within its timeout), so a clean stop loses no
      // answer it could still have had.
      await Promise.all([...queues.values()]);
      for (const c of [...connections.values()]) drop(c);
      client.close();
      await client.getClient().close();
    },
  };
}
