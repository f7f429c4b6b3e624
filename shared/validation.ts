import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { problems, type InvalidParam } from './errors.js';

/** The parts of a request a function may declare a JSON Schema for (`data`: a CloudEvent's). */
export type RequestPart = 'path' | 'query' | 'header' | 'body' | 'data';

// Path and query values arrive as strings, so they are coerced to the
// declared types; a body is JSON already and must match exactly.
const forUrl = new Ajv({ allErrors: true, coerceTypes: true, useDefaults: true, strict: true });
const forBody = new Ajv({ allErrors: true, coerceTypes: false, useDefaults: true, strict: true });
addFormats.default(forUrl);
addFormats.default(forBody);

export interface Validator<T> {
  /** Returns the value typed and defaulted, or throws a 400 Problem naming every fault. */
  (value: unknown): T;
  readonly schema: object;
}

export function validator<T>(part: RequestPart, schema: object): Validator<T> {
  const check: ValidateFunction = (part === 'body' || part === 'data' ? forBody : forUrl).compile(schema);
  const validate = (value: unknown): T => {
    if (check(value)) return value as T;
    throw problems.validation((check.errors ?? []).map((error) => describe(part, error)));
  };
  return Object.assign(validate, { schema });
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
