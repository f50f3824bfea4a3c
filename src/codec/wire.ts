import type avro from 'avsc';
import { TxstreamError } from '../errors.ts';

// Confluent wire format: magic byte 0, the schema id as a 4-byte big-endian integer, then the Avro
// binary encoding of the value. The schema id is resolved once, when a producer starts; encoding is
// then synchronous and touches no network, so a slow registry can never stall the send path.

export const MAGIC_BYTE = 0;
export const HEADER_SIZE = 5;

export type WireEncoder = (value: unknown) => Buffer;

function assertSchemaId(schemaId: number): void {
  if (!Number.isInteger(schemaId) || schemaId < 0 || schemaId > 0x7fffffff) {
    throw new RangeError(`schema id must be an integer in [0, 2^31), got ${schemaId}`);
  }
}

/** Prepends the 5-byte header to an already encoded Avro payload. */
export function frame(schemaId: number, payload: Uint8Array): Buffer {
  assertSchemaId(schemaId);
  const out = Buffer.allocUnsafe(HEADER_SIZE + payload.length);
  out.writeUInt8(MAGIC_BYTE, 0);
  out.writeInt32BE(schemaId, 1);
  out.set(payload, HEADER_SIZE);
  return out;
}

/**
 * A synchronous encoder for one schema id. Values are written into a reusable scratch buffer after
 * the header and copied out once, so each message costs a single allocation of its exact size.
 * Throws TxstreamError(ENCODE_FAILED) when the value does not match the type; validate first.
 */
export function createWireEncoder(
  schemaId: number,
  type: avro.Type,
  initialScratchBytes = 64 * 1024,
): WireEncoder {
  assertSchemaId(schemaId);
  let scratch = Buffer.alloc(Math.max(initialScratchBytes, 64));
  scratch.writeUInt8(MAGIC_BYTE, 0);
  scratch.writeInt32BE(schemaId, 1);
  return (value) => {
    let end: number;
    try {
      end = type.encode(value, scratch, HEADER_SIZE);
      // avsc reports "did not fit" as a negative position whose magnitude is the shortfall.
      while (end < 0) {
        const grown = Buffer.alloc(Math.max(scratch.length * 2, scratch.length - end));
        scratch.copy(grown, 0, 0, HEADER_SIZE);
        scratch = grown;
        end = type.encode(value, scratch, HEADER_SIZE);
      }
    } catch (err) {
      throw new TxstreamError(
        'ENCODE_FAILED',
        `cannot encode as ${type.name ?? type.typeName}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    return Buffer.from(scratch.subarray(0, end));
  };
}

export interface WireFrame {
  schemaId: number;
  /** The Avro payload, a view into the input (not a copy). */
  payload: Buffer;
}

/** Splits a message value into schema id and payload; TxstreamError(DECODE_FAILED) when it is not framed. */
export function unframe(bytes: Uint8Array): WireFrame {
  if (bytes.length < HEADER_SIZE) {
    throw new TxstreamError(
      'DECODE_FAILED',
      `${bytes.length} bytes is too short for the Confluent wire format`,
    );
  }
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (buf[0] !== MAGIC_BYTE) {
    throw new TxstreamError('DECODE_FAILED', `magic byte is ${buf[0]}, expected ${MAGIC_BYTE}`);
  }
  return { schemaId: buf.readInt32BE(1), payload: buf.subarray(HEADER_SIZE) };
}

/**
 * Plain synchronous decode with a known writer type (tests, tools). It has none of the consumer's
 * safety limits against hostile payloads; the consumer path gets its own guarded decoder.
 */
export function decodeWith(type: avro.Type, bytes: Uint8Array): unknown {
  const { payload } = unframe(bytes);
  try {
    const { value, offset } = type.decode(payload, 0);
    if (offset !== payload.length) {
      throw new Error(offset < 0 ? 'payload is truncated' : `${payload.length - offset} trailing bytes`);
    }
    return value;
  } catch (err) {
    throw new TxstreamError(
      'DECODE_FAILED',
      `cannot decode as ${type.name ?? type.typeName}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}
