import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import zlib from 'node:zlib';
import { adapt, protos } from '@google-cloud/bigquery-storage';
import { grpc } from 'google-gax';

// A STAND-IN for BigQuery, for benchmarks only: it is not BigQuery and not an emulator. It answers what
// txstream's two streaming sinks send, each answer held back by a fixed delay (--delay-ms, default
// 100 ms: about what a client outside the table's region waits), and keeps no rows, only counts
// them. Its purpose is to measure the CLIENT: how many rows per second one consumer member gets
// through a warehouse whose every answer takes 100 ms, with 1 or 16 requests in flight. So:
// - requests are never serialized here: each one is answered `delay` after it arrived, however many
//   are waiting, on one connection or many (`maxInFlight` in the stats shows how many the client had);
// - the stand-in does as little per request as it can (it shares the cores with the consumer): an
//   insertAll body is not parsed, its rows are counted by their `"json":` keys.
//
// REST (the port in `rest`, for BQ_API_ENDPOINT):
// - POST .../tables/{t}/insertAll: `{"kind":"bigquery#tableDataInsertAllResponse"}` (every row
//   accepted, no insertErrors, no table check);
// - GET /standin/stats: the counters below, at once (not delayed); POST /standin/peaks/reset starts
//   the maxInFlight peaks again (between two runs against the same process);
// - anything else (tables.get for the Storage Write encoder's schema, the insertAll sink's probe, a
//   query) is forwarded, after the delay, to `upstream` (the emulator, where `txstream init` made the
//   dataset and tables); without an upstream it is answered 501.
// gRPC google.cloud.bigquery.storage.v1.BigQueryWrite (the port in `grpc`, plaintext, for
// BQ_STORAGE_API_ENDPOINT):
// - CreateWriteStream: a new stream named after the table; its table_schema converted from the
//   upstream's tables.get when there is an upstream (NOT_FOUND when the upstream has no such table);
// - AppendRows (bidi): each request answered after the delay, in order per call, with append_result
//   at the offset asked for. The stream's end moves when the request ARRIVES, as BigQuery orders a
//   connection's appends, so pipelined appends at consecutive offsets all succeed. A wrong offset is
//   refused in-band as BigQuery does: ALREADY_EXISTS "expected offset N, received M" below the end,
//   OUT_OF_RANGE above it (with a StorageError OFFSET_ALREADY_EXISTS / OFFSET_OUT_OF_RANGE detail); an
//   unknown stream NOT_FOUND (STREAM_NOT_FOUND), a finalized one INVALID_ARGUMENT (STREAM_FINALIZED);
//   no offset appends at the end; `.../streams/_default` exists for every table and takes no offset;
//   the first request of a call must carry the writer schema (INVALID_ARGUMENT otherwise);
// - GetWriteStream: the stream, its row count as its end, its table_schema as above;
// - FinalizeWriteStream: row_count; later appends are refused.
// Not implemented: PENDING streams' BatchCommitWriteStreams and FlushRows (UNIMPLEMENTED), reads,
// row-level validation (rows are counted, never decoded: no row_errors), schema updates, quotas and
// throttling, request size limits, authentication (any token passes), persistence across restarts.
//
// As a process: `node bench/standin/bigquery-standin.ts [--delay-ms 100] [--upstream http://127.0.0.1:9050]`
// prints `{"rest":"http://127.0.0.1:P","grpc":"127.0.0.1:Q","delayMs":100}` on one line once both
// ports listen (ephemeral ports on 127.0.0.1), and its stats as one JSON line when SIGTERM/SIGINT
// stops it.

const v1 = protos.google.cloud.bigquery.storage.v1;
type AppendRowsRequest = protos.google.cloud.bigquery.storage.v1.AppendRowsRequest;
type IAppendRowsResponse = protos.google.cloud.bigquery.storage.v1.IAppendRowsResponse;
type TableSchema = protos.google.cloud.bigquery.storage.v1.ITableSchema;
/** A schema as tables.get returns it. */
type RestSchema = Parameters<typeof adapt.convertBigQuerySchemaToStorageTableSchema>[0];
const StorageErrorCode = v1.StorageError.StorageErrorCode;
const SERVICE = '/google.cloud.bigquery.storage.v1.BigQueryWrite';
const STORAGE_ERROR_TYPE = 'type.googleapis.com/google.cloud.bigquery.storage.v1.StorageError';

export interface StandInOptions {
  /** Added to every answer; default 100. */
  delayMs?: number;
  /** REST base URL requests other than insertAll are forwarded to (the emulator); none: 501. */
  upstream?: string;
  /** Default 127.0.0.1. Ports are always ephemeral. */
  host?: string;
  /** How the delay is waited; injected by tests to hold answers until they release them. */
  wait?: (ms: number) => Promise<void>;
}

