import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classifySmtpError, emailMessage, messageIdOf } from '../../../src/alerts/channels/email.ts';
import {
  createPagerDutyChannel,
  pagerdutyEvent,
  pagerdutySeverity,
} from '../../../src/alerts/channels/pagerduty.ts';
import { createSlackChannel, slackMessage } from '../../../src/alerts/channels/slack.ts';
import { DeliveryError } from '../../../src/alerts/delivery.ts';
import type { Alert } from '../../../src/alerts/model.ts';

// Each channel's payload as the SaaS receives it, and how each adapter classifies the answers, with a
// fake fetch: no network, no secrets in any error.

const FIRED = Date.parse('2026-03-01T12:00:00Z') * 1000;
const FIRING: Alert = {
  alert_id: '7f1c2b1e-4a55-4d1f-9d3e-2f1a0c9b8e77',
  dedup_key: 'high_streaming_latency|topic=banking.transactions.v1',
  rule_name: 'high_streaming_latency',
  status: 'FIRING',
  severity: 'warning',
  summary: 'Streaming latency p99 12.5 s over 10 s',
  description: 'End-to-end latency from Kafka to BigQuery.',
  metric: 'streaming_latency_p99_seconds',
  value: 12.5,
  threshold: 10,
  labels: { topic: 'banking.transactions.v1', team: 'data' },
  fired_at: FIRED,
  resolved_at: null,
  runbook_url: 'https://runbooks.example.com/latency',
  source: 'scheduler/monitors',
};
const RESOLVED: Alert = {
  ...FIRING,
  alert_id: '0a0b0c0d-1111-2222-3333-444455556666',
  status: 'RESOLVED',
  value: 3.2,
  resolved_at: FIRED + 600e6,
};

const SECRET_URL = 'https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX';
const ROUTING_KEY = 'R0UT1NGKEYsecret0000000000000000';

type Call = { url: string; init: RequestInit };
function fakeFetch(answers: (Response | Error)[]) {
  const calls: Call[] = [];
  const f = (async (url: string | URL | Request, init?: RequestInit) => {
    calls.push({ url: String(url), init: init ?? {} });
    const a = answers[Math.min(calls.length - 1, answers.length - 1)]!;
    if (a instanceof Error) throw a;
    return a;
  }) as typeof fetch;
  return { fetch: f, calls };
}

function textOf(blocks: unknown[]): string {
  return JSON.stringify(blocks);
}

