import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { BigQuery } from '@google-cloud/bigquery';
import type { Admin } from 'kafkajs';
import { PROJECT_ROOT } from '../../src/stack/settings.ts';

// What the consumer's integration tests share: the CLI as a child process, waiting on a condition,
// and counting what landed in BigQuery and in a topic.

export const TXSTREAM_BIN = path.join(PROJECT_ROOT, 'bin', 'txstream.js');

/**
 * Polls `cond` until it holds; fails the test with `what` when `ms` pass first. An error thrown by
 * `cond` fails at once (a condition that may throw while a server starts must catch that itself).
 */
export async function until(what: string, cond: () => Promise<boolean>, ms = 90_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await sleep(250);
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** The single number a `SELECT COUNT(...) AS n` query returns. */
export async function countRows(bq: BigQuery, sql: string): Promise<number> {
  // A query job, not bq.query(): the emulator answers a failed query with 200 and an error that
  // bq.query() ignores, which would read as no rows instead of failing the test.
  const [job] = await bq.createQueryJob({ query: sql });
  const [rows] = await job.getQueryResults();
  const n = Number((rows[0] as { n: number } | undefined)?.n);
  assert.ok(Number.isFinite(n), `no count from: ${sql}`);
  return n;
}

/** Records in a topic: the sum over partitions of high minus low watermark. */
export async function topicRecords(admin: Admin, topic: string): Promise<number> {
  const offsets = await admin.fetchTopicOffsets(topic);
  return offsets.reduce((n, o) => n + Number(o.high) - Number(o.low), 0);
}

/** Sample values of a Prometheus text exposition at 127.0.0.1:port/metrics, keyed by `name{labels}`. */
export async function scrapeMetrics(port: number): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.status, 200);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** `txstream consume` as a child process, with its combined output kept for failure messages. */
export function startConsume(env: NodeJS.ProcessEnv, prefix: string, group: string) {
  const child = spawn(
    process.execPath,
    [TXSTREAM_BIN, 'consume', '--topic-prefix', prefix, '--group', group],
    {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exited, output: () => output };
}

/** `txstream produce transactions --synthetic` into the topics of `prefix`; resolves once it exited 0. */
export async function produceSynthetic(
  env: NodeJS.ProcessEnv,
  prefix: string,
  count: number,
  seed: number,
  extra: string[] = [],
): Promise<void> {
  await promisify(execFile)(
    process.execPath,
    [
      TXSTREAM_BIN,
      'produce',
      'transactions',
      '--synthetic',
      '--count',
      String(count),
      '--seed',
      String(seed),
      '--topic-prefix',
      prefix,
      ...extra,
    ],
    { env, maxBuffer: 16 * 1024 * 1024 },
  );
}
