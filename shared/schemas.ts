/** JSON Schema of a database id in a path: a positive 32-bit integer. */
export const idSchema = { type: 'integer', minimum: 1, maximum: 2147483647 } as const;

// ajv-formats' `uuid` also accepts a `urn:uuid:` prefix, which Postgres'
// uuid type refuses; the pattern keeps such ids a 400 instead of a 500.
/** JSON Schema of a booking id: a plain UUID. */
export const uuidSchema = {
  type: 'string',
  format: 'uuid',
  pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$',
} as const;
