import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { EventEmitter } from 'node:events';
import { after, before, describe, it } from 'node:test';
import kafkajs from 'kafkajs';
import type { Kafka } from 'kafkajs';
import { isTxstreamError } from '../../../src/errors.ts';
import { authFailure, createKafka, createTrackedConsumer } from '../../../src/kafka/client.ts';
import { freePorts } from '../../support/ports.ts';
import { createTestPki } from '../../support/security/certs.ts';
import type { TestPki } from '../../support/security/certs.ts';

const { KafkaJSNumberOfRetriesExceeded, KafkaJSConnectionError } = kafkajs;
// As kafkajs builds them: a protocol error from a broker's error code, wrapped by its retrier.
const KafkaJSProtocolError = kafkajs.KafkaJSProtocolError as unknown as new (e: {
  type: string;
  code: number;
  retriable: boolean;
  message: string;
}) => Error;
const KafkaJSNonRetriableError = kafkajs.KafkaJSNonRetriableError as unknown as new (
  e: Error,
  o?: { cause?: Error },
) => Error;
// Its declared constructor takes no arguments; the class takes a message like every kafkajs error.
const KafkaJSSASLAuthenticationError = kafkajs.KafkaJSSASLAuthenticationError as unknown as new (
  message: string,
) => Error;

describe('authFailure', () => {
  const connection = {
    brokers: ['b1:9093', 'b2:9093'],
    clientId: 't',
    sasl: { mechanism: 'scram-sha-512' as const, username: 'svc', password: 'hunter2-secret' },
  };

  it('names the mechanism, the user, the brokers and the settings; keeps the broker reason without the password', () => {
    const refusal = new KafkaJSSASLAuthenticationError(
      'SASL SCRAM SHA512 authentication failed: bad proof for hunter2-secret',
    );
    const wrapped = new KafkaJSNumberOfRetriesExceeded(refusal, { retryCount: 0, retryTime: 1 });
    for (const err of [refusal, wrapped]) {
      const e = authFailure(err, connection);
      assert.ok(isTxstreamError(e, 'BROKER_REJECTED'));
      assert.equal(e.retriable, false);
      assert.equal(
        e.message,
        'Kafka SASL authentication failed (mechanism SCRAM-SHA-512, user svc, brokers b1:9093,b2:9093): ' +
          'SASL SCRAM SHA512 authentication failed: bad proof for ***; ' +
          'check KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD(_FILE)',
      );
    }
  });

  it('leaves every other error alone', () => {
    assert.equal(
      authFailure(new KafkaJSConnectionError('Connection error: ECONNREFUSED'), connection),
      undefined,
    );
    assert.equal(authFailure(new Error('x'), connection), undefined);
    const { sasl: _none, ...noSasl } = connection;
    assert.equal(authFailure(new KafkaJSSASLAuthenticationError('refused'), noSasl), undefined);
  });
});

// A TLS server that is not Kafka: the trust check happens before kafkajs sends a byte, so what the
// server would answer never matters for the cases below.
describe('the TLS trust check before connecting', () => {
  let dir: string;
  let pki: TestPki;
  let server: tls.Server;
  let port: number;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'txstream-client-tls-'));
    pki = await createTestPki(dir);
    const pem = fs.readFileSync(pki.serverKeystoreFile, 'utf8');
    server = tls.createServer({ key: pem, cert: pem }, (socket) => socket.destroy());
    // Every loopback address, so that 127.0.0.2 (not in the certificate) reaches it too.
    await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    await new Promise((r) => server.close(r));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function connectError(broker: string, ssl: true | { ca: string }): Promise<unknown> {
    const admin = createKafka({ brokers: [broker], clientId: 't', ssl, retries: 0 }).admin();
    try {
      await admin.connect();
    } catch (err) {
      return err;
    } finally {
      await admin.disconnect();
    }
    return assert.fail('connected');
  }

  it('the system trust store does not trust a private CA: refused, naming KAFKA_SSL_CA_FILE', async () => {
    const err = await connectError(`127.0.0.1:${port}`, true);
    assert.ok(isTxstreamError(err, 'BROKER_REJECTED'), String(err));
    assert.equal(err.retriable, false);
    assert.match(
      err.message,
      new RegExp(
        `^Kafka TLS: the certificate of broker 127\\.0\\.0\\.1:${port} is not trusted \\(UNABLE_TO_VERIFY_LEAF_SIGNATURE: unable to verify the first certificate\\); set KAFKA_SSL_CA_FILE`,
      ),
    );
  });

  it('the host name is verified too: a trusted certificate for another address is refused', async () => {
    const err = await connectError(`127.0.0.2:${port}`, { ca: fs.readFileSync(pki.caFile, 'utf8') });
    assert.ok(isTxstreamError(err, 'BROKER_REJECTED'), String(err));
    assert.match(err.message, /not trusted \(ERR_TLS_CERT_ALTNAME_INVALID: .*127\.0\.0\.2/);
  });

  it('with the CA the check passes and kafkajs takes over (this server is no Kafka: a connection error)', async () => {
    const err = await connectError(`127.0.0.1:${port}`, { ca: fs.readFileSync(pki.caFile, 'utf8') });
    assert.ok(!isTxstreamError(err), String(err));
    assert.doesNotMatch(String((err as Error).message), /not trusted|certificate/);
  });

  it('an unreachable broker is not a trust problem: kafkajs reports it as a connection error', async () => {
    const [closed] = await freePorts(1);
    const err = await connectError(`127.0.0.1:${closed}`, true);
    assert.ok(!isTxstreamError(err), String(err));
    assert.match(String((err as Error).message), /ECONNREFUSED|Connection error/);
  });
});