export interface StandInStats {
  delayMs: number;
  insertAll: { requests: number; rows: number };
  /** REST requests forwarded to the upstream (tables.get and the like). */
  forwarded: number;
  createWriteStream: number;
  appendRows: {
    /** AppendRows calls (connections) opened. */
    calls: number;
    requests: number;
    /** Rows appended (accepted requests only). */
    rows: number;
    alreadyExists: number;
    outOfRange: number;
    /** Other refused requests (unknown or finalized stream, no writer schema). */
    refused: number;
  };
  /** Requests (insertAll, appends, unary gRPC calls, forwarded REST) received and not yet answered. */
  inFlight: number;
  /** The most requests in flight at once since the start: how far the client pipelined. */
  maxInFlight: number;
  maxInFlightInsertAll: number;
  maxInFlightAppends: number;
}

export interface StandIn {
  /** http://host:port, for BQ_API_ENDPOINT. */
  readonly rest: string;
  /** host:port, for BQ_STORAGE_API_ENDPOINT. */
  readonly grpc: string;
  stats(): StandInStats;
  /** Starts the maxInFlight peaks again from the requests in flight now. */
  resetPeaks(): void;
  close(): Promise<void>;
}

interface WriteStreamState {
  name: string;
  table: string;
  type: number;
  createdMs: number;
  /** The next row offset: the stream's end. */
  next: number;
  finalized: boolean;
}

/** A tables.get schema as the Storage Write API's TableSchema (a WriteStream's table_schema), by the library's own converter. */
export function tableSchemaOf(rest: RestSchema | undefined): TableSchema {
  return adapt.convertBigQuerySchemaToStorageTableSchema(rest ?? { fields: [] });
}

/** Rows in an insertAll body, counted without parsing it: each row is `{"insertId":…,"json":{…}}`. */
export function countInsertAllRows(body: string): number {
  // A string value holding `"json":` is escaped (`\"json\":`), so only keys match; a column named
  // `json` would be counted too, and the fact tables have none.
  let n = 0;
  for (let at = body.indexOf('"json":'); at !== -1; at = body.indexOf('"json":', at + 7)) n++;
  return n;
}

/** What BigQuery answers an append at `offset` when the stream ends at `end` (null: accepted). */
export function offsetRefusal(
  offset: number,
  end: number,
): { code: number; storageCode: number; message: string } | null {
  if (offset === end) return null;
  if (offset < end)
    return {
      code: grpc.status.ALREADY_EXISTS,
      storageCode: StorageErrorCode.OFFSET_ALREADY_EXISTS,
      message: `The offset is within stream, expected offset ${end}, received ${offset}`,
    };
  return {
    code: grpc.status.OUT_OF_RANGE,
    storageCode: StorageErrorCode.OFFSET_OUT_OF_RANGE,
    message: `The offset is beyond stream, expected offset ${end}, received ${offset}`,
  };
}

function refusal(code: number, message: string, storageCode: number, entity: string): IAppendRowsResponse {
  return {
    error: {
      code,
      message,
      details: [
        {
          type_url: STORAGE_ERROR_TYPE,
          value: v1.StorageError.encode({ code: storageCode, entity, errorMessage: message }).finish(),
        },
      ],
    },
  };
}

/** projects/p/datasets/d/tables/t[/streams/s] → projects/p/datasets/d/tables/t. */
const tableOfStream = (name: string): string | undefined =>
  /^(projects\/[^/]+\/datasets\/[^/]+\/tables\/[^/]+)(?:\/streams\/[^/]+)?$/.exec(name)?.[1];

function method<Req, Res>(
  name: string,
  req: { decode(b: Uint8Array): Req },
  res: { encode(m: Res): { finish(): Uint8Array } },
  stream: boolean,
): grpc.MethodDefinition<Req, Res> {
  return {
    path: `${SERVICE}/${name}`,
    requestStream: stream,
    responseStream: stream,
    requestSerialize: () => {
      throw new Error('server side only');
    },
    requestDeserialize: (b: Buffer) => req.decode(b),
    responseSerialize: (m: Res) => Buffer.from(res.encode(m).finish()),
    responseDeserialize: () => {
      throw new Error('server side only');
    },
  };
}

const statusError = (code: grpc.status, details: string) =>
  Object.assign(new Error(details), { code, details }) as grpc.ServiceError;

