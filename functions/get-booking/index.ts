import { mayActFor } from '../../shared/auth.js';
import { bookingView, type BookingRecord } from '../../shared/booking-view.js';
import { pool } from '../../shared/db.js';
import { problems } from '../../shared/errors.js';
import { httpFunction } from '../../shared/http-function.js';
import { uuidSchema } from '../../shared/schemas.js';

interface BookingRow extends BookingRecord {
  /** Null until the order consumer places the order. */
  order_id: string | null;
}

/** GET /api/v1/booking/{bookingId}: a booking, its status, and its order once there is one; for its customer or an admin. */
export default httpFunction<{ bookingId: string }>({
  name: 'get-booking',
  route: { method: 'GET', path: '/api/v1/booking/:bookingId' },
  access: 'token',
  schemas: {
    path: { type: 'object', properties: { bookingId: uuidSchema }, required: ['bookingId'], additionalProperties: false },
  },
  async handle({ params, principal }) {
    const { rows } = await pool.query<BookingRow>(
      `SELECT b.booking_id, b.customer_id, b.event_id, b.ticket_count, b.total_price, b.status, b.created_at, o.order_id
         FROM bookings b
         LEFT JOIN orders o USING (booking_id)
        WHERE b.booking_id = $1`,
      [params.bookingId],
    );
    const booking = rows[0];
    if (!booking) throw problems.notFound(`Booking ${params.bookingId} does not exist`);
    mayActFor(principal, booking.customer_id);
    return { body: bookingView(booking, booking.order_id) };
  },
});
