import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { isModelNotFound, isUnsupported } from '../../../src/analytics/warehouse.ts';
import { TxstreamError } from '../../../src/errors.ts';
import { DEFAULT_SQL_DIR, renderSql } from '../../../src/warehouse/sql.ts';

const FILES = [
  'ml_daily_volume',
  'ml_tx_volume_forecast_model',
  'ml_forecast',
  'ml_job_features',
  'ml_job_anomaly_detection_model',
  'ml_detect_anomalies',
  'ml_probe',
  'ops_forecasts',
  'ops_anomalies',
];

function featuresBlock(name: string): string {
  const text = fs.readFileSync(path.join(DEFAULT_SQL_DIR, `${name}.sql`), 'utf8');
  const m = /-- features:begin\n([\s\S]*?)\n\s*-- features:end/.exec(text);
  assert.ok(m, `${name}.sql has no features block`);
  return m[1]!
    .split('\n')
    .map((l) => l.trim())
    .join('\n');
}

describe('analytics SQL', () => {
  it('every statement renders with a dataset and names it', () => {
    for (const name of FILES) {
      const sql = renderSql(name, { dataset: 'rpa_warehouse' });
      assert.match(sql, /`rpa_warehouse\.\w+`/, name);
      assert.doesNotMatch(sql, /\$\{/, name);
    }
  });

  it('the job features are the same in the local read, the model and the detection query', () => {
    const local = featuresBlock('ml_job_features');
    assert.equal(featuresBlock('ml_job_anomaly_detection_model'), local);
    assert.equal(featuresBlock('ml_detect_anomalies'), local);
  });

  it('comments never name a query parameter (the emulator counts them)', () => {
    for (const name of FILES) {
      const text = fs.readFileSync(path.join(DEFAULT_SQL_DIR, `${name}.sql`), 'utf8');
      for (const line of text.split('\n'))
        if (line.trim().startsWith('--')) assert.doesNotMatch(line, /@\w/, `${name}: ${line}`);
    }
  });

  it('the models keep the seed options', () => {
    const arima = renderSql('ml_tx_volume_forecast_model', { dataset: 'd' });
    for (const o of [
      "model_type = 'ARIMA_PLUS'",
      "time_series_timestamp_col = 'transaction_date'",
      "time_series_data_col = 'transaction_count'",
      'auto_arima = TRUE',
      "data_frequency = 'DAILY'",
    ])
      assert.ok(arima.includes(o), o);
    const ae = renderSql('ml_job_anomaly_detection_model', { dataset: 'd' });
    for (const o of ["model_type = 'AUTOENCODER'", "activation_fn = 'RELU'", 'dropout = 0.2'])
      assert.ok(ae.includes(o), o);
    assert.match(
      renderSql('ml_detect_anomalies', { dataset: 'd' }),
      /STRUCT\(@contamination AS contamination\)/,
    );
    assert.match(renderSql('ml_forecast', { dataset: 'd' }), /@confidence_level AS confidence_level/);
  });
});

describe('BigQuery ML error classification', () => {
  const apiError = (code: number | undefined, reason: string, message: string) =>
    Object.assign(new Error(message), { code, errors: [{ reason, message }] });

  it('notImplemented (the emulator) is unsupported, through the adapter error', () => {
    const wrapped = new TxstreamError('WAREHOUSE_UNAVAILABLE', 'ML.FORECAST is not supported', {
      retriable: true,
      cause: apiError(501, 'notImplemented', 'ML.FORECAST is not supported by bqemulator.'),
    });
    assert.equal(isUnsupported(wrapped), true);
    assert.equal(
      isUnsupported(
        new TxstreamError('WAREHOUSE_UNAVAILABLE', 'backendError', {
          retriable: true,
          cause: apiError(503, 'backendError', 'x'),
        }),
      ),
      false,
    );
    assert.equal(
      isUnsupported(
        new TxstreamError('WAREHOUSE_ERROR', 'Syntax error', {
          cause: apiError(undefined, 'invalidQuery', 'Syntax error'),
        }),
      ),
      false,
    );
  });

  it("a missing model is recognised by BigQuery's message", () => {
    assert.equal(
      isModelNotFound(new TxstreamError('WAREHOUSE_ERROR', 'Not found: Model p:d.tx_volume_forecast_model')),
      true,
    );
    assert.equal(isModelNotFound(new TxstreamError('WAREHOUSE_ERROR', 'Not found: Table p:d.t')), false);
  });
});
