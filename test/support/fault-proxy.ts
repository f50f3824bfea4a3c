import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import zlib from 'node:zlib';

// A reverse proxy in front of the BigQuery emulator that answers some requests itself with the
// failures BigQuery produces under load (429 rateLimitExceeded, 500 backendError, 503) or drops the
// connection. Faults are decided and served BEFORE anything is forwarded, so a faulted request never
// reaches the emulator: any duplicate row in the table then comes from the consumer, not from a
// request that was both failed and applied. Decisions come from a seeded PRNG, so a run with the same
// request sequence injects the same faults.

// 'hang' reads the request and never answers, as a server that stalls does: the client's own request
// timeout (BQ_INSERT_TIMEOUT_MS) has to end it.
export type FaultKind = 'rateLimit429' | 'backend500' | 'unavailable503' | 'drop' | 'hang';

export const FAULT_KINDS: readonly FaultKind[] = [
  'rateLimit429',
  'backend500',
  'unavailable503',
  'drop',
  'hang',
];

/** Probability of each fault per matching request; their sum must not exceed 1. */
export type FaultRates = Readonly<Record<FaultKind, number>>;

export const NO_FAULTS: FaultRates = Object.freeze({
  rateLimit429: 0,
  backend500: 0,
  unavailable503: 0,
  drop: 0,
  hang: 0,
});

export interface FaultProxyOptions {
  /** Where requests go, e.g. http://127.0.0.1:9050 (the emulator). */
  target: string;
  /** Requests this is true for may be faulted; default: BigQuery's tabledata.insertAll. */
  match?: (method: string, path: string) => boolean;
  rates?: Partial<FaultRates>;
  /** PRNG seed; default 1. */
  seed?: number;
  /** Value of the Retry-After header sent with 429 and 503; default 1. */
  retryAfterSeconds?: number;
  /**
   * Per-row rejection of insertAll rows, as BigQuery does for a row it finds invalid: a reason for a
   * row to refuse, undefined to accept it. A request holding a refused row is answered by the proxy
   * (never forwarded) the way BigQuery answers with skipInvalidRows=false: HTTP 200, insertErrors
   * 'invalid' for the refused rows and 'stopped' for all others, nothing inserted.
   */
  rejectRow?: (json: Record<string, unknown>) => string | undefined;
}

export interface FaultProxyStats {
  injected: Record<FaultKind, number>;
  /** Sum of `injected`. */
  injectedTotal: number;
  /** Every request passed to the target. */
  forwarded: number;
  /** Requests passed to the target that `match` selected (insertAll requests that reached the emulator). */
  forwardedMatching: number;
  /** Rows refused by `rejectRow`, counting each refusal (a row sent twice is refused twice). */
  rowsRejected: number;
}

export interface FaultProxy {
  /** http://127.0.0.1:<port>, for BQ_API_ENDPOINT. */
  readonly url: string;
  setRates(rates: Partial<FaultRates>): void;
  /** Delay before each matching request is forwarded (a slow network or a slow server); 0 for none. */
  setDelay(ms: number): void;
  /**
   * A network cut: while down, every open connection is reset and new ones are closed as soon as they
   * are accepted, for all requests (not only matching ones).
   */
  setDown(down: boolean): void;
  /** Stops injecting (all rates 0); forwarding continues. */
  off(): void;
  stats(): FaultProxyStats;
  close(): Promise<void>;
}