describe('slack', () => {
  it('a firing alert: severity, summary, value vs threshold, metric, labels, UTC time, runbook', () => {
    const m = slackMessage(FIRING);
    assert.match(m.text, /^\[warning\] Streaming latency p99 12\.5 s over 10 s/);
    assert.match(m.text, /12\.5, threshold 10/);
    const b = textOf(m.blocks);
    for (const part of [
      '*Severity*\\nwarning',
      '*Value*\\n12.5 (threshold 10)',
      '*Metric*\\nstreaming_latency_p99_seconds',
      '*Fired at*\\n2026-03-01T12:00:00.000Z',
      '`team=data` `topic=banking.transactions.v1`',
      '<https://runbooks.example.com/latency|Runbook>',
      'End-to-end latency from Kafka to BigQuery.',
    ])
      assert.ok(b.includes(part), `${part} in ${b}`);
  });

  it('a resolved alert says resolved, with its time', () => {
    const m = slackMessage(RESOLVED);
    assert.match(m.text, /^Resolved: /);
    const b = textOf(m.blocks);
    assert.ok(b.includes('[RESOLVED]'));
    assert.ok(b.includes('*Resolved at*\\n2026-03-01T12:10:00.000Z'));
    assert.ok(!b.includes('[FIRING]'));
  });

  it('no runbook, no runbook link', () => {
    assert.ok(!textOf(slackMessage({ ...FIRING, runbook_url: null }).blocks).includes('Runbook'));
  });

  it('POSTs JSON to the webhook; 429 is retriable with Retry-After; 404 is permanent; secrets stay out', async () => {
    const { fetch, calls } = fakeFetch([
      new Response('ok', { status: 200 }),
      new Response('rate_limited', { status: 429, headers: { 'retry-after': '2' } }),
      new Response('channel_not_found', { status: 404 }),
      Object.assign(new TypeError('fetch failed'), {
        cause: Object.assign(new Error(`getaddrinfo ENOTFOUND ${SECRET_URL}`), { code: 'ENOTFOUND' }),
      }),
    ]);
    const slack = createSlackChannel({ webhookUrl: SECRET_URL, timeoutMs: 1000, fetch });
    const signal = new AbortController().signal;
    await slack.send(FIRING, { channel: 'slack' }, signal);
    assert.equal(calls[0]!.url, SECRET_URL);
    assert.equal(calls[0]!.init.method, 'POST');
    assert.deepEqual(JSON.parse(String(calls[0]!.init.body)), slackMessage(FIRING));

    const errors: DeliveryError[] = [];
    for (let i = 0; i < 3; i++)
      await slack.send(FIRING, { channel: 'slack' }, signal).catch((e: DeliveryError) => errors.push(e));
    assert.deepEqual(
      errors.map((e) => [e.retriable, e.status, e.retryAfterMs, e.message]),
      [
        [true, 429, 2000, 'slack answered HTTP 429: rate_limited'],
        [false, 404, undefined, 'slack answered HTTP 404: channel_not_found'],
        [true, undefined, undefined, 'slack: network error (ENOTFOUND)'],
      ],
    );
    for (const e of errors) assert.ok(!e.message.includes('secret'));
  });
});

describe('pagerduty', () => {
  it('maps severities, unknown ones to error', () => {
    assert.deepEqual(['critical', 'warning', 'info', 'fatal'].map(pagerdutySeverity), [
      'critical',
      'warning',
      'info',
      'error',
    ]);
  });

  it('a firing alert triggers with the dedup key, details and runbook link', () => {
    assert.deepEqual(pagerdutyEvent({ ...FIRING, severity: 'critical' }, ROUTING_KEY), {
      routing_key: ROUTING_KEY,
      event_action: 'trigger',
      dedup_key: FIRING.dedup_key,
      payload: {
        summary: FIRING.summary,
        source: 'scheduler/monitors',
        severity: 'critical',
        timestamp: '2026-03-01T12:00:00.000Z',
        component: 'high_streaming_latency',
        class: 'streaming_latency_p99_seconds',
        custom_details: {
          metric: 'streaming_latency_p99_seconds',
          value: 12.5,
          threshold: 10,
          labels: { topic: 'banking.transactions.v1', team: 'data' },
          description: 'End-to-end latency from Kafka to BigQuery.',
          fired_at: '2026-03-01T12:00:00.000Z',
          alert_id: FIRING.alert_id,
        },
      },
      links: [{ href: 'https://runbooks.example.com/latency', text: 'Runbook' }],
    });
  });

  it('a resolved alert resolves the same dedup key', () => {
    const e = pagerdutyEvent(RESOLVED, ROUTING_KEY);
    assert.equal(e.event_action, 'resolve');
    assert.equal(e.dedup_key, FIRING.dedup_key);
    assert.equal(e.payload.timestamp, '2026-03-01T12:10:00.000Z');
  });

  it('202 is success; 400 is permanent with PagerDuty message; 500 retriable; the key never in errors', async () => {
    const { fetch, calls } = fakeFetch([
      new Response('{"status":"success","dedup_key":"x"}', { status: 202 }),
      new Response(
        JSON.stringify({ status: 'invalid event', message: 'Event object is invalid', errors: ['x'] }),
        { status: 400 },
      ),
      new Response('', { status: 500 }),
    ]);
    const pd = createPagerDutyChannel({
      routingKey: ROUTING_KEY,
      eventsUrl: 'https://events.example/v2/enqueue',
      timeoutMs: 1000,
      fetch,
    });
    const signal = new AbortController().signal;
    await pd.send(FIRING, { channel: 'pagerduty' }, signal);
    assert.equal(calls[0]!.url, 'https://events.example/v2/enqueue');
    assert.equal(JSON.parse(String(calls[0]!.init.body)).routing_key, ROUTING_KEY);
    const e400 = await pd.send(FIRING, { channel: 'pagerduty' }, signal).catch((e: DeliveryError) => e);
    const e500 = await pd.send(FIRING, { channel: 'pagerduty' }, signal).catch((e: DeliveryError) => e);
    assert.ok(e400 instanceof DeliveryError && e500 instanceof DeliveryError);
    assert.deepEqual(
      [e400.retriable, e400.status, e400.message],
      [false, 400, 'pagerduty answered HTTP 400: Event object is invalid'],
    );
    assert.deepEqual([e500.retriable, e500.status], [true, 500]);
    assert.ok(!`${e400.message}${e500.message}`.includes(ROUTING_KEY));
  });
});

