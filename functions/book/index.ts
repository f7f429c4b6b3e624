import { createHash } from 'node:crypto';
import { mayActFor } from '../../shared/auth.js';
import { pool } from '../../shared/db.js';
import { problems } from '../../shared/errors.js';
import { httpFunction } from '../../shared/http-function.js';
import { Decimal } from '../../shared/json.js';
import { bookingOutcomes, ticketsSold } from '../../shared/metrics.js';
import { QUEUE_PASS_HEADER, readPass } from '../../shared/queue-pass.js';
import { idSchema } from '../../shared/schemas.js';
import { findByKey, reservations, type BookingRow, type Outcome, type Reservation } from './reserve.js';

/** Most tickets one booking may take: a flash sale must not go to one buyer. */
export const MAX_TICKETS_PER_BOOKING = 10;

interface BookingRequest {
  userId: number;
  eventId: number;
  ticketCount: number;
}

/**
 * POST /api/v1/booking: reserves tickets and accepts a booking, for the
 * customer of the caller's token (or anyone's, for an admin). Its
 * reservation shares one transaction with those arriving at the same time
 * (reserve.ts): the customer is checked, the tickets taken under the event's
 * row lock (the database refuses to go below zero anyway), the booking
 * stored as PENDING with its outbox row, which wakes the relay at commit.
 * An event's per-customer maximum is checked under the same lock, and so,
 * for an event sold through its waiting room, is the pass (Queue-Pass),
 * which the booking spends. The order follows through Kafka.
 */
export default httpFunction<Record<string, never>, Record<string, never>, BookingRequest>({
  name: 'book',
  route: { method: 'POST', path: '/api/v1/booking' },
  access: 'token',
  success: 201,
  schemas: {
    header: {
      type: 'object',
      properties: {
        'idempotency-key': { type: 'string', pattern: '^[\\x21-\\x7e]{1,200}$', description: 'Makes a retried POST safe: the same key and body answer the first booking again' },
        [QUEUE_PASS_HEADER]: {
          type: 'string',
          pattern: '^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$',
          maxLength: 2048,
          description: 'The waiting-room pass of the customer for the event (GET /api/v1/queue/{eventId}); required while the event sells through its waiting room',
        },
      },
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

    const pass = await readPass(headers[QUEUE_PASS_HEADER] as string | undefined, body.userId, body.eventId);

    const outcome = await bookOrReplay({ ...body, key, fingerprint, pass });
    if (outcome.kind === 'unknownCustomer') {
      bookingOutcomes.inc({ outcome: 'unknown_customer' });
      throw problems.notFound(`Customer ${body.userId} does not exist`);
    }
    if (outcome.kind === 'unknownEvent') {
      bookingOutcomes.inc({ outcome: 'unknown_event' });
      throw problems.notFound(`Event ${body.eventId} does not exist`);
    }
    if (outcome.kind === 'passRequired') {
      bookingOutcomes.inc({ outcome: 'pass_required' });
      throw problems.queuePassRequired(body.eventId);
    }
    if (outcome.kind === 'passRefused') {
      bookingOutcomes.inc({ outcome: 'pass_refused' });
      throw problems.queuePassInvalid(outcome.fault, outcome.detail);
    }
    if (outcome.kind === 'soldOut') {
      bookingOutcomes.inc({ outcome: 'sold_out' });
      throw problems.notEnoughTickets(body.eventId, outcome.left);
    }
    if (outcome.kind === 'overLimit') {
      bookingOutcomes.inc({ outcome: 'over_limit' });
      throw problems.ticketLimitReached(body.eventId, outcome.limit, outcome.mayStillBook);
    }
    const { booking } = outcome;
    const replayed = outcome.kind === 'replayed';
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
async function bookOrReplay(request: Reservation): Promise<Outcome> {
  const earlier = request.key ? await findByKey(pool, request.userId, request.key) : undefined;
  return earlier ? { kind: 'replayed', booking: earlier } : reservations.submit(request);
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
