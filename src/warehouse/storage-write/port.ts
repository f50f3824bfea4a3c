// The Storage Write API as the exactly-once sink needs it: application-created COMMITTED streams and
// appends at an explicit row offset. Only client.ts talks to @google-cloud/bigquery-storage; the sink
// (sink.ts) and its pure parts depend on this port, and unit tests drive them with a fake of it.

/** What one append at an explicit offset came to. Whole-request outcomes: rows are never partly appended. */
export type AppendOutcome =
  /** Appended at the offset asked for; the stream now ends at `nextOffset`. */
  | { kind: 'ok'; nextOffset: number }
  /**
   * ALREADY_EXISTS: the offset is below the stream's end, nothing was appended. `expected` is the
   * stream's end when the service said it (BigQuery: "expected offset N"; the emulator: "next
   * expected N").
   */
  | { kind: 'already-exists'; expected?: number; message: string }
  /** OUT_OF_RANGE: the offset is beyond the stream's end, nothing was appended. */
  | { kind: 'out-of-range'; expected?: number; message: string }
  /** The stream no longer takes appends: NOT_FOUND (expired, or an emulator restarted) or finalized. */
  | { kind: 'stream-gone'; message: string }
  /**
   * The request was refused for some of its rows (INVALID_ARGUMENT with row errors, or a row the
   * encoder cannot represent): nothing was appended; `rows` index the rows of this request.
   */
  | { kind: 'rows-rejected'; rows: { index: number; message: string }[] };

export interface StorageWriteClient {
  /** Creates a COMMITTED stream on the table of the configured dataset; resolves with its full name. */
  createStream(table: string): Promise<string>;
  /**
   * Appends `rows` (objects shaped like the insertAll rows' json: the mappers' output) at row
   * `offset` of `stream`, which belongs to `table`. Resolves with the outcome; rejects only with a
   * TxstreamError: WAREHOUSE_UNAVAILABLE (retriable: UNAVAILABLE, ABORTED, INTERNAL, DEADLINE_EXCEEDED,
   * a dropped connection, no answer in time), REQUEST_TOO_LARGE (over 10 MB), WAREHOUSE_ERROR (not
   * retriable: permission, a table that does not exist, anything unknown).
   */
  append(
    stream: string,
    table: string,
    rows: readonly Record<string, unknown>[],
    offset: number,
  ): Promise<AppendOutcome>;
  /**
   * The table's schema changed (columns were added): rows are encoded with its schema read anew, and
   * each stream's connection is replaced by one with the new writer schema at its next append, after
   * that stream's appends in flight (one connection reads its writer schema once).
   */
  tableChanged?(table: string): void;
  /** Closes every connection. */
  close(): Promise<void>;
}
