import type { Command } from 'commander';

// Placeholder: replaced by the `txstream alerts forward` implementation.
export function registerAlertsForward(alerts: Command): void {
  void alerts;
}
