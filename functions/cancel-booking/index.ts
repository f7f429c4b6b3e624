import type pg from 'pg';
import { mayActFor, type Principal } from '../../shared/auth.js';
import { bookingView, type BookingRecord } from '../../shared/booking-view.js';
import { transaction } from '../../shared/db.js';
import { problems } from '../../shared/errors.js';
import { httpFunction } from '../../shared/http-function.js';
import { topics } from '../../shared/topics.js';
import { bookingOutcomes } from '../../shared/metrics.js';
import { uuidSchema } from '../../shared/schemas.js';

/**
 * DELETE /api/v1/booking/{bookingId}: cancels a booking, for its customer
 * or an admin, and answers it as get-booking shows it, now CANCELLED. In
 * one transaction: its tickets go back to the event, its order (if any) is
 * cancelled with its whole total to refund, and a booking.cancelled message
 * goes into the outbox. Cancelling again answers the same and changes
 * nothing; a FAILED booking holds nothing to cancel (409).
 */
export default httpFunction<{ bookingId: string }>({
  name: 'cancel-booking',
  route: { method: 'DELETE', path: '/api/v1/booking/:bookingId' },
  access: 'token',
  schemas: {
    path: { type: 'object', properties: { bookingId: uuidSchema }, required: ['bookingId'], additionalProperties: false },
  },
  async handle({ params, principal }) {
    const { booking, orderId, cancelled } = await transaction((db) => cancel(db, params.bookingId, principal));
    bookingOutcomes.inc({ outcome: cancelled ? 'cancelled' : 'already_cancelled' });
    return { body: bookingView(booking, orderId) };
  },
});

const BOOKING_COLUMNS = 'booking_id, customer_id, event_id, ticket_count, total_price, status, created_at';

/**
 * Locks the booking, then the event (by updating it): the order
 * consume-order takes too (its batch locks bookings, then its orders
 * key-share the event), and book never waits for a booking row while it
 * holds events, so no cycle can form. The order is read after the lock, in
 * a statement of its own: a statement that waited for the lock sees the
 * booking as a confirmation committed it meanwhile, but joined rows as
 * they were, so a join would miss that confirmation's order.
 */
async function cancel(db: pg.PoolClient, bookingId: string, principal: Principal): Promise<{ booking: BookingRecord; orderId?: string; cancelled: boolean }> {
  const { rows } = await db.query<BookingRecord>(`SELECT ${BOOKING_COLUMNS} FROM bookings WHERE booking_id = $1 FOR UPDATE`, [bookingId]);
  const booking = rows[0];
  if (!booking) throw problems.notFound(`Booking ${bookingId} does not exist`);
  mayActFor(principal, booking.customer_id);
  if (booking.status === 'FAILED') throw problems.bookingFailed(booking.booking_id);

  const order = await db.query<{ order_id: string }>('SELECT order_id FROM orders WHERE booking_id = $1', [bookingId]);
  const orderId = order.rows[0]?.order_id;
  if (booking.status === 'CANCELLED') return { booking, orderId, cancelled: false };

  const updated = await db.query<BookingRecord>(
    `UPDATE bookings SET status = 'CANCELLED', cancelled_at = now(), updated_at = now() WHERE booking_id = $1 RETURNING ${BOOKING_COLUMNS}`,
    [bookingId],
  );
  await db.query('UPDATE events SET left_capacity = left_capacity + $2 WHERE event_id = $1', [booking.event_id, booking.ticket_count]);
  await db.query(`UPDATE orders SET status = 'CANCELLED', cancelled_at = now(), refund = total WHERE booking_id = $1 AND status = 'ACTIVE'`, [bookingId]);
  // Shaped by the database (booking_cancelled_message), as the booking's own message is.
  await db.query(
    `INSERT INTO outbox (topic, message_key, payload)
     SELECT $1, b.booking_id::text, booking_cancelled_message(b, o)
       FROM bookings b LEFT JOIN orders o USING (booking_id)
      WHERE b.booking_id = $2`,
    [topics.booking, bookingId],
  );
  return { booking: updated.rows[0]!, orderId, cancelled: true };
}
