import type { Alert, Route } from '../model.ts';
import type { Channel } from '../delivery.ts';
import { alertTime, isResolved, postJson } from './channel.ts';

// PagerDuty Events API v2: a FIRING alert triggers, a RESOLVED one resolves, both with the alert's
// dedup_key, so PagerDuty folds repeats and redeliveries into one incident. 202 is success. The routing
// key is the credential: it is in the request body only, never in an error or log line.

export type PagerDutySeverity = 'critical' | 'error' | 'warning' | 'info';

/**
 * Our severities are critical, warning and info. One we do not know (a newer evaluator) maps to error:
 * between warning and critical, so it neither pages as critical nor sinks to the bottom.
 */
export function pagerdutySeverity(severity: string): PagerDutySeverity {
  switch (severity) {
    case 'critical':
      return 'critical';
    case 'warning':
      return 'warning';
    case 'info':
      return 'info';
    default:
      return 'error';
  }
}

export interface PagerDutyEvent {
  routing_key: string;
  event_action: 'trigger' | 'resolve';
  dedup_key: string;
  payload: {
    summary: string;
    source: string;
    severity: PagerDutySeverity;
    timestamp: string;
    component: string;
    class: string;
    custom_details: Record<string, unknown>;
  };
  links?: { href: string; text: string }[];
}

export function pagerdutyEvent(alert: Alert, routingKey: string): PagerDutyEvent {
  const resolved = isResolved(alert);
  return {
    routing_key: routingKey,
    event_action: resolved ? 'resolve' : 'trigger',
    dedup_key: alert.dedup_key,
    payload: {
      // PagerDuty truncates summaries at 1024 characters; cut here so the cut is ours.
      summary: alert.summary.slice(0, 1024),
      source: alert.source,
      severity: pagerdutySeverity(alert.severity),
      timestamp: alertTime(resolved && alert.resolved_at !== null ? alert.resolved_at : alert.fired_at),
      component: alert.rule_name,
      class: alert.metric,
      custom_details: {
        metric: alert.metric,
        value: alert.value,
        threshold: alert.threshold,
        labels: alert.labels,
        ...(alert.description ? { description: alert.description } : {}),
        fired_at: alertTime(alert.fired_at),
        ...(alert.resolved_at !== null ? { resolved_at: alertTime(alert.resolved_at) } : {}),
        alert_id: alert.alert_id,
      },
    },
    ...(alert.runbook_url ? { links: [{ href: alert.runbook_url, text: 'Runbook' }] } : {}),
  };
}

export function createPagerDutyChannel(o: {
  routingKey: string;
  eventsUrl: string;
  timeoutMs: number;
  fetch?: typeof fetch;
  now?: () => number;
}): Channel {
  const doFetch = o.fetch ?? fetch;
  const now = o.now ?? Date.now;
  return {
    kind: 'pagerduty',
    send: (alert: Alert, _route: Route, signal: AbortSignal) =>
      postJson({
        kind: 'pagerduty',
        url: o.eventsUrl,
        body: pagerdutyEvent(alert, o.routingKey),
        contentType: 'application/json',
        signal,
        timeoutMs: o.timeoutMs,
        fetch: doFetch,
        now,
        detail: (status, text) => {
          // {"status":"invalid event","message":"Event object is invalid","errors":[...]}: the message
          // says what is wrong with the event and never contains the key.
          if (status !== 400) return undefined;
          try {
            const m = (JSON.parse(text) as { message?: unknown }).message;
            return typeof m === 'string' ? m.slice(0, 200) : undefined;
          } catch {
            return undefined;
          }
        },
      }),
  };
}