export async function startBigQueryStandIn(o: StandInOptions = {}): Promise<StandIn> {
  const delayMs = o.delayMs ?? 100;
  const host = o.host ?? '127.0.0.1';
  const wait = o.wait ?? ((ms: number) => sleep(ms));
  const upstream = o.upstream ? new URL(o.upstream) : undefined;
  const agent = new http.Agent({ keepAlive: true });
  const streams = new Map<string, WriteStreamState>();
  /** Per table: its TableSchema; undefined without an upstream; null when the upstream has no such table. */
  const schemas = new Map<string, Promise<TableSchema | undefined | null>>();
  let streamSeq = 0;
  const s: StandInStats = {
    delayMs,
    insertAll: { requests: 0, rows: 0 },
    forwarded: 0,
    createWriteStream: 0,
    appendRows: { calls: 0, requests: 0, rows: 0, alreadyExists: 0, outOfRange: 0, refused: 0 },
    inFlight: 0,
    maxInFlight: 0,
    maxInFlightInsertAll: 0,
    maxInFlightAppends: 0,
  };
  let insertAllInFlight = 0;
  let appendsInFlight = 0;
  const begin = (kind?: 'insertAll' | 'append') => {
    s.inFlight++;
    s.maxInFlight = Math.max(s.maxInFlight, s.inFlight);
    if (kind === 'insertAll') s.maxInFlightInsertAll = Math.max(s.maxInFlightInsertAll, ++insertAllInFlight);
    if (kind === 'append') s.maxInFlightAppends = Math.max(s.maxInFlightAppends, ++appendsInFlight);
  };
  /** The peaks start again from what is in flight now: one benchmark run after another. */
  const resetPeaks = () => {
    s.maxInFlight = s.inFlight;
    s.maxInFlightInsertAll = insertAllInFlight;
    s.maxInFlightAppends = appendsInFlight;
  };
  const end = (kind?: 'insertAll' | 'append') => {
    s.inFlight--;
    if (kind === 'insertAll') insertAllInFlight--;
    if (kind === 'append') appendsInFlight--;
  };

  /** tables.get from the upstream, converted; undefined without an upstream; null for a 404. */
  function schemaOf(table: string): Promise<TableSchema | undefined | null> {
    if (!upstream) return Promise.resolve(undefined);
    let p = schemas.get(table);
    if (!p) {
      const [, project, dataset, id] = /^projects\/([^/]+)\/datasets\/([^/]+)\/tables\/([^/]+)$/.exec(table)!;
      p = fetch(new URL(`/bigquery/v2/projects/${project}/datasets/${dataset}/tables/${id}`, upstream), {
        headers: { authorization: 'Bearer standin' },
      }).then(async (res) => {
        if (res.status === 404) return null;
        if (!res.ok) throw new Error(`upstream tables.get ${table}: HTTP ${res.status}`);
        return tableSchemaOf(((await res.json()) as { schema?: RestSchema }).schema);
      });
      schemas.set(table, p);
      // A failed read is asked again next time; a missing table too (it may be created meanwhile).
      p.then(
        (v) => v === null && schemas.delete(table),
        () => schemas.delete(table),
      );
    }
    return p;
  }

  const writeStreamOf = async (st: WriteStreamState) => {
    const schema = await schemaOf(st.table).catch(() => undefined);
    return {
      name: st.name,
      type: st.type,
      createTime: { seconds: Math.floor(st.createdMs / 1000), nanos: (st.createdMs % 1000) * 1e6 },
      writeMode: v1.WriteStream.WriteMode.INSERT,
      location: 'US',
      ...(schema ? { tableSchema: schema } : {}),
    };
  };

  /** A unary call answered after the delay, whatever it comes to. */
  const unary =
    <Req, Res>(handle: (req: Req) => Promise<Res>) =>
    (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>) => {
      begin();
      const answer = handle(call.request).then(
        (res) => [null, res] as const,
        (err: unknown) => [err as grpc.ServiceError, null] as const,
      );
      void Promise.all([answer, wait(delayMs)]).then(([[err, res]]) => {
        end();
        if (err) callback(err);
        else callback(null, res);
      });
    };

  function appendRows(call: grpc.ServerDuplexStream<AppendRowsRequest, IAppendRowsResponse>) {
    s.appendRows.calls++;
    let streamName: string | undefined;
    let hasSchema = false;
    let pending = 0;
    let ended = false;
    let gone = false;
    call.on('cancelled', () => (gone = true));
    call.on('error', () => (gone = true));
    const reply = (res: IAppendRowsResponse) => {
      pending++;
      begin('append');
      void wait(delayMs).then(() => {
        end('append');
        pending--;
        // Answers go out in arrival order: every request waits the same delay, and timers of equal
        // duration fire in the order they were set.
        if (!gone) call.write(res);
        if (ended && pending === 0 && !gone) call.end();
      });
    };
    call.on('data', (req: AppendRowsRequest) => {
      s.appendRows.requests++;
      if (req.writeStream) streamName = req.writeStream;
      if (req.protoRows?.writerSchema?.protoDescriptor) hasSchema = true;
      const name = streamName ?? '';
      const rows = req.protoRows?.rows?.serializedRows?.length ?? 0;
      const refuse = (res: IAppendRowsResponse) => {
        s.appendRows.refused++;
        reply({ ...res, writeStream: name });
      };
      if (!hasSchema) {
        refuse({
          error: {
            code: grpc.status.INVALID_ARGUMENT,
            message: 'The first request of a connection must carry the writer schema',
          },
        });
        return;
      }
      let st = streams.get(name);
      const table = tableOfStream(name);
      if (!st && table && name.endsWith('/streams/_default')) {
        st = {
          name,
          table,
          type: v1.WriteStream.Type.COMMITTED,
          createdMs: Date.now(),
          next: 0,
          finalized: false,
        };
        streams.set(name, st);
      }
      if (!st) {
        refuse(
          refusal(
            grpc.status.NOT_FOUND,
            `Requested entity was not found: stream ${name}`,
            StorageErrorCode.STREAM_NOT_FOUND,
            name,
          ),
        );
        return;
      }
      if (st.finalized) {
        refuse(
          refusal(
            grpc.status.INVALID_ARGUMENT,
            `Stream is finalized: ${name}`,
            StorageErrorCode.STREAM_FINALIZED,
            name,
          ),
        );
        return;
      }
      const asked = req.offset ? Number(req.offset.value) : undefined;
      if (asked !== undefined && name.endsWith('/streams/_default')) {
        refuse({
          error: {
            code: grpc.status.INVALID_ARGUMENT,
            message: 'Offset is not supported on the default stream',
          },
        });
        return;
      }
      const at = asked ?? st.next;
      const refused = offsetRefusal(at, st.next);
      if (refused) {
        if (refused.code === grpc.status.ALREADY_EXISTS) s.appendRows.alreadyExists++;
        else s.appendRows.outOfRange++;
        reply({ ...refusal(refused.code, refused.message, refused.storageCode, name), writeStream: name });
        return;
      }
      st.next += rows;
      s.appendRows.rows += rows;
      reply({ appendResult: { offset: { value: at } }, writeStream: name });
    });
    call.on('end', () => {
      ended = true;
      if (pending === 0 && !gone) call.end();
    });
  }

  const service: grpc.ServiceDefinition = {
    CreateWriteStream: method('CreateWriteStream', v1.CreateWriteStreamRequest, v1.WriteStream, false),
    AppendRows: method('AppendRows', v1.AppendRowsRequest, v1.AppendRowsResponse, true),
    GetWriteStream: method('GetWriteStream', v1.GetWriteStreamRequest, v1.WriteStream, false),
    FinalizeWriteStream: method(
      'FinalizeWriteStream',
      v1.FinalizeWriteStreamRequest,
      v1.FinalizeWriteStreamResponse,
      false,
    ),
    BatchCommitWriteStreams: method(
      'BatchCommitWriteStreams',
      v1.BatchCommitWriteStreamsRequest,
      v1.BatchCommitWriteStreamsResponse,
      false,
    ),
    FlushRows: method('FlushRows', v1.FlushRowsRequest, v1.FlushRowsResponse, false),
  };
  const server = new grpc.Server();
  server.addService(service, {
    CreateWriteStream: unary(
      async (req: protos.google.cloud.bigquery.storage.v1.CreateWriteStreamRequest) => {
        s.createWriteStream++;
        const table = tableOfStream(req.parent);
        if (!table || table !== req.parent)
          throw statusError(grpc.status.INVALID_ARGUMENT, `parent must be a table: ${req.parent}`);
        if ((await schemaOf(table).catch(() => undefined)) === null)
          throw statusError(grpc.status.NOT_FOUND, `Not found: table ${table}`);
        const name = `${table}/streams/standin-${Date.now().toString(36)}-${++streamSeq}`;
        const st: WriteStreamState = {
          name,
          table,
          type:
            Number(req.writeStream?.type ?? v1.WriteStream.Type.COMMITTED) || v1.WriteStream.Type.COMMITTED,
          createdMs: Date.now(),
          next: 0,
          finalized: false,
        };
        streams.set(name, st);
        return writeStreamOf(st);
      },
    ),
    AppendRows: appendRows,
    GetWriteStream: unary(async (req: protos.google.cloud.bigquery.storage.v1.GetWriteStreamRequest) => {
      const st = streams.get(req.name);
      if (!st) throw statusError(grpc.status.NOT_FOUND, `Requested entity was not found: stream ${req.name}`);
      return writeStreamOf(st);
    }),
    FinalizeWriteStream: unary(
      async (req: protos.google.cloud.bigquery.storage.v1.FinalizeWriteStreamRequest) => {
        const st = streams.get(req.name);
        if (!st)
          throw statusError(grpc.status.NOT_FOUND, `Requested entity was not found: stream ${req.name}`);
        st.finalized = true;
        return { rowCount: st.next };
      },
    ),
    BatchCommitWriteStreams: unary(async () => {
      throw statusError(grpc.status.UNIMPLEMENTED, 'the stand-in has COMMITTED streams only');
    }),
    FlushRows: unary(async () => {
      throw statusError(grpc.status.UNIMPLEMENTED, 'the stand-in has COMMITTED streams only');
    }),
  } satisfies grpc.UntypedServiceImplementation);
  const grpcPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:0`, grpc.ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(err) : resolve(port),
    ),
  );

  const json = (res: http.ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'content-type': 'application/json; charset=UTF-8',
      'content-length': Buffer.byteLength(text),
    });
    res.end(text);
  };

  const forward = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => {
    s.forwarded++;
    const up = http.request(
      {
        hostname: upstream!.hostname,
        port: upstream!.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: upstream!.host },
        agent,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.statusMessage, answer.headers);
        answer.pipe(res);
        answer.once('error', () => res.destroy());
      },
    );
    up.once('error', (err) => {
      if (res.headersSent) res.destroy();
      else json(res, 502, { error: { code: 502, message: `stand-in upstream: ${err.message}` } });
    });
    up.end(body);
  };

  const rest = http.createServer((req, res) => {
    const path = req.url ?? '/';
    if (req.method === 'GET' && path === '/standin/stats') {
      json(res, 200, s);
      return;
    }
    if (req.method === 'POST' && path === '/standin/peaks/reset') {
      resetPeaks();
      json(res, 200, s);
      return;
    }
    const insertAll = req.method === 'POST' && /\/insertAll(?:\?|$)/.test(path);
    const kind = insertAll ? 'insertAll' : undefined;
    begin(kind);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.once('error', () => end(kind));
    req.once('end', () => {
      let body = Buffer.concat(chunks);
      void wait(delayMs).then(() => {
        end(kind);
        if (res.destroyed) return;
        if (insertAll) {
          if (req.headers['content-encoding'] === 'gzip') body = zlib.gunzipSync(body);
          s.insertAll.requests++;
          s.insertAll.rows += countInsertAllRows(body.toString('utf8'));
          json(res, 200, { kind: 'bigquery#tableDataInsertAllResponse' });
        } else if (upstream) forward(req, res, body);
        else
          json(res, 501, {
            error: {
              code: 501,
              message: `the BigQuery stand-in answers insertAll only and has no upstream for ${req.method} ${path}`,
            },
          });
      });
    });
  });
  rest.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    rest.once('error', reject);
    rest.listen(0, host, () => resolve());
  });
  const restPort = (rest.address() as AddressInfo).port;

  return {
    rest: `http://${host}:${restPort}`,
    grpc: `${host}:${grpcPort}`,
    stats: () => structuredClone(s),
    resetPeaks,
    async close() {
      rest.closeAllConnections();
      await new Promise((resolve) => rest.close(resolve));
      agent.destroy();
      server.forceShutdown();
    },
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      'delay-ms': { type: 'string', default: '100' },
      upstream: { type: 'string' },
      host: { type: 'string' },
    },
  });
  const delayMs = Number(values['delay-ms']);
  if (!Number.isInteger(delayMs) || delayMs < 0) {
    process.stderr.write(`bigquery-standin: --delay-ms takes an integer >= 0, got ${values['delay-ms']}\n`);
    process.exit(2);
  }
  const standIn = await startBigQueryStandIn({
    delayMs,
    ...(values.upstream ? { upstream: values.upstream } : {}),
    ...(values.host ? { host: values.host } : {}),
  });
  process.stdout.write(`${JSON.stringify({ rest: standIn.rest, grpc: standIn.grpc, delayMs })}\n`);
  const stop = () => {
    process.stdout.write(`${JSON.stringify(standIn.stats())}\n`);
    void standIn.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
