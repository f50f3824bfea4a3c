import type { BigQuery } from '@google-cloud/bigquery';
import { TxstreamError } from '../errors.ts';
import type { QueryParam, QueryResult } from '../warehouse/query.ts';
import { runQuery } from '../warehouse/query.ts';
import { renderSql } from '../warehouse/sql.ts';

// The run records of the scheduler in ops_schedule_runs, and the claim on a tick that keeps a tick to
// one run when two instances both believe they lead (a leader change in progress).
//
// How a tick is claimed, and what is left to chance. BigQuery has no unique constraint and no
// compare-and-set, and its DML inserts run under snapshot isolation without conflicting with each
// other. So the claim is two statements:
//   1. an INSERT … WHERE NOT EXISTS (a claim on the same job and tick), which inserts nothing when
//      another instance's claim is already visible;
//   2. a read of every claim on the tick, first started_at (then run_id) first: the scheduler runs
//      the tick only if its own claim is first, and otherwise withdraws it (DELETE) if it was inserted.
// Two claims that are both inserted and both read after both were committed agree on the winner. The
// residual race: claims A and B are inserted concurrently (neither sees the other in step 1), A reads
// before B's insert is committed and so sees only itself, and B's started_at is earlier than A's; then
// both run the tick. That needs two instances that both believe they lead at the same tick, within
// the span of two statements: only during a leader change whose old leader has not noticed yet (a
// stalled process, or a heartbeat answer slower than a heartbeat interval; see the lease in
// leader.ts). The dimensions MERGE writes nothing when run twice on the same state, so a double run
// there costs work, not rows; jobs should be written the same way (refresh, recompute, upsert).

export type RunOutcome = 'ok' | 'failed' | 'error';
export type RunTrigger = 'schedule' | 'catch-up' | 'manual';

export interface RunStart {
  runId: string;
  job: string;
  trigger: RunTrigger;
  /** The tick (cron time); the start time for manual runs. */
  scheduledFor: Date;
  startedAt: Date;
  instanceId: string;
}

export interface RunFinish {
  runId: string;
  scheduledFor: Date;
  finishedAt: Date;
  durationMs: number;
  outcome: RunOutcome;
  summary: string;
  rows?: number;
  details?: unknown;
}

export interface LastRun {
  job: string;
  runId: string;
  trigger: string;
  scheduledFor: string;
  startedAt: string;
  finishedAt: string | null;
  durationMs: number | null;
  /** running, ok, failed or error. */
  outcome: string;
  summary: string | null;
  instanceId: string;
}

export type ClaimResult = { claimed: true } | { claimed: false; holder: string };

/** Where the scheduler records its runs; the BigQuery one below, or a fake in unit tests. */
export interface RunRecorder {
  /** Creates ops_schedule_runs when it is missing. */
  ensureTable(): Promise<void>;
  /** Records a scheduled (or catch-up) run as started, only if no other run holds its tick. */
  claim(run: RunStart): Promise<ClaimResult>;
  /** Records a manual run as started; never refused. */
  start(run: RunStart): Promise<void>;
  finish(run: RunFinish): Promise<void>;
  /** The latest run per job among runs scheduled since `since`. */
  latest(since: Date): Promise<LastRun[]>;
}

export interface BigQueryRunRecorderOptions {
  bq: BigQuery;
  dataset: string;
  location?: string;
  /** Attempts of a statement that failed transiently (the warehouse unreachable, a DML conflict). */
  attempts?: number;
  sleep?: (ms: number) => Promise<void>;
}

const ts = (d: Date): QueryParam => ({ value: d.toISOString(), type: 'TIMESTAMP' });
const str = (value: string): QueryParam => ({ value, type: 'STRING' });

/**
 * DML on one table can fail when statements touching the same partition overlap ("Could not
 * serialize access … due to concurrent update"); runs of different jobs finishing together do.
 * BigQuery retries such conflicts itself a few times; this is the caller's share.
 */