// A kafkajs consumer reduced to its events: what createTrackedConsumer listens to. kafkajs emits CRASH
// after it disconnected the member; restart says whether it will start it again by itself (a retriable
// error, or one that exhausted its retries) or never (a non-retriable error: an ACL, a refused password
// at a reconnect, a TypeError escaping eachBatch).
function fakeKafka() {
  const emitter = new EventEmitter();
  const events = { GROUP_JOIN: 'consumer.group_join', STOP: 'consumer.stop', CRASH: 'consumer.crash' };
  const consumer = {
    events,
    on: (name: string, fn: (e: unknown) => void) => emitter.on(name, fn),
  };
  const kafka = { consumer: () => consumer } as unknown as Kafka;
  return {
    kafka,
    join: () => emitter.emit(events.GROUP_JOIN, { payload: {} }),
    crash: (error: Error, restart: boolean) =>
      emitter.emit(events.CRASH, { payload: { error, groupId: 'g', restart } }),
  };
}

describe('createTrackedConsumer: a crash', () => {
  const logged: string[] = [];
  const logger = { error: (_: object, msg: string) => void logged.push(msg) };
  const connection = {
    brokers: ['b1:9093'],
    clientId: 't',
    sasl: { mechanism: 'scram-sha-512' as const, username: 'svc', password: 'hunter2-secret' },
  };
  function tracked() {
    const k = fakeKafka();
    const fatal: Error[] = [];
    const t = createTrackedConsumer(k.kafka, {
      groupId: 'txstream-warehouse',
      sessionTimeoutMs: 30_000,
      heartbeatIntervalMs: 3000,
      logger,
      connection,
      onFatal: (err) => void fatal.push(err),
    });
    return { ...k, t, fatal };
  }
  const groupRefused = () => {
    const protocol = new KafkaJSProtocolError({
      type: 'GROUP_AUTHORIZATION_FAILED',
      code: 30,
      retriable: false,
      message: 'Not authorized to access group: Group authorization failed',
    });
    return new KafkaJSNonRetriableError(protocol, { cause: protocol });
  };

  it('that kafkajs restarts (restart: true) is not fatal: not ready until it rejoins, alive throughout', () => {
    const { t, fatal, join, crash } = tracked();
    join();
    assert.equal(t.ready(), true);
    const refused = new KafkaJSConnectionError('Connection error: ECONNREFUSED');
    crash(new KafkaJSNumberOfRetriesExceeded(refused, { retryCount: 5, retryTime: 1000 }), true);
    assert.equal(t.ready(), false);
    assert.equal(t.alive(), true);
    assert.deepEqual(fatal, []);
    join();
    assert.equal(t.ready(), true);
  });

  it('that kafkajs does not restart (restart: false) is fatal once, names the cause, and ends liveness', () => {
    const { t, fatal, join, crash } = tracked();
    join();
    crash(groupRefused(), false);
    assert.equal(t.ready(), false);
    assert.equal(t.alive(), false);
    assert.equal(fatal.length, 1);
    const err = fatal[0]!;
    assert.ok(isTxstreamError(err, 'BROKER_REJECTED'), String(err));
    assert.equal(err.retriable, false);
    assert.equal(
      err.message,
      'the Kafka consumer of group txstream-warehouse crashed and kafkajs does not restart it: ' +
        'GROUP_AUTHORIZATION_FAILED: Not authorized to access group: Group authorization failed; ' +
        'check the ACLs of user svc (READ on the group and on its topics)',
    );
    // Nothing brings it back: a late join does not make it ready, a second crash is not reported again.
    join();
    assert.equal(t.ready(), false);
    crash(groupRefused(), false);
    assert.equal(fatal.length, 1);
    assert.equal(t.alive(), false);
  });

  it('a refused password at a reconnect names the SASL settings and never the password', () => {
    const { fatal, crash } = tracked();
    crash(
      new KafkaJSSASLAuthenticationError('SASL SCRAM SHA512 authentication failed: bad hunter2-secret'),
      false,
    );
    assert.equal(fatal.length, 1);
    assert.ok(isTxstreamError(fatal[0], 'BROKER_REJECTED'));
    assert.match(
      fatal[0]!.message,
      /crashed and kafkajs does not restart it: Kafka SASL authentication failed/,
    );
    assert.match(fatal[0]!.message, /KAFKA_SASL_PASSWORD\(_FILE\)$/);
    assert.ok(!fatal[0]!.message.includes('hunter2-secret'));
  });

  it('a TypeError escaping eachBatch is named with its class and message', () => {
    const { fatal, crash } = tracked();
    const bug = new TypeError("Cannot read properties of undefined (reading 'offset')");
    crash(new KafkaJSNonRetriableError(bug, { cause: bug }), false);
    assert.equal(fatal.length, 1);
    assert.equal(
      fatal[0]!.message,
      'the Kafka consumer of group txstream-warehouse crashed and kafkajs does not restart it: ' +
        "TypeError: Cannot read properties of undefined (reading 'offset')",
    );
    assert.equal(fatal[0]!.cause, bug);
  });

  it('a crash after stopping() began is still reported (the stop did not complete cleanly)', () => {
    const { t, fatal, crash } = tracked();
    t.stopping();
    crash(groupRefused(), false);
    assert.equal(fatal.length, 1);
    assert.equal(t.alive(), false);
  });
});
