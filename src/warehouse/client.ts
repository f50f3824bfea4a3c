import { BigQuery } from '@google-cloud/bigquery';
import { OAuth2Client } from 'google-auth-library';

// The only place that constructs BigQuery clients.

export interface BigQueryConnection {
  projectId: string;
  /** Set for an emulator (e.g. http://127.0.0.1:9050); unset for Google's endpoint. */
  apiEndpoint?: string;
  /** Service-account key file (GCP_KEY_FILE); unset means Application Default Credentials. */
  keyFile?: string;
  location?: string;
  /**
   * Retries done inside the Google client. txstream's writers retry themselves (with partitions
   * paused and offsets held), so they pass 0; other callers keep the client's default.
   */
  maxRetries?: number;
  /** Per HTTP request; unset keeps the client's default of 60 s. Only the streaming sink sets it. */
  requestTimeoutMs?: number;
}

export function createBigQuery(c: BigQueryConnection): BigQuery {
  if (c.apiEndpoint) {
    // An emulator takes any bearer token. The client must not go looking for real credentials (it
    // would fail or, worse, find a user's), so it gets an OAuth2 client holding a fixed dummy token.
    // BIGQUERY_EMULATOR_HOST would make the client rewrite endpoints on its own; we pass ours explicitly.
    const authClient = new OAuth2Client();
    authClient.setCredentials({
      access_token: 'txstream-emulator',
      expiry_date: Date.now() + 10 * 365 * 86_400_000,
    });
    return new BigQuery({
      projectId: c.projectId,
      apiEndpoint: c.apiEndpoint,
      authClient,
      ...(c.maxRetries !== undefined ? { autoRetry: c.maxRetries > 0, maxRetries: c.maxRetries } : {}),
      ...(c.location ? { location: c.location } : {}),
      ...(c.requestTimeoutMs ? { timeout: c.requestTimeoutMs } : {}),
    });
  }
  return new BigQuery({
    projectId: c.projectId,
    ...(c.keyFile ? { keyFilename: c.keyFile } : {}),
    ...(c.maxRetries !== undefined ? { autoRetry: c.maxRetries > 0, maxRetries: c.maxRetries } : {}),
    ...(c.location ? { location: c.location } : {}),
    ...(c.requestTimeoutMs ? { timeout: c.requestTimeoutMs } : {}),
  });
}
