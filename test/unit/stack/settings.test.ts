import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { loadStackSettings, StackConfigError } from '../../../src/stack/settings.ts';

test('defaults match docker-compose.kafka.yml and live under ~/.cache/txstream', () => {
  const s = loadStackSettings({ HOME: '/home/u' });
  assert.deepEqual(s.ports, {
    kafka: 9092,
    kafkaController: 9093,
    registry: 8081,
    registryManagement: 8091,
    bq: 9050,
    bqGrpc: 9060,
  });
  assert.equal(s.stackDir, path.join(s.cacheDir, 'stack'));
  assert.equal(s.projectId, 'txstream-local');
});

test('every invalid setting is reported at once', () => {
  assert.throws(
    () =>
      loadStackSettings({
        TXSTREAM_KAFKA_PORT: 'abc',
        TXSTREAM_BQ_PORT: '70000',
        GCP_PROJECT_ID: 'Bad_Project',
      }),
    (err: unknown) => {
      assert.ok(err instanceof StackConfigError);
      assert.equal(err.problems.length, 3);
      assert.match(err.message, /TXSTREAM_KAFKA_PORT/);
      assert.match(err.message, /TXSTREAM_BQ_PORT/);
      assert.match(err.message, /GCP_PROJECT_ID/);
      return true;
    },
  );
});

test('two services on one port is a configuration error', () => {
  assert.throws(
    () => loadStackSettings({ TXSTREAM_REGISTRY_PORT: '9092' }),
    /port 9092 is configured for both kafka and registry/,
  );
});

/** The problems of a StackConfigError thrown by `fn`, for exact assertions. */
function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof StackConfigError, `expected a StackConfigError, got ${String(err)}`);
    return err.problems;
  }
  return assert.fail('expected a StackConfigError');
}

test('one Kafka node by default: node 1 on the Kafka ports, advertising its own port', () => {
  const s = loadStackSettings({});
  assert.deepEqual(s.kafkaNodes, [{ id: 1, unit: 'kafka', brokerPort: 9092, controllerPort: 9093 }]);
  assert.equal(s.kafkaAdvertisedPort, 9092);
  assert.equal(loadStackSettings({ TXSTREAM_KAFKA_BROKERS: '1' }).kafkaNodes.length, 1);
});

test('TXSTREAM_KAFKA_BROKERS=3: nodes 2 and 3 take the next port pairs after node 1', () => {
  const s = loadStackSettings({ TXSTREAM_KAFKA_BROKERS: '3' });
  assert.deepEqual(s.kafkaNodes, [
    { id: 1, unit: 'kafka', brokerPort: 9092, controllerPort: 9093 },
    { id: 2, unit: 'kafka-2', brokerPort: 9094, controllerPort: 9095 },
    { id: 3, unit: 'kafka-3', brokerPort: 9096, controllerPort: 9097 },
  ]);
  assert.equal(s.ports.kafka, 9092);
  assert.equal(s.ports.kafkaController, 9093);
});

test('the default pairs of nodes 2 and 3 follow moved node 1 ports', () => {
  const s = loadStackSettings({
    TXSTREAM_KAFKA_BROKERS: '3',
    TXSTREAM_KAFKA_PORT: '19092',
    TXSTREAM_KAFKA_CONTROLLER_PORT: '19093',
  });
  assert.deepEqual(
    s.kafkaNodes.map((n) => [n.unit, n.brokerPort, n.controllerPort]),
    [
      ['kafka', 19092, 19093],
      ['kafka-2', 19094, 19095],
      ['kafka-3', 19096, 19097],
    ],
  );
});

test('TXSTREAM_KAFKA_NODE_PORTS gives nodes 2 and 3 their ports', () => {
  const s = loadStackSettings({
    TXSTREAM_KAFKA_BROKERS: '3',
    TXSTREAM_KAFKA_NODE_PORTS: '29092:29093,39092:39093',
  });
  assert.deepEqual(s.kafkaNodes, [
    { id: 1, unit: 'kafka', brokerPort: 9092, controllerPort: 9093 },
    { id: 2, unit: 'kafka-2', brokerPort: 29092, controllerPort: 29093 },
    { id: 3, unit: 'kafka-3', brokerPort: 39092, controllerPort: 39093 },
  ]);
});

test('a cluster is one node or three', () => {
  for (const bad of ['2', '4', '0', 'three']) {
    const problems = problemsOf(() => loadStackSettings({ TXSTREAM_KAFKA_BROKERS: bad }));
    assert.equal(problems.length, 1, `${bad}: ${problems.join(' | ')}`);
    assert.match(problems[0]!, /^TXSTREAM_KAFKA_BROKERS: /, bad);
  }
  assert.deepEqual(
    problemsOf(() => loadStackSettings({ TXSTREAM_KAFKA_BROKERS: '2' })),
    ['TXSTREAM_KAFKA_BROKERS: must be 1 or 3'],
  );
});

