import type { Command } from 'commander';

// Placeholder: replaced by the `txstream alerts validate` implementation.
export function registerAlertsValidate(alerts: Command): void {
  void alerts;
}
