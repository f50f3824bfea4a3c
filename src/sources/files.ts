import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { parse } from 'csv-parse';

// Records from NDJSON or CSV, one at a time with the line they came from, so a bad line is reported
// precisely and the rest of the file still flows. Nothing is read whole into memory, and one line may
// not exceed MAX_LINE_BYTES (a file without newlines must not become one giant string).

export type InputFormat = 'ndjson' | 'csv';

export const MAX_LINE_BYTES = 1024 * 1024;

export type SourceItem = { line: number; raw: Record<string, unknown> } | { line: number; error: string };

export function detectFormat(file: string, explicit?: string): InputFormat {
  if (explicit === 'ndjson' || explicit === 'csv') return explicit;
  if (explicit) throw new Error(`unknown --format ${explicit}: use ndjson or csv`);
  const ext = path.extname(file).toLowerCase();
  if (ext === '.csv') return 'csv';
  if (ext === '.ndjson' || ext === '.jsonl' || ext === '.json') return 'ndjson';
  if (file === '-') return 'ndjson';
  throw new Error(`cannot tell the format of ${file} from its extension: pass --format ndjson|csv`);
}

export function openInput(file: string): Readable {
  return file === '-' ? process.stdin : fs.createReadStream(file);
}

/**
 * Splits a byte stream into lines without ever holding more than `max` bytes of one line: the rest of
 * an overlong line is skipped up to its newline and the line is reported as too long.
 */
export async function* splitLines(
  input: AsyncIterable<Buffer | string> | Iterable<Buffer | string>,
  max = MAX_LINE_BYTES,
): AsyncGenerator<{ line: number; text: string } | { line: number; overlong: true }> {
  let parts: Buffer[] = [];
  let size = 0;
  let overlong = false;
  let n = 0;
  const finish = () => {
    n++;
    const out = overlong
      ? ({ line: n, overlong: true } as const)
      : { line: n, text: Buffer.concat(parts, size).toString('utf8').replace(/\r$/, '') };
    parts = [];
    size = 0;
    overlong = false;
    return out;
  };
  for await (const chunk of input) {
    let buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    for (let nl = buf.indexOf(10); nl !== -1; nl = buf.indexOf(10)) {
      const piece = buf.subarray(0, nl);
      if (!overlong && size + piece.length <= max) {
        parts.push(piece);
        size += piece.length;
      } else overlong = true;
      yield finish();
      buf = buf.subarray(nl + 1);
    }
    if (!overlong && size + buf.length <= max) {
      parts.push(Buffer.from(buf));
      size += buf.length;
    } else {
      overlong = true;
      parts = [];
    }
  }
  if (size > 0 || overlong) yield finish();
}

export async function* readNdjson(input: Readable): AsyncGenerator<SourceItem> {
  for await (const l of splitLines(input)) {
    if ('overlong' in l) {
      yield { line: l.line, error: `line is longer than ${MAX_LINE_BYTES} bytes` };
      continue;
    }
    if (l.text.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(l.text);
    } catch (err) {
      yield { line: l.line, error: `not valid JSON: ${(err as Error).message}` };
      continue;
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      yield { line: l.line, error: 'a line must hold one JSON object' };
      continue;
    }
    yield { line: l.line, raw: value as Record<string, unknown> };
  }
}

/** CSV with a header row; a malformed row is reported and skipped, parsing goes on. */
export async function* readCsv(input: Readable): AsyncGenerator<SourceItem> {
  const skipped: SourceItem[] = [];
  const parser = input.pipe(
    parse({
      columns: true,
      bom: true,
      trim: true,
      skip_empty_lines: true,
      skip_records_with_error: true,
      max_record_size: MAX_LINE_BYTES,
      info: true,
    }),
  );
  parser.on('skip', (err: Error & { lines?: number }) => {
    skipped.push({ line: err.lines ?? 0, error: `malformed CSV row: ${err.message}` });
  });
  for await (const rec of parser as AsyncIterable<{
    record: Record<string, string>;
    info: { lines: number };
  }>) {
    // The parser runs ahead of this loop, so a later row's skip can arrive before an earlier record.
    while (skipped.length && skipped[0]!.line < rec.info.lines) yield skipped.shift()!;
    yield { line: rec.info.lines, raw: rec.record };
  }
  while (skipped.length) yield skipped.shift()!;
}

export function readRecords(input: Readable, format: InputFormat): AsyncGenerator<SourceItem> {
  return format === 'csv' ? readCsv(input) : readNdjson(input);
}
