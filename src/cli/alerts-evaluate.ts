import type { Command } from 'commander';

// Placeholder: replaced by the `txstream alerts evaluate` implementation.
export function registerAlertsEvaluate(alerts: Command): void {
  void alerts;
}
