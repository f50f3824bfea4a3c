// Hand-built Avro binary for tests that feed the decoder bytes no encoder would write.

/** Zig-zag varint, exact for any 64-bit value. */
export function zz(n: number | bigint): number[] {
  const v = BigInt(n);
  let z = v >= 0n ? v << 1n : (-v << 1n) - 1n;
  const out: number[] = [];
  do {
    let b = Number(z & 0x7fn);
    z >>= 7n;
    if (z > 0n) b |= 0x80;
    out.push(b);
  } while (z > 0n);
  return out;
}

/** An Avro string: its byte length as a varint, then the UTF-8 bytes. */
export function str(s: string): number[] {
  const bytes = Buffer.from(s, 'utf8');
  return [...zz(bytes.length), ...bytes];
}
