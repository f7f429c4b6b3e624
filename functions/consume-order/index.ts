import pg from 'pg';
import { DELIVERER_ROLE } from '../../shared/auth.js';
import { cloudEventFunction, type ReceivedEvent } from '../../shared/cloudevent-function.js';
import { pool } from '../../shared/db.js';
import { problems } from '../../shared/errors.js';
import { orderOutcomes } from '../../shared/metrics.js';
import { idSchema, uuidSchema } from '../../shared/schemas.js';
import { confirmations } from './confirm.js';
import { canonicalDecimal, memberText } from './price.js';

/**
 * A message of the `booking` topic: a booking accepted, as `book` writes it,
 * or, with `type`, its cancellation, as cancel-booking writes it (with more
 * members, which consume-order does not need).
 */
interface BookingMessage {
  type?: 'booking.cancelled';
  bookingId: string;
  userId: number;
  eventId: number;
  ticketCount: number;
  /** A float here: only ever compared through its exact text (see priceText). */
  totalPrice?: number;
}

/**
 * Triggered by the `booking` topic: turns an accepted booking into its
 * order, exactly once, unless the booking was cancelled first (no order,
 * answered 200 `cancelled`; a cancellation's own message is answered so
 * too). Delivery is at least once, so the booking row is
 * locked and its status decides: a confirmed booking is a duplicate and
 * answers 200 without writing; the unique order-per-booking constraint
 * backs that up. A message that disagrees with its booking is a bug or a
 * forgery: it is refused (422, dead-lettered) and the booking is left as
 * it is, for the right message to confirm. Messages delivered at once are
 * confirmed together, in one transaction (see confirm.ts).
 */
export default cloudEventFunction<BookingMessage>({
  name: 'consume-order',
  // Only the deliverers' service account (the trigger, the relay) may confirm orders.
  delivererRole: DELIVERER_ROLE,
  dataSchema: {
    type: 'object',
    properties: {
      // A type this version does not know can never succeed here: refused (400), dead-lettered, replayable after an upgrade.
      type: { enum: ['booking.cancelled'] },
      bookingId: uuidSchema,
      userId: idSchema,
      eventId: idSchema,
      ticketCount: { type: 'integer', minimum: 1 },
      totalPrice: { type: 'number', minimum: 0 },
    },
    required: ['bookingId', 'userId', 'eventId', 'ticketCount'],
  },

  async handle({ data, dataText }) {
    const { bookingId, userId, eventId, ticketCount } = data;
    const price = data.totalPrice === undefined ? undefined : await priceText(dataText);
    const confirmed = await confirmations.submit({ bookingId, userId, eventId, ticketCount, price, cancelled: data.type === 'booking.cancelled' });
    if (confirmed.outcome === 'refused') throw confirmed.problem;
    orderOutcomes.inc({ outcome: confirmed.outcome });
    return { bookingId, ...confirmed };
  },
});

/**
 * The message's totalPrice as the exact decimal text it came in: JSON.parse
 * has made it a binary float, so it is read again from the JSON text, here
 * when that text is plain (the common case, no round trip), else by
 * Postgres, whose jsonb keeps a number's digits.
 */
async function priceText(dataText: ReceivedEvent<unknown>['dataText']): Promise<string> {
  const plain = memberText(dataText.json, 'totalPrice');
  if (plain !== undefined && canonicalDecimal(plain) !== undefined) return plain;
  const { rows } = await pool
    .query<{ price: string }>('SELECT $1::jsonb #>> $2::text[] AS price', [dataText.json, [...dataText.path, 'totalPrice']])
    .catch((error: unknown) => {
      throw unreadable(error) ?? error;
    });
  return rows[0]!.price;
}

/**
 * Postgres refuses some JSON that JSON.parse lets through (`\u0000` in a
 * string, a number beyond numeric's range) with a data exception (SQLSTATE
 * class 22): such a message can never succeed, so it is a 400, not a 500.
 */
function unreadable(error: unknown): Error | undefined {
  if (!(error instanceof pg.DatabaseError) || !error.code?.startsWith('22')) return undefined;
  return problems.validation([{ name: 'data', reason: `cannot be read exactly: ${error.message}` }]);
}
