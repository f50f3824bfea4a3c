import type { FieldError } from '../codec/validate.ts';
import type { DeliveryError, RecordResult, TopicProducer } from './batching.ts';

// The seed's ETL shape (validate → transform → publish) as a thin layer over a TopicProducer: the
// extractor's own checks, then its mapping to the Avro record, then the producer, which validates
// against the schema again and reports per record. Every extracted item ends in exactly one outcome.

export type EtlOutcome =
  | { index: number; status: 'sent'; partition: number; offset: string }
  | { index: number; status: 'invalid'; errors: FieldError[] }
  | { index: number; status: 'transform_failed'; error: string }
  | { index: number; status: 'rejected'; errors: FieldError[] }
  | { index: number; status: 'failed'; error: DeliveryError };

export interface EtlSummary {
  /** completed: everything sent; partial: some sent; failed: nothing sent (and something to send). */
  status: 'completed' | 'partial' | 'failed';
  extracted: number;
  /** Refused by the pipeline's own validate step. */
  invalid: number;
  transformFailed: number;
  /** Refused by the producer's schema validation. */
  rejected: number;
  /** Not acknowledged by the broker. */
  failed: number;
  sent: number;
  /** Same as `sent`, under the seed's name. */
  recordsProcessed: number;
  outcomes: EtlOutcome[];
}

export interface EtlPipelineOptions<I, T> {
  /** Checks on the extracted item before mapping; return field errors, empty when fine. */
  validate?: (item: I, index: number) => FieldError[] | readonly FieldError[];
  transform: (item: I, index: number) => T;
  producer: Pick<TopicProducer<T>, 'send'>;
}

export interface EtlPipeline<I> {
  process(extracted: readonly I[]): Promise<EtlSummary>;
}

export function createEtlPipeline<I, T>(options: EtlPipelineOptions<I, T>): EtlPipeline<I> {
  return {
    async process(extracted) {
      const outcomes: EtlOutcome[] = new Array(extracted.length);
      const records: T[] = [];
      const origin: number[] = [];
      extracted.forEach((item, index) => {
        const problems = options.validate?.(item, index) ?? [];
        if (problems.length > 0) {
          outcomes[index] = { index, status: 'invalid', errors: [...problems] };
          return;
        }
        try {
          records.push(options.transform(item, index));
          origin.push(index);
        } catch (err) {
          outcomes[index] = {
            index,
            status: 'transform_failed',
            error: (err as Error)?.message ?? String(err),
          };
        }
      });
      const results: RecordResult[] = records.length ? await options.producer.send(records) : [];
      for (const r of results) {
        const index = origin[r.index]!;
        outcomes[index] = { ...r, index };
      }
      const count = (s: EtlOutcome['status']) => outcomes.filter((o) => o.status === s).length;
      const sent = count('sent');
      return {
        status: sent === extracted.length ? 'completed' : sent > 0 ? 'partial' : 'failed',
        extracted: extracted.length,
        invalid: count('invalid'),
        transformFailed: count('transform_failed'),
        rejected: count('rejected'),
        failed: count('failed'),
        sent,
        recordsProcessed: sent,
        outcomes,
      };
    },
  };
}
