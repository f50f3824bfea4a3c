import { createTransport } from 'nodemailer';
import type { Alert, Route } from '../model.ts';
import type { Channel } from '../delivery.ts';
import { DeliveryError } from '../delivery.ts';
import { alertTime, formatNumber, isResolved, labelPairs } from './channel.ts';

// E-mail over SMTP (nodemailer). The Message-ID is derived from the alert id, so a notification sent
// twice (a redelivery after a crash) carries the same id and mail systems that deduplicate on it show
// one. The SMTP password stays inside the transport; errors carry nodemailer's code and the SMTP reply
// code only.

export interface EmailSettings {
  host: string;
  port: number;
  secure: boolean;
  username?: string;
  password?: string;
  from: string;
  to: readonly string[];
}

export interface EmailMessage {
  from: string;
  to: string[];
  subject: string;
  text: string;
  messageId: string;
  headers: Record<string, string>;
}

/** A Message-ID local part from the alert id: dot-atom characters only. */
export function messageIdOf(alert: Alert, from: string): string {
  const domain = /@([A-Za-z0-9.-]+)$/.exec(from)?.[1] ?? 'txstream.invalid';
  const local =
    alert.alert_id.replace(/[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]/g, '_').replace(/\.+/g, '.') || 'alert';
  return `<alert.${local}@${domain}>`;
}

export function emailMessage(
  alert: Alert,
  route: Route,
  settings: Pick<EmailSettings, 'from' | 'to'>,
): EmailMessage {
  const resolved = isResolved(alert);
  const subject = `[${resolved ? 'RESOLVED' : 'FIRING'}][${alert.severity}] ${alert.summary}`.replace(
    /[\r\n]+/g,
    ' ',
  );
  const lines = [
    resolved ? `RESOLVED: ${alert.summary}` : `FIRING: ${alert.summary}`,
    '',
    `Severity:   ${alert.severity}`,
    `Metric:     ${alert.metric}`,
    `Value:      ${formatNumber(alert.value)} (threshold ${formatNumber(alert.threshold)})`,
    `Fired at:   ${alertTime(alert.fired_at)}`,
    ...(alert.resolved_at !== null ? [`Resolved at: ${alertTime(alert.resolved_at)}`] : []),
    `Labels:     ${labelPairs(alert).join(', ') || '(none)'}`,
    `Rule:       ${alert.rule_name}`,
    `Source:     ${alert.source}`,
    ...(alert.runbook_url ? [`Runbook:    ${alert.runbook_url}`] : []),
    ...(alert.description ? ['', alert.description] : []),
    '',
    `Alert ${alert.alert_id}, dedup key ${alert.dedup_key}`,
  ];
  return {
    from: settings.from,
    to: [...(route.to?.length ? route.to : settings.to)],
    subject,
    text: `${lines.join('\n')}\n`,
    messageId: messageIdOf(alert, settings.from),
    headers: { 'X-Txstream-Dedup-Key': alert.dedup_key, 'X-Txstream-Alert-Status': alert.status },
  };
}

// Connection-level failures: the server may be back in a moment.
const TRANSIENT_CODES = new Set(['ECONNECTION', 'ETIMEDOUT', 'ESOCKET', 'EDNS', 'EPROXY', 'ETLS']);

/** A nodemailer error as a DeliveryError: 4yz replies and connection failures retry, 5yz are permanent. */
export function classifySmtpError(err: unknown): DeliveryError {
  const e = (err ?? {}) as { code?: unknown; responseCode?: unknown; name?: unknown };
  const code = typeof e.code === 'string' ? e.code : undefined;
  const reply = typeof e.responseCode === 'number' ? e.responseCode : undefined;
  const what = ['smtp', code, reply !== undefined ? `reply ${reply}` : undefined].filter(Boolean).join(' ');
  if (e.name === 'TimeoutError' || e.name === 'AbortError')
    return new DeliveryError('smtp: no answer in time', { retriable: true });
  if (reply !== undefined) {
    // 503 (bad sequence) is a session state problem; a new connection can succeed.
    const retriable = (reply >= 400 && reply < 500) || reply === 503;
    return new DeliveryError(what, { retriable, status: reply });
  }
  return new DeliveryError(what, { retriable: code === undefined || TRANSIENT_CODES.has(code) });
}

export function createEmailChannel(o: {
  settings: EmailSettings;
  timeoutMs: number;
}): Channel & { close(): void } {
  const s = o.settings;
  const transport = createTransport({
    host: s.host,
    port: s.port,
    secure: s.secure,
    ...(s.username ? { auth: { user: s.username, pass: s.password ?? '' } } : {}),
    connectionTimeout: o.timeoutMs,
    greetingTimeout: o.timeoutMs,
    socketTimeout: o.timeoutMs,
    // nodemailer's own logger would print envelopes and, at debug level, the AUTH exchange.
    logger: false,
    debug: false,
  });
  return {
    kind: 'email',
    async send(alert: Alert, route: Route, signal: AbortSignal) {
      const message = emailMessage(alert, route, s);
      if (message.to.length === 0)
        throw new DeliveryError('email: no recipients (route to or ALERT_EMAIL_TO)', { retriable: false });
      // nodemailer takes no AbortSignal: the race bounds the wait, the socket timeouts end the session.
      let onAbort: (() => void) | undefined;
      const aborted = new Promise<never>((_, reject) => {
        onAbort = () => reject(signal.reason ?? new DOMException('aborted', 'AbortError'));
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
      });
      try {
        await Promise.race([transport.sendMail(message), aborted]);
      } catch (err) {
        throw classifySmtpError(err);
      } finally {
        if (onAbort) signal.removeEventListener('abort', onAbort);
        aborted.catch(() => undefined);
      }
    },
    close: () => transport.close(),
  };
}
