import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { problems, type InvalidParam } from './errors.js';
import { writtenText } from './json.js';

/** The parts of a request a function may declare a JSON Schema for (`data`: a CloudEvent's). */
export type RequestPart = 'path' | 'query' | 'header' | 'body' | 'data';

// No type coercion: ajv's turns `Infinity`, `1e400`, ` 5 `, `0x10` and long
// numerals into numbers that pass `type: integer` (and, as ±Infinity, its
// bounds too), which Postgres then refuses. URL values are read here instead,
// strictly (see `urlReader`).
const ajv = new Ajv({ allErrors: true, coerceTypes: false, useDefaults: true, strict: true });
addFormats.default(ajv);

/** Where a value was parsed from: a JSON text and the value's path within it. */
export interface JsonSource {
  json: string;
  path: string[];
}

export interface Validator<T> {
  /**
   * Returns the value typed and defaulted, or throws a 400 Problem naming
   * every fault. `source`: the JSON a body was parsed from, whose numbers are
   * read as written (JSON.parse makes `0.9999999999999999999` the integer 1).
   */
  (value: unknown, source?: JsonSource): T;
  readonly schema: object;
}

interface SchemaNode {
  type?: string | string[];
  minimum?: number;
  properties?: Record<string, SchemaNode>;
  items?: SchemaNode | boolean;
  additionalProperties?: SchemaNode | boolean;
}

// An integer from a URL: plain decimal digits, no leading zero but in 0
// itself, a minus sign only where the range goes below zero.
const PLAIN_INTEGER = /^(?:0|(-?)[1-9]\d*)$/;

export function validator<T>(part: RequestPart, schema: object): Validator<T> {
  const check: ValidateFunction = ajv.compile(schema);
  const fromJson = part === 'body' || part === 'data';
  const read = fromJson ? undefined : urlReader(part, schema as SchemaNode);
  const validate = (value: unknown, source?: JsonSource): T => {
    const faults = read ? read(value as Record<string, unknown>) : source ? writtenFaults(part, schema as SchemaNode, source) : [];
    if (check(value) && faults.length === 0) return value as T;
    // A field already named by a fault of its own is not named again by ajv.
    const named = new Set(faults.map((fault) => fault.name));
    const more = (check.errors ?? []).map((error) => describe(part, error)).filter((fault) => !named.has(fault.name));
    throw problems.validation([...faults, ...more]);
  };
  return Object.assign(validate, { schema });
}

/**
 * Reads the integer fields of a path, query or header object in place: a
 * plain decimal numeral in the safe range becomes its number; anything else
 * is a fault (and stays a string, so ajv refuses it too). Strings and enums
 * need no reading; any other type would need a reading of its own, so it is
 * refused when the function is defined rather than failing every request.
 */
function urlReader(part: RequestPart, schema: SchemaNode): (value: Record<string, unknown>) => InvalidParam[] {
  const integers: [string, SchemaNode][] = [];
  for (const [name, field] of Object.entries(schema.properties ?? {})) {
    if (field.type === 'integer') integers.push([name, field]);
    else if (field.type !== undefined && field.type !== 'string') throw new TypeError(`${part}/${name}: a URL value can be declared a string or an integer, not ${String(field.type)}`);
  }
  return (value) => {
    const faults: InvalidParam[] = [];
    for (const [name, field] of integers) {
      const text = value[name];
      if (typeof text !== 'string') continue;
      const fault = urlIntegerFault(text, field);
      if (fault) faults.push({ name: `${part}/${name}`, reason: fault });
      else value[name] = Number(text);
    }
    return faults;
  };
}

function urlIntegerFault(text: string, field: SchemaNode): string | undefined {
  const match = PLAIN_INTEGER.exec(text);
  if (!match) return 'must be an integer written in plain decimal digits';
  if (match[1] && (field.minimum ?? -1) >= 0) return 'must be an integer written in plain decimal digits, without a sign';
  return Number.isSafeInteger(Number(text)) ? undefined : 'is out of range';
}

/**
 * Faults of the JSON text under the value's path: a key given twice, and a
 * number written for an integer field as anything but a plain safe integer.
 */
function writtenFaults(part: RequestPart, schema: SchemaNode, { json, path: at }: JsonSource): InvalidParam[] {
  const written = writtenText(json);
  const within = ({ path }: { path: string[] }) => at.every((key, i) => path[i] === key);
  const name = (path: string[]) => [part, ...path.slice(at.length).map(pointerSegment)].join('/');
  const duplicates = written.duplicateKeys.filter((path) => within({ path })).map((path) => ({ name: name(path), reason: 'is given more than once' }));
  const numbers = written.inexactNumbers
    .filter(within)
    .filter(({ path }) => isInteger(schemaAt(schema, path.slice(at.length))))
    .map(({ path, text }) => ({
      name: name(path),
      reason: /[.eE]/.test(text) ? 'must be an integer, written without a fraction or exponent' : 'is out of range',
    }));
  return [...duplicates, ...numbers];
}

/** The schema of the value at `path`, as far as `properties`, `items` and `additionalProperties` tell. */
function schemaAt(schema: SchemaNode | boolean | undefined, path: string[]): SchemaNode | undefined {
  let node = schema;
  for (const key of path) {
    if (typeof node !== 'object') return undefined;
    node = node.properties?.[key] ?? (node.type === 'array' ? node.items : node.additionalProperties);
  }
  return typeof node === 'object' ? node : undefined;
}

function isInteger(node: SchemaNode | undefined): boolean {
  const types = [node?.type ?? []].flat();
  return types.includes('integer') && !types.includes('number');
}

// As ajv writes an instancePath (RFC 6901), so both name a field alike.
function pointerSegment(key: string): string {
  return key.replaceAll('~', '~0').replaceAll('/', '~1');
}

function describe(part: RequestPart, error: ErrorObject): InvalidParam {
  const params = error.params as Record<string, unknown>;
  const where = part + error.instancePath;
  if (error.keyword === 'required') return { name: `${where}/${String(params.missingProperty)}`, reason: 'is required' };
  if (error.keyword === 'additionalProperties') {
    return { name: `${where}/${String(params.additionalProperty)}`, reason: 'is not an allowed field' };
  }
  return { name: where, reason: error.message ?? 'is not valid' };
}
