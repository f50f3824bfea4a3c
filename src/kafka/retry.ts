import type { RetryOptions } from 'kafkajs';

// How long a Kafka client keeps retrying before it gives up, expressed as time: kafkajs counts
// retries, but what an operation must outlast is a duration. A leader failover after a broker is
// killed takes the controller's broker session timeout (9 s by default) plus an election; a paused
// leader holds each request until the request timeout (30 s) before the client refreshes its metadata
// and finds the new leader. kafkajs' default (5 retries, about 10 s) gave up inside the first: the
// cluster fault scenarios saw `txstream produce` exit on ECONNREFUSED and LEADER_NOT_AVAILABLE while
// the cluster still had two healthy replicas of every partition.
//
// The retries happen inside one kafkajs send, with the same producer id and sequence numbers, so the
// broker drops a batch that had been written before the failure instead of appending it twice.

const INITIAL_MS = 300;
const MULTIPLIER = 2;
/** Longest single wait between attempts: a failover is noticed within this much of its end. */
export const MAX_RETRY_WAIT_MS = 10_000;
/** kafkajs randomises each wait by ±20 %. */
const FACTOR = 0.2;

/**
 * kafkajs retry options whose waits add up to at least `budgetMs` even when every wait is randomised
 * to its shortest (the attempts' own time comes on top).
 */
export function retryPolicy(budgetMs: number): RetryOptions {
  let retries = 0;
  let total = 0;
  let wait = INITIAL_MS;
  while (total < budgetMs) {
    total += wait * (1 - FACTOR);
    wait = Math.min(wait * MULTIPLIER, MAX_RETRY_WAIT_MS);
    retries++;
  }
  return {
    retries,
    initialRetryTime: INITIAL_MS,
    maxRetryTime: MAX_RETRY_WAIT_MS,
    multiplier: MULTIPLIER,
    factor: FACTOR,
  };
}
