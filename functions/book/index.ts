import { createHash, randomUUID } from 'node:crypto';
import type pg from 'pg';
import { mayActFor } from '../../shared/auth.js';
import { pool, transaction } from '../../shared/db.js';
import { problems } from '../../shared/errors.js';
import { httpFunction } from '../../shared/http-function.js';
import { Decimal } from '../../shared/json.js';
import { topics } from '../../shared/kafka.js';
import { bookingOutcomes, ticketsSold } from '../../shared/metrics.js';
import { idSchema } from '../../shared/schemas.js';

/** Most tickets one booking may take: a flash sale must not go to one buyer. */
export const MAX_TICKETS_PER_BOOKING = 10;

interface BookingRequest {
  userId: number;
  eventId: number;
  ticketCount: number;
}

interface BookingRow {
  booking_id: string;
  customer_id: number;
  event_id: number;
  ticket_count: number;
  total_price: string;
  status: string;
  request_hash: string | null;
}

/**
 * POST /api/v1/booking: reserves tickets and accepts a booking, for the
 * customer of the caller's token (or anyone's, for an admin). In one
 * transaction it checks the customer, takes the tickets with a conditional
 * update (the database refuses to go below zero anyway), stores the booking
 * as PENDING and its outbox row, which wakes the relay at commit. The order
 * follows through Kafka.
 */
export default httpFunction<Record<string, never>, Record<string, never>, BookingRequest>({
  name: 'book',
  route: { method: 'POST', path: '/api/v1/booking' },
  access: 'token',
  success: 201,
  schemas: {
    header: {
      type: 'object',
      properties: { 'idempotency-key': { type: 'string', pattern: '^[\\x21-\\x7e]{1,200}$', description: 'Makes a retried POST safe: the same key and body answer the first booking again' } },
    },
    body: {
      type: 'object',
      properties: {
        userId: idSchema,
        eventId: idSchema,
        ticketCount: { type: 'integer', minimum: 1, maximum: MAX_TICKETS_PER_BOOKING },
      },
      required: ['userId', 'eventId', 'ticketCount'],
      additionalProperties: false,
    },
  },

  async handle({ body, headers, principal }) {
    mayActFor(principal, body.userId);
    const key = headers['idempotency-key'] as string | undefined;
    const fingerprint = key && createHash('sha256').update(`${body.userId}:${body.eventId}:${body.ticketCount}`).digest('hex');

    const { booking, replayed } = await bookOrReplay(body, key, fingerprint);
    if (replayed && booking.request_hash !== fingerprint) {
      bookingOutcomes.inc({ outcome: 'key_reused' });
      throw problems.idempotencyKeyReused();
    }

    if (replayed) {
      bookingOutcomes.inc({ outcome: 'replayed' });
    } else {
      bookingOutcomes.inc({ outcome: 'accepted' });
      ticketsSold.inc(booking.ticket_count);
    }
    return {
      headers: { Location: `/api/v1/booking/${booking.booking_id}`, ...(replayed ? { 'Idempotent-Replayed': 'true' } : {}) },
      body: answer(booking),
    };
  },
});

/** A new booking, or, for an Idempotency-Key seen before, the booking it made. */
async function bookOrReplay(request: BookingRequest, key: string | undefined, fingerprint: string | undefined): Promise<{ booking: BookingRow; replayed: boolean }> {
  const earlier = key ? await findByKey(request.userId, key) : undefined;
  if (earlier) return { booking: earlier, replayed: true };
  try {
    return { booking: await transaction((db) => reserve(db, request, key, fingerprint)), replayed: false };
  } catch (error) {
    // Two requests with one key raced; the loser answers as a retry would.
    if (!(key && isKeyConflict(error))) throw error;
    return { booking: (await findByKey(request.userId, key))!, replayed: true };
  }
}

async function reserve(db: pg.PoolClient, request: BookingRequest, key: string | undefined, fingerprint: string | undefined): Promise<BookingRow> {
  const customer = await db.query('SELECT 1 FROM customers WHERE customer_id = $1', [request.userId]);
  if (customer.rowCount === 0) {
    bookingOutcomes.inc({ outcome: 'unknown_customer' });
    throw problems.notFound(`Customer ${request.userId} does not exist`);
  }

  // The condition is the reservation: two bookings can never both take the last tickets.
  const reserved = await db.query<{ total_price: string }>(
    `UPDATE events SET left_capacity = left_capacity - $2
      WHERE event_id = $1 AND left_capacity >= $2
      RETURNING ticket_price * $2 AS total_price`,
    [request.eventId, request.ticketCount],
  );
  if (reserved.rowCount === 0) throw await whyNotReserved(db, request.eventId);

  const bookingId = randomUUID();
  const { rows } = await db.query<BookingRow>(
    `INSERT INTO bookings (booking_id, customer_id, event_id, ticket_count, total_price, idempotency_key, request_hash)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     RETURNING booking_id, customer_id, event_id, ticket_count, total_price, status, request_hash`,
    [bookingId, request.userId, request.eventId, request.ticketCount, reserved.rows[0]!.total_price, key ?? null, fingerprint ?? null],
  );
  // The message is shaped by the database (booking_message), so a re-driven booking sends the same one.
  await db.query('INSERT INTO outbox (topic, message_key, payload) SELECT $1, booking_id::text, booking_message(b) FROM bookings b WHERE booking_id = $2', [
    topics.booking,
    bookingId,
  ]);
  return rows[0]!;
}

async function whyNotReserved(db: pg.PoolClient, eventId: number): Promise<Error> {
  const { rows } = await db.query<{ left_capacity: number }>('SELECT left_capacity FROM events WHERE event_id = $1', [eventId]);
  if (!rows[0]) {
    bookingOutcomes.inc({ outcome: 'unknown_event' });
    return problems.notFound(`Event ${eventId} does not exist`);
  }
  bookingOutcomes.inc({ outcome: 'sold_out' });
  return problems.notEnoughTickets(eventId, rows[0].left_capacity);
}

async function findByKey(customerId: number, key: string): Promise<BookingRow | undefined> {
  const { rows } = await pool.query<BookingRow>(
    `SELECT booking_id, customer_id, event_id, ticket_count, total_price, status, request_hash
       FROM bookings WHERE customer_id = $1 AND idempotency_key = $2`,
    [customerId, key],
  );
  return rows[0];
}

function isKeyConflict(error: unknown): boolean {
  return (error as { constraint?: string }).constraint === 'bookings_idempotency_key_once';
}

/** The original service's four fields, plus the booking id and its status. */
function answer(booking: BookingRow) {
  return {
    bookingId: booking.booking_id,
    userId: booking.customer_id,
    eventId: booking.event_id,
    ticketCount: booking.ticket_count,
    totalPrice: new Decimal(booking.total_price),
    status: booking.status,
  };
}
