import { cloudEventFunction } from '../../shared/cloudevent-function.js';
import { transaction } from '../../shared/db.js';
import { problems } from '../../shared/errors.js';
import { orderOutcomes } from '../../shared/metrics.js';
import { idSchema, uuidSchema } from '../../shared/schemas.js';

/** A message of the `booking` topic, as `book` writes it. */
interface BookingAccepted {
  bookingId: string;
  userId: number;
  eventId: number;
  ticketCount: number;
}

interface BookingRow {
  customer_id: number;
  event_id: number;
  ticket_count: number;
  total_price: string;
  status: 'PENDING' | 'CONFIRMED' | 'FAILED';
}

/**
 * Triggered by the `booking` topic: turns an accepted booking into its
 * order, exactly once. Delivery is at least once, so the booking row is
 * locked and its status decides: a confirmed booking is a duplicate and
 * answers 200 without writing; the unique order-per-booking constraint
 * backs that up. A message that disagrees with its booking can never
 * become an order: the booking is marked FAILED and its tickets go back.
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
    },
    required: ['bookingId', 'userId', 'eventId', 'ticketCount'],
  },

  async handle({ data }) {
    const outcome = await transaction(async (db) => {
      const { rows } = await db.query<BookingRow>(
        'SELECT customer_id, event_id, ticket_count, total_price, status FROM bookings WHERE booking_id = $1 FOR UPDATE',
        [data.bookingId],
      );
      const booking = rows[0];
      if (!booking) throw problems.unknownBooking(data.bookingId);
      if (booking.status !== 'PENDING') return { outcome: 'duplicate', status: booking.status } as const;

      if (booking.customer_id !== data.userId || booking.event_id !== data.eventId || booking.ticket_count !== data.ticketCount) {
        await db.query("UPDATE bookings SET status = 'FAILED', updated_at = now() WHERE booking_id = $1", [data.bookingId]);
        await db.query('UPDATE events SET left_capacity = left_capacity + $2 WHERE event_id = $1', [booking.event_id, booking.ticket_count]);
        return { outcome: 'failed', status: 'FAILED' } as const;
      }

      const order = await db.query<{ order_id: string }>(
        `INSERT INTO orders (booking_id, customer_id, event_id, quantity, total)
         VALUES ($1, $2, $3, $4, $5) RETURNING order_id`,
        [data.bookingId, booking.customer_id, booking.event_id, booking.ticket_count, booking.total_price],
      );
      await db.query("UPDATE bookings SET status = 'CONFIRMED', updated_at = now() WHERE booking_id = $1", [data.bookingId]);
      return { outcome: 'created', status: 'CONFIRMED', orderId: order.rows[0]!.order_id } as const;
    });
    orderOutcomes.inc({ outcome: outcome.outcome });
    return { bookingId: data.bookingId, ...outcome };
  },
});
