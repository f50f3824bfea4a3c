import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

// Node's crypto can read X.509 certificates but not issue them, so the test PKI is made with the
// openssl CLI. Everything lands in the caller's (temporary) directory; nothing is committed.

const run = promisify(execFile);

export interface TestPki {
  /** PEM of the CA that signed the server certificate: what clients are told to trust. */
  caFile: string;
  /** PEM with the server's PKCS#8 key followed by its certificate: a Kafka PEM keystore. */
  serverKeystoreFile: string;
  /** PEM of a second, unrelated CA: a trust store that must not accept the server. */
  otherCaFile: string;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  try {
    await run('openssl', args, { cwd: dir, timeout: 30_000 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT')
      throw new Error('the secured-Kafka tests need the openssl command on PATH', { cause: err });
    throw new Error(`openssl ${args[0]} failed: ${e.stderr ?? e.message}`, { cause: err });
  }
}

async function selfSignedCa(dir: string, name: string): Promise<void> {
  await openssl(dir, [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.pem`,
    '-days',
    '2',
    '-subj',
    `/CN=${name}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
}

/**
 * A CA and a server certificate for 127.0.0.1 and localhost signed by it (valid two days), plus an
 * unrelated CA. Both Node (hostname check against the IP SAN) and the broker's own inter-broker client
 * (Java's endpoint identification, on by default) verify the server against these names.
 */
export async function createTestPki(dir: string): Promise<TestPki> {
  fs.mkdirSync(dir, { recursive: true });
  await Promise.all([selfSignedCa(dir, 'txstream-test-ca'), selfSignedCa(dir, 'txstream-other-ca')]);
  await openssl(dir, [
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    'server.key',
    '-out',
    'server.csr',
    '-subj',
    '/CN=localhost',
  ]);
  fs.writeFileSync(
    path.join(dir, 'server.ext'),
    [
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth,clientAuth',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '',
    ].join('\n'),
  );
  await openssl(dir, [
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'txstream-test-ca.pem',
    '-CAkey',
    'txstream-test-ca.key',
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    'server.ext',
    '-out',
    'server.pem',
  ]);
  const keystore = path.join(dir, 'server-keystore.pem');
  fs.writeFileSync(
    keystore,
    fs.readFileSync(path.join(dir, 'server.key'), 'utf8') +
      fs.readFileSync(path.join(dir, 'server.pem'), 'utf8'),
    { mode: 0o600 },
  );
  return {
    caFile: path.join(dir, 'txstream-test-ca.pem'),
    serverKeystoreFile: keystore,
    otherCaFile: path.join(dir, 'txstream-other-ca.pem'),
  };
}
