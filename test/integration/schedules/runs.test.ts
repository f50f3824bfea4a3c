import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { RunStart } from '../../../src/schedules/runs.ts';
import { createBigQueryRunRecorder } from '../../../src/schedules/runs.ts';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import { runQuery } from '../../../src/warehouse/query.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';

// ops_schedule_runs on the emulator: a tick is claimed once, whoever asks and however many ask at
// the same moment; manual runs never block a tick; finished runs read back with their outcome.

const e = testEndpoints();
const dataset = uniqueName('runs');
const bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
const recorder = createBigQueryRunRecorder({ bq, dataset });

const start = (
  instanceId: string,
  scheduledFor: Date,
  trigger: RunStart['trigger'] = 'schedule',
): RunStart => ({
  runId: randomUUID(),
  job: 'dimensions',
  trigger,
  scheduledFor,
  startedAt: new Date(),
  instanceId,
});

before(async () => {
  await bq.dataset(dataset).create();
  await recorder.ensureTable();
  await recorder.ensureTable(); // idempotent
});
after(async () => {
  await bq
    .dataset(dataset)
    .delete({ force: true })
    .catch(() => undefined);
});

test(
  'a tick is claimed once; manual runs do not count; outcomes read back',
  { timeout: 60_000 },
  async () => {
    const tick = new Date('2026-01-05T10:00:00Z');
    await recorder.start(start('operator', tick, 'manual'));
    const a = start('a', tick);
    assert.deepEqual(
      await recorder.claim(a),
      { claimed: true },
      'a manual run at the same time does not hold the tick',
    );
    assert.deepEqual(await recorder.claim(start('b', tick, 'catch-up')), { claimed: false, holder: 'a' });

    // Five instances at once on the next tick: exactly one wins, the others leave no row behind.
    const next = new Date('2026-01-05T11:00:00Z');
    const results = await Promise.all(['p', 'q', 'r', 's', 't'].map((i) => recorder.claim(start(i, next))));
    assert.equal(results.filter((r) => r.claimed).length, 1, JSON.stringify(results));
    const { rows } = await runQuery(bq, {
      sql: `SELECT COUNT(*) AS n FROM \`${dataset}.ops_schedule_runs\` WHERE scheduled_for = @t`,
      params: { t: { value: next.toISOString(), type: 'TIMESTAMP' } },
    });
    assert.equal(rows[0]?.n, 1);

    await recorder.finish({
      runId: a.runId,
      scheduledFor: tick,
      finishedAt: new Date(a.startedAt.getTime() + 1500),
      durationMs: 1500,
      outcome: 'failed',
      summary: '1 record rejected',
      rows: 7,
      details: { rejects: [{ key: 'ACH', reason: 'x' }] },
    });
    const latest = await recorder.latest(new Date('2026-01-01T00:00:00Z'));
    assert.equal(latest.length, 1);
    assert.equal(latest[0]?.scheduledFor, '2026-01-05T11:00:00.000000Z', 'the latest run is the 11:00 claim');
    const { rows: recorded } = await runQuery(bq, {
      sql: `SELECT outcome, summary, affected_rows, duration_ms, TO_JSON_STRING(details) AS details, finished_at IS NOT NULL AS finished FROM \`${dataset}.ops_schedule_runs\` WHERE run_id = @id`,
      params: { id: { value: a.runId, type: 'STRING' } },
    });
    assert.deepEqual(recorded, [
      {
        outcome: 'failed',
        summary: '1 record rejected',
        affected_rows: 7,
        duration_ms: 1500,
        details: '{"rejects":[{"key":"ACH","reason":"x"}]}',
        finished: true,
      },
    ]);
  },
);
