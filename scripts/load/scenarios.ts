import type pg from 'pg';

/** What one request of a function's load looks like. */
export interface Request {
  method: 'GET' | 'POST';
  path: string;
  body?: string;
  headers?: Record<string, string>;
}

const json = { 'content-type': 'application/json' };

/** The functions with a load scenario of their own (book's are in booking.ts). */
export const loadScenarios = new Set(['list-events', 'get-event', 'get-venue', 'get-booking', 'consume-order', 'list-orders', 'storefront']);

/** The request of every function's load but book's, with the rows it needs; consume-order's carries the deliverers' token. */
export async function requestFor(fn: string, db: pg.Client, authorization: string, delivererAuthorization: string): Promise<Request> {
  switch (fn) {
    case 'list-events':
      return { method: 'GET', path: '/api/v1/inventory/events' };
    case 'storefront':
      return { method: 'GET', path: '/' };
    case 'get-event':
      return { method: 'GET', path: '/api/v1/inventory/event/1' };
    case 'get-venue':
      return { method: 'GET', path: '/api/v1/inventory/venue/1' };
    case 'get-booking':
    case 'consume-order': {
      const { rows } = await db.query<{ booking_id: string }>(
        "INSERT INTO bookings (booking_id, customer_id, event_id, ticket_count, total_price, status) VALUES (gen_random_uuid(), 1, 1, 1, 45, 'CONFIRMED') RETURNING booking_id",
      );
      const bookingId = rows[0]!.booking_id;
      if (fn === 'get-booking') return { method: 'GET', path: `/api/v1/booking/${bookingId}`, headers: { authorization } };
      // Redeliveries of a confirmed booking: the idempotent path every duplicate takes.
      return {
        method: 'POST',
        path: '/',
        headers: { ...json, authorization: delivererAuthorization, 'ce-specversion': '1.0', 'ce-id': 'load', 'ce-type': 'dev.knative.kafka.event', 'ce-source': '/load' },
        body: JSON.stringify({ bookingId, userId: 1, eventId: 1, ticketCount: 1 }),
      };
    }
    case 'list-orders':
      return { method: 'GET', path: '/api/v1/orders', headers: { authorization } };
    default:
      throw new Error(`no load scenario for ${fn}`);
  }
}

/** One ticket for customer 1 (the token's) on `eventId`. */
export function bookingRequest(eventId: number, authorization: string): Request {
  return { method: 'POST', path: '/api/v1/booking', headers: { ...json, authorization }, body: JSON.stringify({ userId: 1, eventId, ticketCount: 1 }) };
}
