import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BankingTransaction, JobExecution } from '../../src/codec/records.ts';
import { createTopicCatalogue, keyOf, TOPIC_DEFINITIONS } from '../../src/topics.ts';

describe('topic catalogue', () => {
  it('holds the topics of DESIGN.md with their keys, schemas and cleanup policies', () => {
    const c = createTopicCatalogue();
    assert.deepEqual(
      c.all().map((t) => [t.name, t.keyField, t.schemaFile, t.cleanupPolicy, t.dlqName, t.subject]),
      [
        [
          'banking.transactions.v1',
          'account_number',
          'BankingTransaction.avsc',
          'delete',
          'banking.transactions.v1.dlq',
          'banking.transactions.v1-value',
        ],
        [
          'rpa.job-executions.v1',
          'job_id',
          'JobExecution.avsc',
          'delete',
          'rpa.job-executions.v1.dlq',
          'rpa.job-executions.v1-value',
        ],
        [
          'ref.banking-networks.v1',
          'network_id',
          'BankingNetwork.avsc',
          'compact',
          'ref.banking-networks.v1.dlq',
          'ref.banking-networks.v1-value',
        ],
        ['ref.jobs.v1', 'job_id', 'JobDefinition.avsc', 'compact', 'ref.jobs.v1.dlq', 'ref.jobs.v1-value'],
        [
          'txstream.alerts.v1',
          'dedup_key',
          'Alert.avsc',
          'delete',
          'txstream.alerts.dlq',
          'txstream.alerts.v1-value',
        ],
      ],
    );
    assert.equal(c.allTopicNames().length, 10);
  });

  it('prefixes every topic, DLQ and subject', () => {
    const c = createTopicCatalogue({ prefix: 'test_1.' });
    assert.ok(c.allTopicNames().every((n) => n.startsWith('test_1.')));
    assert.equal(c.get('transactions').subject, 'test_1.banking.transactions.v1-value');
    assert.equal(c.get('alerts').dlqName, 'test_1.txstream.alerts.dlq');
    assert.throws(() => createTopicCatalogue({ prefix: 'bad prefix/' }), RangeError);
  });
});

describe('keys', () => {
  it('come from the key field of the record', () => {
    const tx = { account_number: 'DE44500105175407324931' } as BankingTransaction;
    assert.equal(keyOf(TOPIC_DEFINITIONS.transactions, tx), 'DE44500105175407324931');
    const run = { job_id: 'job-ach-1', execution_id: 'e1' } as JobExecution;
    assert.equal(keyOf(TOPIC_DEFINITIONS['job-executions'], run), 'job-ach-1');
  });

  it('must be strings', () => {
    assert.throws(
      () => keyOf(TOPIC_DEFINITIONS.transactions, { account_number: 7 } as unknown as BankingTransaction),
      TypeError,
    );
  });
});
