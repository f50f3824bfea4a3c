// The one place where the local stack's server versions are pinned. The BigQuery emulator's whole
// Python environment is pinned in scripts/stack/bqemulator-requirements.txt (named here), because a
// virtualenv needs its transitive pins to be reproducible.

export const STACK_VERSIONS = {
  /** Apache Kafka broker + tools (KRaft), resolved from Maven Central with its dependencies. */
  kafka: '4.1.1',
  /** log4j2 binding so the broker logs (Kafka 4 logs through log4j2). */
  log4j: '2.24.3',
  /** slf4j 2.x: kafka-tools drags in slf4j-api 1.7, which ignores the log4j2 binding. */
  slf4j: '2.0.17',
  /** Apicurio Registry, the `all` Quarkus distribution, Confluent-compatible API at /apis/ccompat/v7. */
  apicurio: '3.3.3',
  /** bqemulator version is pinned in this requirements file, with its whole environment. */
  bqemulatorRequirements: 'scripts/stack/bqemulator-requirements.txt',
} as const;

/**
 * Tools the tests use, built once into the cache like the servers. Helm renders the chart in
 * deploy/helm/txstream (test/integration/deploy/chart.test.ts), built from the Go module proxy
 * (helm.sh/helm/v4) with the machine's Go, so no release binary is downloaded from elsewhere.
 */
export const TOOL_VERSIONS = {
  helm: 'v4.3.2',
} as const;

/** Minimum Java feature versions: Kafka 4 brokers need 17; Apicurio 3.3 is compiled for 21. */
export const JAVA_MIN = { kafka: 17, registry: 21 } as const;
export const PYTHON_MIN: readonly [number, number] = [3, 11];
