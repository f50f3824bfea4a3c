import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

// Local stand-ins for Slack, PagerDuty and an SMTP relay, for the alert forwarder's tests: they record
// what arrives (with the time it arrived) and answer as each test scripts them, including not at all.

export interface ReceivedRequest {
  /** Date.now() when the request body was complete. */
  at: number;
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  /** The body parsed as JSON (undefined when it is not JSON). */
  json: unknown;
  text: string;
}

/** How to answer a request: a status (with headers and body), or `hold` to leave it open. */
export type Reply = { status: number; headers?: Record<string, string>; body?: string } | 'hold';

export interface HttpSink {
  /** http://127.0.0.1:<port>/<path>: the webhook URL or events URL to configure. */
  url: string;
  requests: ReceivedRequest[];
  /** Replaces the answering function; the default answers 200 `ok`. */
  answer(fn: (req: ReceivedRequest, index: number) => Reply): void;
  /** Answers every held request with `reply` (default 200). */
  release(reply?: Reply): void;
  /** Requests held open right now. */
  held(): number;
  close(): Promise<void>;
}

export async function startHttpSink(path = '/hook'): Promise<HttpSink> {
  const requests: ReceivedRequest[] = [];
  const holding: http.ServerResponse[] = [];
  let fn: (req: ReceivedRequest, index: number) => Reply = () => ({ status: 200, body: 'ok' });
  const send = (res: http.ServerResponse, reply: Exclude<Reply, 'hold'>) => {
    if (res.writableEnded || res.destroyed) return;
    res.writeHead(reply.status, { 'content-type': 'text/plain', ...reply.headers }).end(reply.body ?? '');
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      const r: ReceivedRequest = {
        at: Date.now(),
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        json,
        text,
      };
      requests.push(r);
      const reply = fn(r, requests.length - 1);
      if (reply === 'hold') {
        holding.push(res);
        res.on('close', () => holding.splice(holding.indexOf(res) >>> 0, 1));
      } else send(res, reply);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}${path}`,
    requests,
    answer: (f) => {
      fn = f;
    },
    release: (reply = { status: 200, body: 'ok' }) => {
      for (const res of holding.splice(0)) if (reply !== 'hold') send(res, reply);
    },
    held: () => holding.filter((r) => !r.destroyed).length,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export interface ReceivedMail {
  at: number;
  from: string;
  /** Envelope recipients (RCPT TO). */
  to: string[];
  /** Header names in lower case, folded lines unfolded. */
  headers: Record<string, string>;
  body: string;
}

export interface SmtpSink {
  host: string;
  port: number;
  mails: ReceivedMail[];
  close(): Promise<void>;
}

/** A plain-text SMTP server (no TLS, any or no AUTH accepted) that keeps every message. */
export async function startSmtpSink(): Promise<SmtpSink> {
  const mails: ReceivedMail[] = [];
  const server = new SMTPServer({
    secure: false,
    disabledCommands: ['STARTTLS'],
    authOptional: true,
    logger: false,
    onAuth(_auth, _session, callback) {
      callback(null, { user: 'test' });
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        const split = raw.indexOf('\r\n\r\n');
        const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, ' ');
        const headers: Record<string, string> = {};
        for (const line of head.split('\r\n')) {
          const i = line.indexOf(':');
          if (i > 0) headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
        }
        const from = session.envelope.mailFrom;
        mails.push({
          at: Date.now(),
          from: from ? from.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          headers,
          body: raw.slice(split + 4),
        });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.server.address() as AddressInfo).port;
  return {
    host: '127.0.0.1',
    port,
    mails,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
