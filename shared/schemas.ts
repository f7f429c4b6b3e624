import { problems } from './errors.js';
import { writtenText } from './json.js';

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

/** JSON Schema of a number of seats or tickets: a positive 32-bit integer. */
export const countSchema = { type: 'integer', minimum: 1, maximum: 2147483647 } as const;

// Postgres text cannot hold NUL (a 500 otherwise). The pattern is linear:
// its parts cannot match the same character, so a long string cannot make
// it backtrack.
/** JSON Schema of a name or an address: not blank, no NUL character, at most `maxLength` characters. */
export const textSchema = (maxLength: number) =>
  ({ type: 'string', minLength: 1, maxLength, pattern: '^\\s*[^\\s\\u0000][^\\u0000]*$', description: 'Not blank; no NUL character' }) as const;

/** The fields of a venue, as get-venue names them. */
export const venueFields = {
  venueName: textSchema(200),
  address: textSchema(500),
  totalCapacity: countSchema,
} as const;

/** How a waiting room runs an event's sale (used by the waiting room; stored and shown until then). */
export const onSaleSchema = {
  type: 'object',
  properties: {
    startsAt: { type: 'string', format: 'date-time', description: 'When the sale opens: an RFC 3339 date-time with its offset, in the future' },
    admitPerMinute: { ...countSchema, description: 'Buyers admitted from the queue per minute' },
    maxActive: { ...countSchema, description: 'Most admitted buyers holding a pass at once' },
    passMinutes: { type: 'integer', minimum: 1, maximum: 60, description: 'How long a pass lets its holder book' },
  },
  required: ['startsAt', 'admitPerMinute', 'maxActive', 'passMinutes'],
  additionalProperties: false,
} as const;

/** The fields of an event as an operator writes them: `capacity` is the event's total. */
export const eventFields = {
  event: textSchema(200),
  venueId: idSchema,
  capacity: countSchema,
  ticketPrice: {
    type: 'number',
    minimum: 0,
    maximum: 9999999999.99,
    description: 'An exact decimal with at most two decimal places, written plainly (19.99, not 1.999e1)',
  },
  maxTicketsPerCustomer: { ...countSchema, description: 'Most tickets one customer may hold for the event; absent: no limit' },
  onSale: onSaleSchema,
} as const;

// Digits as numeric(12,2) holds them; trailing zeros of the fraction are not digits of the value.
const PRICE_TEXT = /^(0|[1-9]\d{0,9})(?:\.(\d*?)0*)?$/;

/**
 * The exact decimal text of the price at `field` of a JSON body, read from
 * the body's text (JSON.parse makes `19.999999999999999999` the float 20),
 * in Postgres' plain form: `19.90` is `19.9`. A 400 naming the field unless
 * it is written plainly with at most two decimal places.
 */
export function priceText(value: number, bodyText: string | undefined, field: string): string {
  // A plain safe integer is the only number writtenText does not list: its value is its text.
  const written = bodyText === undefined ? undefined : writtenText(bodyText).inexactNumbers.find((n) => n.path.join('/') === field)?.text;
  const match = PRICE_TEXT.exec(written ?? String(value));
  if (!match || (match[2] ?? '').length > 2) {
    throw problems.validation([{ name: `body/${field}`, reason: 'must be a plain decimal with at most 10 digits before the point and 2 after, e.g. 19.99' }]);
  }
  return match[2] ? `${match[1]}.${match[2]}` : match[1]!;
}

/**
 * A date-time the schema let through (`format: date-time`), as an ISO
 * instant in UTC to the millisecond; a 400 naming `field` if it cannot be
 * read (a leap second) or is not in the future.
 */
export function futureInstant(text: string, field: string): string {
  const at = Date.parse(text);
  if (Number.isNaN(at)) throw problems.validation([{ name: `body/${field}`, reason: 'is not a date-time this service can read' }]);
  if (at <= Date.now()) throw problems.validation([{ name: `body/${field}`, reason: 'must be in the future' }]);
  return new Date(at).toISOString();
}

/** `?limit=&offset=` of a list of events: at most 500 a page, 100 unless asked. */
export const eventPageQuerySchema = {
  type: 'object',
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: 500, default: 100 },
    offset: { type: 'integer', minimum: 0, maximum: 1000000, default: 0 },
  },
  additionalProperties: false,
} as const;
