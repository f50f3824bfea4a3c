import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import avro from 'avsc';
import { TxstreamError } from '../errors.ts';
import { DecimalStringType } from './decimal.ts';

// Schemas are parsed once per catalogue and the resulting avsc Types reused: building a Type compiles
// reader/writer functions, which is far too slow to do per record. The catalogue is an object the
// composition root owns (no module-level cache), so tests and tools can point one at another directory.

/** The project's schemas/ directory (also shipped in the package). */
export const DEFAULT_SCHEMAS_DIR = fileURLToPath(new URL('../../schemas/', import.meta.url));

/**
 * Options for avsc's Type.forSchema with txstream's logical types. A fresh object per call: avsc
 * stores its registry of named types in the options object it is given, so a shared one would make
 * every later schema with the same record name fail as a duplicate.
 */
export function avroTypeOptions(): Partial<avro.ForSchemaOptions> {
  return { logicalTypes: { decimal: DecimalStringType } };
}

/** An Avro schema in the shape the .avsc files use (JSON). */
export type AvroSchemaJson = avro.Schema;

export interface LoadedSchema {
  /** Record name (file name without `.avsc`). */
  readonly name: string;
  readonly file: string;
  readonly json: AvroSchemaJson;
  /** Compact JSON text: what is registered and what the registry compares. */
  readonly text: string;
  readonly type: avro.Type;
}

export interface SchemaCatalog {
  readonly dir: string;
  /** Loads `<dir>/<name>.avsc` (once) with the decimal logical type registered. */
  load(name: string): LoadedSchema;
  /** An avsc Type for schema text from elsewhere (e.g. fetched from the registry by id), cached by text. */
  typeFromText(text: string): avro.Type;
}

export function parseAvroSchema(json: unknown, origin: string): avro.Type {
  try {
    return avro.Type.forSchema(json as avro.Schema, avroTypeOptions());
  } catch (err) {
    throw new TxstreamError(
      'SCHEMA_INVALID',
      `${origin}: not a valid Avro schema: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

export function createSchemaCatalog(options: { dir?: string } = {}): SchemaCatalog {
  const dir = path.resolve(options.dir ?? DEFAULT_SCHEMAS_DIR);
  const byName = new Map<string, LoadedSchema>();
  const byText = new Map<string, avro.Type>();

  return {
    dir,
    load(name) {
      const cached = byName.get(name);
      if (cached) return cached;
      const file = path.join(dir, `${name}.avsc`);
      let source: string;
      try {
        source = fs.readFileSync(file, 'utf8');
      } catch (err) {
        throw new TxstreamError(
          'SCHEMA_NOT_FOUND',
          `schema file ${file} cannot be read (${(err as NodeJS.ErrnoException).code})`,
          {
            cause: err,
          },
        );
      }
      let json: AvroSchemaJson;
      try {
        json = JSON.parse(source) as AvroSchemaJson;
      } catch (err) {
        throw new TxstreamError('SCHEMA_INVALID', `${file}: not JSON: ${(err as Error).message}`, {
          cause: err,
        });
      }
      const type = parseAvroSchema(json, file);
      const declared = (json as { name?: unknown }).name;
      if (declared !== name) {
        throw new TxstreamError(
          'SCHEMA_INVALID',
          `${file} declares record ${String(declared)}, expected ${name}`,
        );
      }
      const text = JSON.stringify(json);
      const loaded: LoadedSchema = { name, file, json, text, type };
      byName.set(name, loaded);
      byText.set(text, type);
      return loaded;
    },
    typeFromText(text) {
      const cached = byText.get(text);
      if (cached) return cached;
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch (err) {
        throw new TxstreamError('SCHEMA_INVALID', `schema text is not JSON: ${(err as Error).message}`, {
          cause: err,
        });
      }
      const type = parseAvroSchema(json, 'registry schema');
      byText.set(text, type);
      return type;
    },
  };
}
