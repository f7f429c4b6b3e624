import { transaction } from '../../shared/db.js';
import { problems, type Problem } from '../../shared/errors.js';
import { GroupCommit } from '../../shared/group-commit.js';
import { canonicalDecimal } from './price.js';

/** Most messages one confirming transaction takes: bounds its statements and its lock time. */
const MAX_BATCH = 100;

/** A `booking` message as consume-order checks it against its booking. */
export interface Confirmation {
  bookingId: string;
  userId: number;
  eventId: number;
  ticketCount: number;
  /** The exact decimal text of its totalPrice, when it has one. */
  price?: string;
  /** A booking.cancelled message: nothing to do but check that its booking is cancelled. */
  cancelled?: boolean;
}

interface BookingRow {
  booking_id: string;
  customer_id: number;
  event_id: number;
  ticket_count: number;
  total_price: string;
  status: string;
}

/** What became of one message: each its own answer, as if it had come alone. */
export type Confirmed =
  | { outcome: 'created'; status: 'CONFIRMED'; orderId: string }
  | { outcome: 'duplicate'; status: string }
  | { outcome: 'cancelled'; status: 'CANCELLED' }
  | { outcome: 'refused'; problem: Problem };

/**
 * Concurrent messages share one transaction (group commit): one lock
 * statement, one confirming statement and one commit for the batch, where
 * each message alone pays all three.
 */
export const confirmations = new GroupCommit(confirmAll, { maxBatch: MAX_BATCH });

/**
 * Locks the batch's bookings (in id order, so instances never deadlock on
 * them) and lets each one's status decide: PENDING becomes CONFIRMED with
 * its order; CANCELLED never gets one (the message came after the
 * cancellation, or is the cancellation's own): answered `cancelled`, so
 * the deliverer moves on; anything else is a duplicate delivery. A message
 * that disagrees with its booking, or has none, is refused and changes
 * nothing; so is a cancellation of a booking that is not cancelled.
 */
async function confirmAll(messages: Confirmation[]): Promise<Confirmed[]> {
  return transaction(async (db) => {
    const { rows } = await db.query<BookingRow>(
      `SELECT booking_id, customer_id, event_id, ticket_count, total_price, status
         FROM bookings WHERE booking_id = ANY($1::uuid[]) ORDER BY booking_id FOR UPDATE OF bookings`,
      [[...new Set(messages.map((m) => m.bookingId))]],
    );
    const bookings = new Map(rows.map((row) => [row.booking_id, row]));

    const confirming = new Set<string>();
    const decided = messages.map((message): Confirmed | 'confirm' => {
      const booking = bookings.get(message.bookingId);
      if (!booking) return { outcome: 'refused', problem: problems.unknownBooking(message.bookingId) };
      const disagreement = disagreementOf(message, booking);
      if (disagreement) return { outcome: 'refused', problem: problems.bookingMismatch(message.bookingId, disagreement) };
      if (message.cancelled && booking.status !== 'CANCELLED') {
        return { outcome: 'refused', problem: problems.bookingMismatch(message.bookingId, `it says the booking is cancelled, but it is ${booking.status}`) };
      }
      if (booking.status === 'CANCELLED') return { outcome: 'cancelled', status: 'CANCELLED' };
      // The same booking twice in one batch: the first confirms it, the rest are its duplicates.
      if (confirming.has(booking.booking_id)) return { outcome: 'duplicate', status: 'CONFIRMED' };
      if (booking.status !== 'PENDING') return { outcome: 'duplicate', status: booking.status };
      confirming.add(booking.booking_id);
      return 'confirm';
    });

    const orders = new Map<string, string>();
    if (confirming.size > 0) {
      const created = await db.query<{ booking_id: string; order_id: string }>(
        `WITH confirmed AS (
           UPDATE bookings SET status = 'CONFIRMED', updated_at = now() WHERE booking_id = ANY($1::uuid[])
           RETURNING booking_id, customer_id, event_id, ticket_count, total_price)
         INSERT INTO orders (booking_id, customer_id, event_id, quantity, total)
         SELECT booking_id, customer_id, event_id, ticket_count, total_price FROM confirmed RETURNING booking_id, order_id`,
        [[...confirming]],
      );
      for (const row of created.rows) orders.set(row.booking_id, row.order_id);
    }
    return decided.map((decision, i) =>
      decision === 'confirm' ? { outcome: 'created', status: 'CONFIRMED', orderId: orders.get(messages[i]!.bookingId)! } : decision,
    );
  });
}

/** What the message says that its booking does not, or undefined when they agree. */
function disagreementOf(message: Confirmation, booking: BookingRow): string | undefined {
  const price = message.price === undefined ? undefined : canonicalDecimal(message.price);
  const faults = [
    message.userId !== booking.customer_id && `userId ${message.userId} is not its customer ${booking.customer_id}`,
    message.eventId !== booking.event_id && `eventId ${message.eventId} is not its event ${booking.event_id}`,
    message.ticketCount !== booking.ticket_count && `ticketCount ${message.ticketCount} is not its ${booking.ticket_count} tickets`,
    message.price !== undefined &&
      (price === undefined || price !== canonicalDecimal(booking.total_price)) &&
      `totalPrice ${message.price} is not its total ${booking.total_price}`,
  ].filter((fault): fault is string => typeof fault === 'string');
  return faults.length ? faults.join('; ') : undefined;
}
