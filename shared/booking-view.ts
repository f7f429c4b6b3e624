import { Decimal } from './json.js';

/** A booking's row, as get-booking and cancel-booking read it. */
export interface BookingRecord {
  booking_id: string;
  customer_id: number;
  event_id: number;
  ticket_count: number;
  total_price: string;
  status: 'PENDING' | 'CONFIRMED' | 'FAILED' | 'CANCELLED';
  created_at: Date;
}

/**
 * A booking as the API shows it; `orderId` (a bigint, kept as its string)
 * only once the order consumer has placed its order.
 */
export function bookingView(booking: BookingRecord, orderId: string | null | undefined): Record<string, unknown> {
  return {
    bookingId: booking.booking_id,
    userId: booking.customer_id,
    eventId: booking.event_id,
    ticketCount: booking.ticket_count,
    totalPrice: new Decimal(booking.total_price),
    status: booking.status,
    createdAt: booking.created_at.toISOString(),
    ...(orderId == null ? {} : { orderId }),
  };
}
