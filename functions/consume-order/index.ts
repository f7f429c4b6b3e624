import pg from 'pg';
import { cloudEventFunction, type ReceivedEvent } from '../../shared/cloudevent-function.js';
import { transaction, type Queryable } from '../../shared/db.js';
import { problems } from '../../shared/errors.js';
import { orderOutcomes } from '../../shared/metrics.js';
import { idSchema, uuidSchema } from '../../shared/schemas.js';
import { canonicalDecimal, memberText } from './price.js';

/** A message of the `booking` topic, as `book` writes it. */
interface BookingAccepted {
  bookingId: string;
  userId: number;
  eventId: number;
  ticketCount: number;
  /** A float here: only ever compared through its exact text (see lockBooking). */
  totalPrice?: number;
}

interface BookingRow {
  customer_id: number;
  event_id: number;
  ticket_count: number;
  total_price: string;
  status: string;
  /** The message's totalPrice as its exact digits; null when it carries none. */
  message_price: string | null;
  /** Whether that is the booking's total, compared as decimals; null when the message carries none. */
  price_agrees: boolean | null;
}

/**
 * Triggered by the `booking` topic: turns an accepted booking into its
 * order, exactly once. Delivery is at least once, so the booking row is
 * locked and its status decides: a confirmed booking is a duplicate and
 * answers 200 without writing; the unique order-per-booking constraint
 * backs that up. A message that disagrees with its booking is a bug or a
 * forgery: it is refused (422, dead-lettered) and the booking is left as
 * it is, for the right message to confirm.
 */
export default cloudEventFunction<BookingAccepted>({
  name: 'consume-order',
  dataSchema: {
    type: 'object',
    properties: {
      bookingId: uuidSchema,
      userId: idSchema,
      eventId: idSchema,
      ticketCount: { type: 'integer', minimum: 1 },
      totalPrice: { type: 'number', minimum: 0 },
    },
    required: ['bookingId', 'userId', 'eventId', 'ticketCount'],
  },

  async handle({ data, dataText }) {
    const outcome = await transaction(async (db) => {
      const booking = await lockBooking(db, data, dataText);
      if (!booking) throw problems.unknownBooking(data.bookingId);
      const disagreement = disagreementOf(data, booking);
      if (disagreement) throw problems.bookingMismatch(data.bookingId, disagreement);
      if (booking.status !== 'PENDING') return { outcome: 'duplicate', status: booking.status } as const;

      // One statement, one round trip: the booking is locked already.
      const order = await db.query<{ order_id: string }>(
        `WITH confirmed AS (
           UPDATE bookings SET status = 'CONFIRMED', updated_at = now() WHERE booking_id = $1
           RETURNING booking_id, customer_id, event_id, ticket_count, total_price)
         INSERT INTO orders (booking_id, customer_id, event_id, quantity, total)
         SELECT booking_id, customer_id, event_id, ticket_count, total_price FROM confirmed RETURNING order_id`,
        [data.bookingId],
      );
      return { outcome: 'created', status: 'CONFIRMED', orderId: order.rows[0]!.order_id } as const;
    }).catch((error: unknown) => {
      throw unreadable(error) ?? error;
    });
    orderOutcomes.inc({ outcome: outcome.outcome });
    return { bookingId: data.bookingId, ...outcome };
  },
});

/**
 * Locks the booking and compares the message's totalPrice with its total.
 * JSON.parse has made that price a binary float, so it is compared as the
 * exact text it came in: as decimal text here when that text is plain (the
 * common case, and no JSON to send), else by Postgres, which reads it again
 * from the JSON (jsonb keeps a number's digits).
 */
async function lockBooking(db: Queryable, data: BookingAccepted, dataText: ReceivedEvent<unknown>['dataText']): Promise<BookingRow | undefined> {
  const priced = data.totalPrice !== undefined;
  const price = priced ? memberText(dataText.json, 'totalPrice') : undefined;
  const plain = price === undefined ? undefined : canonicalDecimal(price);
  if (!priced || plain !== undefined) {
    const { rows } = await db.query<Omit<BookingRow, 'message_price' | 'price_agrees'>>(
      'SELECT customer_id, event_id, ticket_count, total_price, status FROM bookings WHERE booking_id = $1 FOR UPDATE OF bookings',
      [data.bookingId],
    );
    const row = rows[0];
    return row && { ...row, message_price: price ?? null, price_agrees: priced ? plain === canonicalDecimal(row.total_price) : null };
  }
  const { rows } = await db.query<BookingRow>(
    `SELECT customer_id, event_id, ticket_count, total_price, status, message_price,
            total_price = message_price::numeric AS price_agrees
       FROM bookings, LATERAL (SELECT $2::jsonb #>> $3::text[] AS message_price) AS message
      WHERE booking_id = $1 FOR UPDATE OF bookings`,
    [data.bookingId, dataText.json, [...dataText.path, 'totalPrice']],
  );
  return rows[0];
}

/** What the message says that its booking does not, or undefined when they agree. */
function disagreementOf(message: BookingAccepted, booking: BookingRow): string | undefined {
  const faults = [
    message.userId !== booking.customer_id && `userId ${message.userId} is not its customer ${booking.customer_id}`,
    message.eventId !== booking.event_id && `eventId ${message.eventId} is not its event ${booking.event_id}`,
    message.ticketCount !== booking.ticket_count && `ticketCount ${message.ticketCount} is not its ${booking.ticket_count} tickets`,
    booking.price_agrees === false && `totalPrice ${booking.message_price} is not its total ${booking.total_price}`,
  ].filter((fault): fault is string => typeof fault === 'string');
  return faults.length ? faults.join('; ') : undefined;
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