test('TXSTREAM_KAFKA_NODE_PORTS must name exactly the nodes after the first', () => {
  assert.deepEqual(
    problemsOf(() =>
      loadStackSettings({ TXSTREAM_KAFKA_BROKERS: '3', TXSTREAM_KAFKA_NODE_PORTS: '29092:29093' }),
    ),
    ['TXSTREAM_KAFKA_NODE_PORTS: names 1 node(s), but TXSTREAM_KAFKA_BROKERS=3 needs 2'],
  );
  assert.deepEqual(
    problemsOf(() =>
      loadStackSettings({
        TXSTREAM_KAFKA_BROKERS: '3',
        TXSTREAM_KAFKA_NODE_PORTS: '29092:29093,39092:39093,49092:49093',
      }),
    ),
    ['TXSTREAM_KAFKA_NODE_PORTS: names 3 node(s), but TXSTREAM_KAFKA_BROKERS=3 needs 2'],
  );
  // One node has no others to name.
  assert.deepEqual(
    problemsOf(() => loadStackSettings({ TXSTREAM_KAFKA_NODE_PORTS: '29092:29093' })),
    ['TXSTREAM_KAFKA_NODE_PORTS: names 1 node(s), but TXSTREAM_KAFKA_BROKERS=1 needs 0'],
  );
});

test('TXSTREAM_KAFKA_NODE_PORTS: malformed lists and out-of-range ports are refused', () => {
  for (const bad of ['9094', '9094:9095;9096:9097', '9094:9095,', 'a:b,c:d']) {
    const problems = problemsOf(() =>
      loadStackSettings({ TXSTREAM_KAFKA_BROKERS: '3', TXSTREAM_KAFKA_NODE_PORTS: bad }),
    );
    assert.deepEqual(problems, ['TXSTREAM_KAFKA_NODE_PORTS: must look like 9094:9095,9096:9097'], bad);
  }
  assert.deepEqual(
    problemsOf(() =>
      loadStackSettings({ TXSTREAM_KAFKA_BROKERS: '3', TXSTREAM_KAFKA_NODE_PORTS: '70000:9095,0:9097' }),
    ),
    [
      "TXSTREAM_KAFKA_NODE_PORTS: node 2's ports 70000:9095 are not valid ports",
      "TXSTREAM_KAFKA_NODE_PORTS: node 3's ports 0:9097 are not valid ports",
    ],
  );
});

test('one advertised port goes with one broker only', () => {
  const one = loadStackSettings({ TXSTREAM_KAFKA_ADVERTISED_PORT: '19092' });
  assert.equal(one.kafkaAdvertisedPort, 19092);
  assert.equal(one.kafkaNodes[0]!.brokerPort, 9092, 'the broker still listens on its own port');
  assert.deepEqual(
    problemsOf(() =>
      loadStackSettings({ TXSTREAM_KAFKA_BROKERS: '3', TXSTREAM_KAFKA_ADVERTISED_PORT: '19092' }),
    ),
    [
      'TXSTREAM_KAFKA_ADVERTISED_PORT: a single advertised port needs TXSTREAM_KAFKA_BROKERS=1 (every node advertises its own)',
    ],
  );
});

test('a node port that another service has is a clash', () => {
  assert.deepEqual(
    problemsOf(() =>
      loadStackSettings({ TXSTREAM_KAFKA_BROKERS: '3', TXSTREAM_KAFKA_NODE_PORTS: '8081:29093,39092:39093' }),
    ),
    ['port 8081 is configured for both registry and kafka-2 broker'],
  );
  // Node 1's controller moved onto node 2's default broker port.
  assert.deepEqual(
    problemsOf(() =>
      loadStackSettings({ TXSTREAM_KAFKA_BROKERS: '3', TXSTREAM_KAFKA_CONTROLLER_PORT: '9094' }),
    ),
    [
      'port 9094 is configured for both kafkaController and kafka-2 broker',
      // Node 2's controller default (9094 + 2) is node 3's broker default then.
      'port 9096 is configured for both kafka-2 controller and kafka-3 broker',
    ],
  );
  assert.deepEqual(
    problemsOf(() =>
      loadStackSettings({
        TXSTREAM_KAFKA_BROKERS: '3',
        TXSTREAM_KAFKA_NODE_PORTS: '29092:29093,29093:39093',
      }),
    ),
    ['port 29093 is configured for both kafka-2 controller and kafka-3 broker'],
  );
  // The default pairs of a cluster stay clear of the other services' defaults.
  assert.doesNotThrow(() => loadStackSettings({ TXSTREAM_KAFKA_BROKERS: '3' }));
});

test('port clashes come in the same report as the other problems, and the advertised port is checked too', () => {
  // Before, a clash was reported only once everything else had been fixed: two rounds for one edit.
  assert.deepEqual(
    problemsOf(() =>
      loadStackSettings({
        TXSTREAM_KAFKA_BROKERS: '3',
        TXSTREAM_KAFKA_NODE_PORTS: '8081:29093',
      }),
    ),
    [
      'TXSTREAM_KAFKA_NODE_PORTS: names 1 node(s), but TXSTREAM_KAFKA_BROKERS=3 needs 2',
      'port 8081 is configured for both registry and kafka-2 broker',
    ],
  );
  // A proxy listens on the advertised port in front of the broker: it cannot be another service's.
  assert.deepEqual(
    problemsOf(() => loadStackSettings({ TXSTREAM_KAFKA_ADVERTISED_PORT: '8081' })),
    ['port 8081 is configured for both registry and kafkaAdvertised'],
  );
  // The broker's own port is what it advertises by default: no clash with itself.
  assert.doesNotThrow(() => loadStackSettings({ TXSTREAM_KAFKA_ADVERTISED_PORT: '9092' }));
  assert.equal(loadStackSettings({ TXSTREAM_KAFKA_ADVERTISED_PORT: '19092' }).kafkaAdvertisedPort, 19092);
});
