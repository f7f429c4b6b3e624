/** JSON Schema of a database id in a path: a positive 32-bit integer. */
export const idSchema = { type: 'integer', minimum: 1, maximum: 2147483647 } as const;
