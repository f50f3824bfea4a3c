import type { Alert, Route } from '../model.ts';
import type { Channel } from '../delivery.ts';
import { alertTime, formatNumber, isResolved, postJson } from './channel.ts';

// Slack incoming webhook: one POST of a JSON message per alert. The webhook URL is the credential, so it
// appears in no error and no log line; Slack's own short error codes (invalid_payload,
// channel_is_archived, …) do, since they say what to fix.

const SEVERITY_ICON: Record<string, string> = {
  critical: ':red_circle:',
  warning: ':warning:',
  info: ':information_source:',
};

/** The webhook body: `text` for notifications and clients without blocks, blocks for the channel. */
export function slackMessage(alert: Alert): { text: string; blocks: unknown[] } {
  const resolved = isResolved(alert);
  const head = resolved ? `[RESOLVED] ${alert.summary}` : `[FIRING][${alert.severity}] ${alert.summary}`;
  const icon = resolved ? ':white_check_mark:' : (SEVERITY_ICON[alert.severity] ?? ':bell:');
  const labels = Object.entries(alert.labels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `\`${k}=${v}\``)
    .join(' ');
  const fields = [
    `*Severity*\n${alert.severity}`,
    `*Status*\n${resolved ? 'resolved' : 'firing'}`,
    `*Value*\n${formatNumber(alert.value)} (threshold ${formatNumber(alert.threshold)})`,
    `*Metric*\n${alert.metric}`,
    `*Fired at*\n${alertTime(alert.fired_at)}`,
    ...(resolved && alert.resolved_at !== null ? [`*Resolved at*\n${alertTime(alert.resolved_at)}`] : []),
  ];
  const blocks: unknown[] = [
    { type: 'header', text: { type: 'plain_text', text: truncate(`${head}`, 150), emoji: true } },
    {
      type: 'section',
      text: { type: 'mrkdwn', text: `${icon} ${resolved ? '*Resolved:* ' : ''}${alert.summary}` },
      fields: fields.map((text) => ({ type: 'mrkdwn', text })),
    },
  ];
  if (alert.description)
    blocks.push({ type: 'section', text: { type: 'mrkdwn', text: truncate(alert.description, 3000) } });
  const context = [...(labels ? [labels] : []), `rule \`${alert.rule_name}\``, `source ${alert.source}`];
  blocks.push({
    type: 'context',
    elements: context.map((text) => ({ type: 'mrkdwn', text: truncate(text, 3000) })),
  });
  if (alert.runbook_url)
    blocks.push({ type: 'section', text: { type: 'mrkdwn', text: `<${alert.runbook_url}|Runbook>` } });
  const text = resolved
    ? `Resolved: ${alert.summary} (${alert.metric} ${formatNumber(alert.value)}, threshold ${formatNumber(alert.threshold)})`
    : `[${alert.severity}] ${alert.summary} (${alert.metric} ${formatNumber(alert.value)}, threshold ${formatNumber(alert.threshold)})`;
  return { text, blocks };
}

function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

export function createSlackChannel(o: {
  webhookUrl: string;
  timeoutMs: number;
  fetch?: typeof fetch;
  now?: () => number;
}): Channel {
  const doFetch = o.fetch ?? fetch;
  const now = o.now ?? Date.now;
  return {
    kind: 'slack',
    send: (alert: Alert, _route: Route, signal: AbortSignal) =>
      postJson({
        kind: 'slack',
        url: o.webhookUrl,
        body: slackMessage(alert),
        contentType: 'application/json; charset=utf-8',
        signal,
        timeoutMs: o.timeoutMs,
        fetch: doFetch,
        now,
        // Slack answers errors with a bare code such as `invalid_payload`; anything else is not quoted.
        detail: (_status, text) => (/^[a-z_]{1,64}$/.test(text.trim()) ? text.trim() : undefined),
      }),
  };
}
