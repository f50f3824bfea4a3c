import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import kafkajs from 'kafkajs';
import { TxstreamError } from '../../../src/errors.ts';
import { classifyKafkaError } from '../../../src/kafka/producer.ts';

const {
  KafkaJSConnectionError,
  KafkaJSNumberOfRetriesExceeded,
  KafkaJSProtocolError,
  KafkaJSRequestTimeoutError,
  KafkaJSNonRetriableError,
} = kafkajs;

describe('classifyKafkaError', () => {
  const protocol = (type: string, retriable: boolean) =>
    new KafkaJSProtocolError({ type, code: 0, retriable, message: type } as never);

  it('maps kafkajs errors (also wrapped after retries ran out) to codes with a retriable flag', () => {
    const cases: [unknown, string, boolean][] = [
      [new KafkaJSConnectionError('Connection error: connect ECONNREFUSED'), 'BROKER_UNAVAILABLE', true],
      [
        new KafkaJSNumberOfRetriesExceeded(new KafkaJSConnectionError('Connection error: ECONNREFUSED'), {
          retryCount: 5,
          retryTime: 1000,
        }),
        'BROKER_UNAVAILABLE',
        true,
      ],
      [
        new KafkaJSRequestTimeoutError('Request Produce(key: 0, version: 7) timed out'),
        'DELIVERY_TIMEOUT',
        true,
      ],
      [protocol('NOT_LEADER_OR_FOLLOWER', true), 'BROKER_UNAVAILABLE', true],
      [protocol('UNKNOWN_TOPIC_OR_PARTITION', true), 'TOPIC_ERROR', false],
      [protocol('MESSAGE_TOO_LARGE', false), 'BROKER_REJECTED', false],
      [new KafkaJSNonRetriableError('something else'), 'BROKER_REJECTED', false],
    ];
    for (const [err, code, retriable] of cases) {
      const e = classifyKafkaError(err, 'sending');
      assert.equal(e.code, code, String(err));
      assert.equal(e.retriable, retriable, String(err));
      assert.match(e.message, /^sending: /);
      assert.equal(e.cause, err);
    }
  });

  it('passes txstream errors through unchanged', () => {
    const e = new TxstreamError('TOPIC_ERROR', 'no topic');
    assert.equal(classifyKafkaError(e, 'x'), e);
  });

  it('names the protocol error type in the message', () => {
    assert.match(
      classifyKafkaError(protocol('MESSAGE_TOO_LARGE', false), 'sending').message,
      /MESSAGE_TOO_LARGE/,
    );
  });
});
