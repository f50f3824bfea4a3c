import { grpc } from 'google-gax';
import type { FaultKind, FaultProxyStats, FaultRates } from './fault-proxy.ts';
import { FAULT_KINDS, NO_FAULTS, seededRandom } from './fault-proxy.ts';

// The Storage Write API's gRPC service (BigQueryWrite) through a proxy that injects the failures
// BigQuery produces, between the consumer and the emulator. Messages pass as bytes: nothing is decoded,
// so the proxy cannot change what it forwards. Per AppendRows request, from a seeded PRNG:
// - rateLimit429 / backend500 / unavailable503: the call ends with RESOURCE_EXHAUSTED / INTERNAL /
//   UNAVAILABLE before the request is forwarded (nothing appended);
// - drop: the request IS forwarded and appended, then its answer is thrown away and the call ends with
//   UNAVAILABLE: the lost answer after which the consumer's retry must not append the rows twice;
// - hang: the request is forwarded and appended, and the answer never comes (the client's
//   BQ_INSERT_TIMEOUT_MS ends the wait).
// Unary calls (CreateWriteStream, GetWriteStream, FinalizeWriteStream, ...) are forwarded unchanged,
// except while the proxy is down, when every call fails with UNAVAILABLE and open calls are ended.

const SERVICE = 'google.cloud.bigquery.storage.v1.BigQueryWrite';
const UNARY = [
  'CreateWriteStream',
  'GetWriteStream',
  'FinalizeWriteStream',
  'BatchCommitWriteStreams',
  'FlushRows',
];
const bytes = (b: Buffer) => b;

export interface GrpcFaultProxy {
  /** host:port, for BQ_STORAGE_API_ENDPOINT. */
  readonly endpoint: string;
  setRates(rates: Partial<FaultRates>): void;
  /** Delay before each AppendRows request is forwarded; 0 for none. */
  setDelay(ms: number): void;
  /** A network cut: open calls end with UNAVAILABLE and new ones are refused until it is up again. */
  setDown(down: boolean): void;
  off(): void;
  /** `forwardedMatching` counts AppendRows requests forwarded; `forwarded` every call and request. */
  stats(): FaultProxyStats;
  close(): Promise<void>;
}

export async function startGrpcFaultProxy(o: { target: string; seed?: number }): Promise<GrpcFaultProxy> {
  const random = seededRandom(o.seed ?? 1);
  let rates: FaultRates = NO_FAULTS;
  let delayMs = 0;
  let down = false;
  const injected = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  let forwarded = 0;
  let forwardedAppends = 0;
  /** Open AppendRows calls, each with what ends it (and its upstream call) with a status. */
  const open = new Set<(code: grpc.status, details: string) => void>();
  const upstream = new grpc.Client(o.target, grpc.credentials.createInsecure());
  const status = (code: grpc.status, details: string) => Object.assign(new Error(details), { code, details });

  function draw(): FaultKind | undefined {
    let x = random();
    for (const k of FAULT_KINDS) {
      if (x < rates[k]) return k;
      x -= rates[k];
    }
    return undefined;
  }

  const definition: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const name of UNARY) {
    const path = `/${SERVICE}/${name}`;
    definition[name] = {
      path,
      requestStream: false,
      responseStream: false,
      requestSerialize: bytes,
      requestDeserialize: bytes,
      responseSerialize: bytes,
      responseDeserialize: bytes,
    };
    handlers[name] = (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      if (down) return callback(status(grpc.status.UNAVAILABLE, 'fault proxy: network down'));
      forwarded++;
      upstream.makeUnaryRequest(path, bytes, bytes, call.request, call.metadata, (err, res) =>
        err ? callback(err) : callback(null, res),
      );
    };
  }
  const appendPath = `/${SERVICE}/AppendRows`;
  definition.AppendRows = {
    path: appendPath,
    requestStream: true,
    responseStream: true,
    requestSerialize: bytes,
    requestDeserialize: bytes,
    responseSerialize: bytes,
    responseDeserialize: bytes,
  };
  handlers.AppendRows = (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    if (down) {
      call.emit('error', status(grpc.status.UNAVAILABLE, 'fault proxy: network down'));
      return;
    }
    forwarded++;
    const up = upstream.makeBidiStreamRequest(appendPath, bytes, bytes, call.metadata);
    let ended = false;
    /** Answers still to drop or hold back, in request order (the stream answers in order). */
    const fates: ('pass' | 'drop' | 'hang')[] = [];
    let queue = Promise.resolve();
    const end = (code: grpc.status, details: string) => {
      if (ended) return;
      ended = true;
      open.delete(end);
      up.cancel();
      call.emit('error', status(code, details));
    };
    open.add(end);
    up.on('data', (answer: Buffer) => {
      const fate = fates.shift() ?? 'pass';
      if (ended || fate === 'hang') return;
      if (fate === 'drop') return end(grpc.status.UNAVAILABLE, 'fault proxy: connection dropped');
      call.write(answer);
    });
    up.on('error', (err: grpc.ServiceError) =>
      end(err.code ?? grpc.status.UNKNOWN, err.details ?? err.message),
    );
    up.on('end', () => {
      if (ended) return;
      ended = true;
      open.delete(end);
      call.end();
    });
    call.on('data', (request: Buffer) => {
      queue = queue.then(async () => {
        if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
        if (ended) return;
        const fault = draw();
        if (fault) injected[fault]++;
        switch (fault) {
          case 'rateLimit429':
            return end(grpc.status.RESOURCE_EXHAUSTED, 'fault proxy: quota exceeded, retry later');
          case 'backend500':
            return end(grpc.status.INTERNAL, 'fault proxy: internal error');
          case 'unavailable503':
            return end(grpc.status.UNAVAILABLE, 'fault proxy: service unavailable');
          default:
            fates.push(fault === 'drop' || fault === 'hang' ? fault : 'pass');
            forwarded++;
            forwardedAppends++;
            up.write(request);
        }
      });
    });
    call.on('end', () => void queue.then(() => up.end()));
    call.on('cancelled', () => {
      ended = true;
      open.delete(end);
      up.cancel();
    });
  };

  const server = new grpc.Server();
  server.addService(definition as grpc.ServiceDefinition, handlers);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );

  return {
    endpoint: `127.0.0.1:${port}`,
    setRates(r) {
      const next = { ...NO_FAULTS, ...r };
      const sum = FAULT_KINDS.reduce((s, k) => s + next[k], 0);
      if (FAULT_KINDS.some((k) => !(next[k] >= 0 && next[k] <= 1)) || sum > 1)
        throw new RangeError(
          `fault rates must each be in [0, 1] and sum to at most 1: ${JSON.stringify(next)}`,
        );
      rates = next;
    },
    setDelay(ms) {
      delayMs = ms;
    },
    setDown(d) {
      down = d;
      if (d) for (const end of [...open]) end(grpc.status.UNAVAILABLE, 'fault proxy: network down');
    },
    off() {
      rates = NO_FAULTS;
      delayMs = 0;
    },
    stats: () => ({
      injected: { ...injected },
      injectedTotal: FAULT_KINDS.reduce((s, k) => s + injected[k], 0),
      forwarded,
      forwardedMatching: forwardedAppends,
      rowsRejected: 0,
    }),
    async close() {
      for (const end of [...open]) end(grpc.status.UNAVAILABLE, 'fault proxy closed');
      server.forceShutdown();
      upstream.close();
    },
  };
}
