import type { BigQuery } from '@google-cloud/bigquery';
import type { Config } from '../config/config.ts';

// The contract between the scheduler and the jobs it runs (dimensions, views, quality, retrain,
// forecast, detection). A job does its work against the warehouse it is given and reports an outcome;
// the scheduler owns cadence, overlap, leadership, run records and metrics.

export interface JobLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface JobContext {
  config: Readonly<Config>;
  /** A client for the configured warehouse (BigQuery or the emulator). */
  bq: BigQuery;
  /** The validated dataset id (config.bigquery.dataset). */
  dataset: string;
  logger: JobLogger;
  /** The run's logical time (the tick it was scheduled for, or now for a manual run). */
  now: Date;
  /** Aborted when the process stops; long jobs check it between steps. */
  signal: AbortSignal;
}

export interface JobOutcome {
  /** false when the job ran but found a problem (failed checks, views that could not be created). */
  ok: boolean;
  /** One line for logs, the run record and `schedule run`. */
  summary: string;
  /** Rows written or affected, when meaningful. */
  rows?: number;
  /** Structured results (per view, per check, …) stored with the run record as JSON. */
  details?: unknown;
}

export interface ScheduledJob {
  /** Stable id: `dimensions`, `views`, `quality`, `retrain`, `forecast`, `detect`. */
  name: string;
  description: string;
  /** Cron expression (node-cron syntax, with seconds optional) used unless configured otherwise. */
  defaultSchedule: string;
  /** Throws only for infrastructure failures (warehouse unreachable); findings go in the outcome. */
  run(ctx: JobContext): Promise<JobOutcome>;
}