/** mulberry32: small, fast, good enough to spread faults; not for anything secret. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const isInsertAll = (_method: string, path: string): boolean => /\/insertAll(?:\?|$)/.test(path);

function checkedRates(rates: Partial<FaultRates>): FaultRates {
  const r = { ...NO_FAULTS, ...rates };
  const sum = FAULT_KINDS.reduce((s, k) => s + r[k], 0);
  if (FAULT_KINDS.some((k) => !(r[k] >= 0 && r[k] <= 1)) || sum > 1)
    throw new RangeError(`fault rates must each be in [0, 1] and sum to at most 1: ${JSON.stringify(r)}`);
  return r;
}

function bigQueryError(code: number, reason: string, status: string, message: string): string {
  return JSON.stringify({
    error: { code, message, status, errors: [{ reason, domain: 'global', message }] },
  });
}

export async function startFaultProxy(o: FaultProxyOptions): Promise<FaultProxy> {
  const target = new URL(o.target);
  if (target.protocol !== 'http:')
    throw new RangeError(`fault proxy target must be http://, got ${o.target}`);
  const match = o.match ?? isInsertAll;
  const random = seededRandom(o.seed ?? 1);
  const retryAfter = String(o.retryAfterSeconds ?? 1);
  let rates = checkedRates(o.rates ?? {});
  const injected: Record<FaultKind, number> = {
    rateLimit429: 0,
    backend500: 0,
    unavailable503: 0,
    drop: 0,
    hang: 0,
  };
  let delayMs = 0;
  let down = false;
  const sockets = new Set<Socket>();
  let forwarded = 0;
  let forwardedMatching = 0;
  let rowsRejected = 0;
  const agent = new http.Agent({ keepAlive: true });

  const pick = (): FaultKind | undefined => {
    const x = random();
    let edge = 0;
    for (const k of FAULT_KINDS) {
      edge += rates[k];
      if (x < edge) return k;
    }
    return undefined;
  };

  const answer = (
    res: http.ServerResponse,
    status: number,
    body: string,
    headers: http.OutgoingHttpHeaders,
  ) => {
    res.writeHead(status, {
      'content-type': 'application/json; charset=UTF-8',
      'content-length': Buffer.byteLength(body),
      ...headers,
    });
    res.end(body);
  };

  const inject = (kind: FaultKind, req: http.IncomingMessage, res: http.ServerResponse): void => {
    injected[kind]++;
    // Read the whole request first: the client has sent it, the emulator never sees it, and answering
    // with a request body still unread would make the fault depend on socket buffering.
    req.resume();
    req.once('end', () => {
      switch (kind) {
        case 'rateLimit429':
          return answer(
            res,
            429,
            bigQueryError(429, 'rateLimitExceeded', 'RESOURCE_EXHAUSTED', 'Exceeded rate limits (injected)'),
            { 'retry-after': retryAfter },
          );
        case 'backend500':
          return answer(
            res,
            500,
            bigQueryError(500, 'backendError', 'INTERNAL', 'Backend error (injected)'),
            {},
          );
        case 'unavailable503':
          return answer(
            res,
            503,
            bigQueryError(503, 'backendError', 'UNAVAILABLE', 'Service unavailable (injected)'),
            { 'retry-after': retryAfter },
          );
        case 'drop':
          req.socket.destroy();
          return;
        case 'hang':
          // Never answered; the socket is destroyed when the client gives up or the proxy closes.
          return;
      }
    });
  };

  const forward = (req: http.IncomingMessage, res: http.ServerResponse, matching: boolean): void => {
    forwarded++;
    if (matching) forwardedMatching++;
    const upstream = http.request(
      {
        protocol: target.protocol,
        hostname: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: target.host },
        agent,
      },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.statusMessage, up.headers);
        up.pipe(res);
        up.once('error', () => res.destroy());
      },
    );
    upstream.once('error', (err) => {
      if (res.headersSent) res.destroy();
      else
        answer(
          res,
          502,
          JSON.stringify({ error: { code: 502, message: `fault proxy: ${err.message}` } }),
          {},
        );
    });
    req.pipe(upstream);
  };

  /** Buffers an insertAll body and answers it with per-row errors if `rejectRow` refuses a row. */
  const screen = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.once('end', () => {
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = zlib.gunzipSync(body);
      const parsed = JSON.parse(body.toString('utf8')) as { rows?: { json: Record<string, unknown> }[] };
      const reasons = (parsed.rows ?? []).map((r) => o.rejectRow!(r.json));
      if (reasons.every((r) => r === undefined)) {
        forwarded++;
        forwardedMatching++;
        const headers = { ...req.headers, host: target.host, 'content-length': String(body.length) };
        delete headers['content-encoding'];
        const upstream = http.request(
          {
            hostname: target.hostname,
            port: target.port,
            method: req.method,
            path: req.url,
            headers,
            agent,
          },
          (up) => {
            res.writeHead(up.statusCode ?? 502, up.statusMessage, up.headers);
            up.pipe(res);
          },
        );
        upstream.once('error', () => res.destroy());
        upstream.end(body);
        return;
      }
      rowsRejected += reasons.filter((r) => r !== undefined).length;
      const insertErrors = reasons.map((r, index) => ({
        index,
        errors: [
          r === undefined
            ? { reason: 'stopped', location: '', debugInfo: '', message: '' }
            : { reason: 'invalid', location: '', debugInfo: '', message: r },
        ],
      }));
      answer(res, 200, JSON.stringify({ kind: 'bigquery#tableDataInsertAllResponse', insertErrors }), {});
    });
  };

  const server = http.createServer((req, res) => {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const matching = match(method, path);
    const kind = matching ? pick() : undefined;
    if (kind) inject(kind, req, res);
    else if (matching && delayMs > 0) {
      const ms = delayMs;
      req.pause();
      setTimeout(() => {
        if (req.socket.destroyed) return;
        req.resume();
        if (o.rejectRow) screen(req, res);
        else forward(req, res, matching);
      }, ms);
    } else if (matching && o.rejectRow) screen(req, res);
    else forward(req, res, matching);
  });
  server.on('connection', (socket) => {
    if (down) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  // A dropped connection's socket errors on our side too; that is the point, not a failure of the proxy.
  server.on('clientError', (_err, socket) => socket.destroy());

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    setRates(r) {
      rates = checkedRates(r);
    },
    off() {
      rates = NO_FAULTS;
      delayMs = 0;
      down = false;
    },
    setDelay(ms) {
      delayMs = ms;
    },
    setDown(d) {
      down = d;
      if (d) for (const socket of sockets) socket.destroy();
    },
    stats() {
      const copy = { ...injected };
      return {
        injected: copy,
        injectedTotal: FAULT_KINDS.reduce((s, k) => s + copy[k], 0),
        forwarded,
        forwardedMatching,
        rowsRejected,
      };
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      agent.destroy();
      await closed;
    },
  };
}