describe('email', () => {
  const settings = { from: 'alerts@bank.example', to: ['ops@bank.example', 'data@bank.example'] };

  it('subject, recipients, body and a Message-ID derived from the alert id', () => {
    const m = emailMessage(FIRING, { channel: 'email' }, settings);
    assert.equal(m.subject, '[FIRING][warning] Streaming latency p99 12.5 s over 10 s');
    assert.deepEqual(m.to, ['ops@bank.example', 'data@bank.example']);
    assert.equal(m.from, 'alerts@bank.example');
    assert.equal(m.messageId, `<alert.${FIRING.alert_id}@bank.example>`);
    assert.equal(m.messageId, emailMessage(FIRING, { channel: 'email' }, settings).messageId);
    for (const line of [
      'Value:      12.5 (threshold 10)',
      'Metric:     streaming_latency_p99_seconds',
      'Fired at:   2026-03-01T12:00:00.000Z',
      'Labels:     team=data, topic=banking.transactions.v1',
      'Runbook:    https://runbooks.example.com/latency',
    ])
      assert.ok(m.text.includes(line), line);
  });

  it("a route's recipients replace the default; RESOLVED in the subject", () => {
    const m = emailMessage(RESOLVED, { channel: 'email', to: ['finance@bank.example'] }, settings);
    assert.deepEqual(m.to, ['finance@bank.example']);
    assert.equal(m.subject, '[RESOLVED][warning] Streaming latency p99 12.5 s over 10 s');
    assert.ok(m.text.includes('Resolved at: 2026-03-01T12:10:00.000Z'));
  });

  it('Message-IDs stay valid whatever the alert id holds', () => {
    assert.equal(messageIdOf({ ...FIRING, alert_id: 'a b<c>@d' }, 'x@y.z'), '<alert.a_b_c__d@y.z>');
  });

  it('4yz and connection failures retry, 5yz are permanent, nothing but codes in the reason', () => {
    const cases: [unknown, boolean, number | undefined][] = [
      [{ code: 'ECONNECTION' }, true, undefined],
      [{ code: 'ETIMEDOUT' }, true, undefined],
      [{ code: 'EENVELOPE', responseCode: 451 }, true, 451],
      [{ code: 'EENVELOPE', responseCode: 550 }, false, 550],
      [{ code: 'EAUTH', responseCode: 535, message: 'Invalid login: user secretpass' }, false, 535],
      [{ code: 'EPROTOCOL', responseCode: 503 }, true, 503],
    ];
    for (const [err, retriable, status] of cases) {
      const e = classifySmtpError(err);
      assert.equal(e.retriable, retriable, JSON.stringify(err));
      assert.equal(e.status, status);
      assert.ok(!e.message.includes('secret'));
    }
    assert.equal(classifySmtpError({ code: 'EAUTH', responseCode: 535 }).message, 'smtp EAUTH reply 535');
  });
});
