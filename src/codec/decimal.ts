import avro from 'avsc';

// Money travels as decimal strings ("1234.50") in TypeScript and as Avro `decimal` bytes on the wire.
// Going through BigInt keeps every digit: a JavaScript number cannot hold 18 significant digits.

const DECIMAL_PATTERN = /^(-?)(\d+)(?:\.(\d+))?$/;

export class DecimalFormatError extends Error {
  override name = 'DecimalFormatError';
}

/**
 * Parses a plain decimal string into its unscaled integer at `scale`.
 * Rejects exponents, signs other than a leading '-', more fraction digits than `scale` (rounding money
 * silently is a bug upstream) and, when `precision` is given, values needing more digits than that.
 */
export function parseDecimal(value: string, scale: number, precision?: number): bigint {
  assertScale(scale, precision);
  const match = DECIMAL_PATTERN.exec(value);
  if (match === null) {
    throw new DecimalFormatError(`not a plain decimal number: ${JSON.stringify(value)}`);
  }
  const negative = match[1] === '-';
  const integerDigits = match[2] ?? '';
  const fractionDigits = match[3] ?? '';
  if (fractionDigits.length > scale) {
    throw new DecimalFormatError(
      `${JSON.stringify(value)} has ${fractionDigits.length} fraction digits, scale allows ${scale}`,
    );
  }
  const magnitude = BigInt(integerDigits + fractionDigits.padEnd(scale, '0'));
  if (precision !== undefined && magnitude >= 10n ** BigInt(precision)) {
    throw new DecimalFormatError(
      `${JSON.stringify(value)} exceeds decimal(${precision},${scale}): at most ${precision - scale} integer digits`,
    );
  }
  return negative ? -magnitude : magnitude;
}

/** Formats an unscaled integer with exactly `scale` fraction digits. */
export function formatDecimal(unscaled: bigint, scale: number): string {
  assertScale(scale);
  const negative = unscaled < 0n;
  const digits = (negative ? -unscaled : unscaled).toString().padStart(scale + 1, '0');
  const integerPart = digits.slice(0, digits.length - scale);
  const text = scale === 0 ? integerPart : `${integerPart}.${digits.slice(digits.length - scale)}`;
  return negative ? `-${text}` : text;
}

/** Avro decimal encoding: the unscaled value as a minimal two's-complement big-endian integer. */
export function unscaledToBytes(unscaled: bigint): Buffer {
  // Smallest byte count whose signed range holds the value; 0 still needs one byte, as in Java's
  // BigInteger.toByteArray, which is what most Avro implementations produce.
  let byteLength = 1;
  while (unscaled >= 1n << BigInt(8 * byteLength - 1) || unscaled < -(1n << BigInt(8 * byteLength - 1))) {
    byteLength++;
  }
  const twos = unscaled < 0n ? (1n << BigInt(8 * byteLength)) + unscaled : unscaled;
  return Buffer.from(twos.toString(16).padStart(byteLength * 2, '0'), 'hex');
}

export function bytesToUnscaled(bytes: Uint8Array): bigint {
  if (bytes.length === 0) {
    // The spec does not define an empty encoding; Java decodes it as an error, so do we.
    throw new DecimalFormatError('empty byte sequence is not a decimal');
  }
  const unsigned = BigInt(`0x${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('hex')}`);
  const firstByte = bytes[0] ?? 0;
  return firstByte & 0x80 ? unsigned - (1n << BigInt(8 * bytes.length)) : unsigned;
}

export function decimalToBytes(value: string, scale: number, precision?: number): Buffer {
  return unscaledToBytes(parseDecimal(value, scale, precision));
}

export function bytesToDecimal(bytes: Uint8Array, scale: number): string {
  return formatDecimal(bytesToUnscaled(bytes), scale);
}

export function isDecimalString(value: unknown, precision: number, scale: number): value is string {
  if (typeof value !== 'string') return false;
  try {
    parseDecimal(value, scale, precision);
    return true;
  } catch {
    return false;
  }
}

function assertScale(scale: number, precision?: number): void {
  if (!Number.isInteger(scale) || scale < 0) {
    throw new RangeError(`decimal scale must be a non-negative integer, got ${scale}`);
  }
  if (precision !== undefined && (!Number.isInteger(precision) || precision < 1 || scale > precision)) {
    throw new RangeError(`decimal precision must be an integer >= max(1, scale), got ${precision}`);
  }
}

interface DecimalSchemaAttributes {
  precision?: unknown;
  scale?: unknown;
}

/**
 * avsc logical type for `bytes` + `decimal`, exposing values as decimal strings.
 * Register it with `Type.forSchema(schema, { logicalTypes: { decimal: DecimalStringType } })`.
 * Without it avsc hands out raw Buffers. Writing a string with too many fraction digits or too many
 * digits fails validation instead of being rounded.
 */
export class DecimalStringType extends avro.types.LogicalType {
  readonly precision: number;
  readonly scale: number;

  constructor(schema: avro.Schema, opts?: unknown) {
    super(schema, opts);
    const attrs = schema as DecimalSchemaAttributes;
    const precision = attrs.precision;
    const scale = attrs.scale ?? 0;
    if (typeof precision !== 'number' || typeof scale !== 'number') {
      // Throwing here makes avsc fall back to the underlying bytes type, as the Avro spec requires
      // for an invalid logical type.
      throw new RangeError('decimal logical type needs numeric precision and scale');
    }
    assertScale(scale, precision);
    if (this.underlyingType.typeName !== 'bytes') {
      throw new TypeError('DecimalStringType only supports the bytes representation, not fixed');
    }
    this.precision = precision;
    this.scale = scale;
  }

  protected override _fromValue(value: Buffer): string {
    return bytesToDecimal(value, this.scale);
  }

  protected override _toValue(value: unknown): Buffer {
    // avsc's isValid turns a throw here into "invalid" (reported through errorHook); encoding rethrows.
    if (typeof value !== 'string') {
      throw new DecimalFormatError(`decimal value must be a string, got ${typeof value}`);
    }
    return decimalToBytes(value, this.scale, this.precision);
  }

  protected override _resolve(writer: avro.Type): ((value: string) => string) | undefined {
    // Avro matches decimals on scale and precision; anything else would silently change the value.
    // The writer type has already turned the bytes into a string, so nothing is left to convert.
    if (
      writer instanceof DecimalStringType &&
      writer.scale === this.scale &&
      writer.precision === this.precision
    ) {
      return (value: string) => value;
    }
    return undefined;
  }

  protected override _export(attrs: avro.Schema): void {
    const target = attrs as DecimalSchemaAttributes;
    target.precision = this.precision;
    target.scale = this.scale;
  }
}