function isTransient(err: unknown): boolean {
  if (err instanceof TxstreamError && err.retriable) return true;
  return /concurrent update|could not serialize/i.test((err as Error)?.message ?? '');
}

export function createBigQueryRunRecorder(o: BigQueryRunRecorderOptions): RunRecorder {
  const ids = { dataset: o.dataset };
  const attempts = o.attempts ?? 3;
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const location = o.location ? { location: o.location } : {};

  async function run(name: string, params: Record<string, QueryParam> = {}): Promise<QueryResult> {
    const sql = renderSql(name, ids);
    for (let attempt = 1; ; attempt++) {
      try {
        return await runQuery(o.bq, { sql, params, ...location });
      } catch (err) {
        if (attempt >= attempts || !isTransient(err)) throw err;
        await sleep(250 * 2 ** (attempt - 1));
      }
    }
  }

  function startParams(r: RunStart, exclusive: boolean): Record<string, QueryParam> {
    return {
      run_id: str(r.runId),
      job: str(r.job),
      triggered_by: str(r.trigger),
      scheduled_for: ts(r.scheduledFor),
      started_at: ts(r.startedAt),
      instance_id: str(r.instanceId),
      exclusive: { value: String(exclusive), type: 'BOOL' },
    };
  }

  return {
    async ensureTable() {
      await run('ops_schedule_runs');
    },

    async claim(r) {
      // Not retried: a claim whose answer was lost may have been inserted, and a retry would then see
      // it as another instance's. The tick is skipped instead; a stale 'running' row is the trace.
      await runQuery(o.bq, {
        sql: renderSql('ops_schedule_runs_insert', ids),
        params: startParams(r, true),
        ...location,
      });
      // The read decides, not the insert's affected-row count: it also settles two claims that were
      // inserted concurrently, and it works when the job statistics (the count) could not be fetched.
      const claims = await run('ops_schedule_runs_claims', {
        job: str(r.job),
        scheduled_for: ts(r.scheduledFor),
      });
      const first = claims.rows[0];
      if (first?.run_id === r.runId) return { claimed: true };
      if (claims.rows.some((c) => c.run_id === r.runId))
        await run('ops_schedule_runs_release', { run_id: str(r.runId), scheduled_for: ts(r.scheduledFor) });
      return { claimed: false, holder: String(first?.instance_id ?? 'unknown') };
    },

    async start(r) {
      await run('ops_schedule_runs_insert', startParams(r, false));
    },

    async finish(f) {
      let details = '';
      if (f.details !== undefined) {
        try {
          details = JSON.stringify(f.details) ?? '';
        } catch (err) {
          // A job's details that cannot be serialised must not lose the outcome with them.
          details = JSON.stringify({ unserialisable: (err as Error).message });
        }
      }
      await run('ops_schedule_runs_finish', {
        run_id: str(f.runId),
        scheduled_for: ts(f.scheduledFor),
        finished_at: ts(f.finishedAt),
        duration_ms: { value: String(Math.max(0, Math.round(f.durationMs))), type: 'INT64' },
        outcome: str(f.outcome),
        summary: str(f.summary),
        affected_rows: str(f.rows !== undefined && Number.isFinite(f.rows) ? String(Math.round(f.rows)) : ''),
        details: str(details),
      });
    },

    async latest(since) {
      const r = await run('ops_schedule_runs_latest', { since: ts(since) });
      return r.rows.map((row) => ({
        job: String(row.job),
        runId: String(row.run_id),
        trigger: String(row.triggered_by),
        scheduledFor: String(row.scheduled_for),
        startedAt: String(row.started_at),
        finishedAt: row.finished_at === null ? null : String(row.finished_at),
        durationMs: row.duration_ms === null ? null : Number(row.duration_ms),
        outcome: String(row.outcome),
        summary: row.summary === null ? null : String(row.summary),
        instanceId: String(row.instance_id),
      }));
    },
  };
}
