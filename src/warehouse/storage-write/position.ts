// Where a partition stands in its Storage Write stream, and how that is recorded with the Kafka
// commit. Pure: no clock, no I/O.
//
// Exactly-once rests on one fact recorded atomically with each Kafka commit: the stream the partition
// appends to, and the stream's row count when every record below the committed offset had been
// appended (its "next row"). A member that takes the partition over rebuilds the same rows from the
// committed offset (the mappers are deterministic: same rows, same order, same dead-letter decisions),
// appends the first of them at that next row, and BigQuery refuses with ALREADY_EXISTS whatever the
// previous owner had appended beyond it; the expected offset in the refusal says how many rows to
// skip. So rows are appended once however often they are replayed, and whatever the batch boundaries.
//
// The metadata is a short JSON object in the offset commit's metadata string, well under Kafka's
// default offset.metadata.max.bytes (4096): {"v":1,"s":"<stream name>","n":<next row>}.

/** A partition's stream and the row count below the committed offset. */
export interface StreamPosition {
  stream: string;
  next: number;
}

const VERSION = 1;
/** Kafka's default offset.metadata.max.bytes; a stream name is about 130 characters. */
export const MAX_METADATA_BYTES = 4096;

export function encodePosition(p: StreamPosition): string {
  if (!Number.isSafeInteger(p.next) || p.next < 0)
    throw new RangeError(`next row must be >= 0, got ${p.next}`);
  if (p.stream === '') throw new RangeError('stream name is empty');
  const text = JSON.stringify({ v: VERSION, s: p.stream, n: p.next });
  if (Buffer.byteLength(text) > MAX_METADATA_BYTES)
    throw new RangeError(`commit metadata of ${Buffer.byteLength(text)} bytes exceeds ${MAX_METADATA_BYTES}`);
  return text;
}

/**
 * Reads commit metadata back. Undefined for none (null, empty: a group committed by another sink or
 * never) and for metadata that is not ours: such a partition starts a new stream, which is safe (see
 * StreamCursor) but means the rows the previous writer left uncommitted are written again.
 */
export function decodePosition(metadata: string | null | undefined): StreamPosition | undefined {
  if (!metadata || metadata.length > MAX_METADATA_BYTES) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(metadata);
  } catch {
    return undefined;
  }
  const m = parsed as { v?: unknown; s?: unknown; n?: unknown } | null;
  if (
    !m ||
    m.v !== VERSION ||
    typeof m.s !== 'string' ||
    m.s === '' ||
    typeof m.n !== 'number' ||
    !Number.isSafeInteger(m.n) ||
    m.n < 0
  )
    return undefined;
  return { stream: m.s, next: m.n };
}

/**
 * One partition's cursor in its stream: the stream's end as this member knows it, and the Kafka
 * offset of each row appended since the last commit, so that the next row for any commit offset can
 * be told (records below the commit point may have been appended after later ones were, and dead
 * letters add no row).
 */
export class StreamCursor {
  readonly stream: string;
  /** The stream's row count as far as this member knows: where the next append goes. */
  end: number;
  /** Kafka offsets of the rows at positions base, base+1, …, end-1 (increasing). */
  private offsets: bigint[] = [];
  private base: number;
  /** The highest Kafka offset appended (or found there) through this cursor, commits included. */
  private highest: bigint | undefined;

  constructor(position: StreamPosition) {
    this.stream = position.stream;
    this.end = position.next;
    this.base = position.next;
  }

  /**
   * Rows for these Kafka offsets (increasing, above every offset recorded so far) are now in the
   * stream at [end, end + offsets.length): appended, or found already there (ALREADY_EXISTS).
   */
  appended(kafkaOffsets: readonly (string | bigint)[]): void {
    for (const o of kafkaOffsets) {
      const value = BigInt(o);
      const last = this.offsets.at(-1);
      if (last !== undefined && value <= last)
        throw new RangeError(`rows must be appended in Kafka offset order: ${value} after ${last}`);
      this.offsets.push(value);
      this.highest = value;
    }
    this.end += kafkaOffsets.length;
  }

  /**
   * The highest Kafka offset this cursor's rows reached; undefined before the first. Rows are appended
   * in offset order, so every record of the partition at or below it is in the stream already, or was
   * dead-lettered.
   */
  appendedThrough(): bigint | undefined {
    return this.highest;
  }

  /** The stream's row count below Kafka offset `commitOffset`: the `next` to record with that commit. */
  nextAt(commitOffset: string | bigint): number {
    const limit = BigInt(commitOffset);
    // Few rows are held (those since the last commit): a linear scan from the end is enough.
    let i = this.offsets.length;
    while (i > 0 && this.offsets[i - 1]! >= limit) i--;
    return this.base + i;
  }

  /** The position recorded with a commit at `commitOffset`; rows below it are forgotten. */
  committed(commitOffset: string | bigint): StreamPosition {
    const next = this.nextAt(commitOffset);
    const drop = next - this.base;
    this.offsets.splice(0, drop);
    this.base = next;
    return { stream: this.stream, next };
  }
}
