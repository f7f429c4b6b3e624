import { randomUUID } from 'node:crypto';
import { transaction, type Queryable } from '../../shared/db.js';
import { topics } from '../../shared/topics.js';
import { bookingBatchSize } from '../../shared/metrics.js';
import { GroupCommit } from '../../shared/group-commit.js';
import type { PassFault, PassReading } from '../../shared/queue-pass.js';
import { lockTurns, turnFault, turnKey, useTurns, type Turn } from '../../shared/waiting-room.js';

/** Most requests one reservation transaction takes: bounds its statements and its lock time. */
const MAX_BATCH = 200;

export interface Reservation {
  userId: number;
  eventId: number;
  ticketCount: number;
  key?: string;
  fingerprint?: string;
  /** The Queue-Pass header as read before batching; needed only for an event sold through its waiting room. */
  pass?: PassReading;
}

export interface BookingRow {
  booking_id: string;
  customer_id: number;
  event_id: number;
  ticket_count: number;
  total_price: string;
  status: string;
  request_hash: string | null;
}

/** What became of one request: each caller's own answer, as if it had come alone. */
export type Outcome =
  | { kind: 'booked' | 'replayed'; booking: BookingRow }
  | { kind: 'unknownCustomer' }
  | { kind: 'unknownEvent' }
  | { kind: 'soldOut'; left: number }
  | { kind: 'overLimit'; limit: number; mayStillBook: number }
  | { kind: 'passRequired' }
  | { kind: 'passRefused'; fault: PassFault; detail: string };

/** What the allocation decided, before anything is written. */
type Decision = { kind: 'book'; bookingId: string } | { kind: 'sameKeyAs'; index: number } | Exclude<Outcome, { booking: BookingRow }>;

const BOOKING_COLUMNS = 'booking_id, customer_id, event_id, ticket_count, total_price, status, request_hash';

/**
 * Concurrent reservations share one transaction (group commit): a hot
 * event's row is locked, and its commit waited for, once per batch instead
 * of once per booking.
 */
export const reservations = new GroupCommit(reserveAll, { maxBatch: MAX_BATCH, onBatch: (size) => bookingBatchSize.observe(size) });

/** The booking an Idempotency-Key of the customer made, if any. */
export async function findByKey(db: Queryable, customerId: number, key: string): Promise<BookingRow | undefined> {
  const { rows } = await db.query<BookingRow>(`SELECT ${BOOKING_COLUMNS} FROM bookings WHERE customer_id = $1 AND idempotency_key = $2`, [customerId, key]);
  return rows[0];
}

/**
 * One transaction for the whole batch: checks the customers, locks the
 * events (in id order, so instances never deadlock on them), counts what
 * the customers already hold of limited events, allocates the tickets in
 * arrival order, then writes the bookings, the tickets taken and the outbox
 * rows with one statement each. A failure rolls all of it back and reaches
 * every caller of the batch.
 */
async function reserveAll(requests: Reservation[]): Promise<Outcome[]> {
  return transaction(async (db) => {
    const customers = await knownCustomers(db, requests);
    const events = await lockEvents(db, requests);
    const turns = await lockTurns(db, passHolders(requests, events));
    const held = await ticketsHeld(db, requests, events);
    const decisions = allocate(requests, customers, events, held, turns);
    const booked = await storeBookings(db, requests, decisions);
    // A pass is spent by the booking it made, in the same transaction.
    await useTurns(db, [...booked.values()].filter((b) => events.get(b.event_id)?.queued).map((b) => ({ customerId: b.customer_id, eventId: b.event_id })));
    const existing = await bookingsOfLostKeys(db, requests, decisions, booked);
    const outcomes: Outcome[] = [];
    decisions.forEach((decision, i) => {
      if (decision.kind === 'sameKeyAs') {
        // The earlier request came first and booked: this one is its retry.
        outcomes.push({ kind: 'replayed', booking: (outcomes[decision.index] as { booking: BookingRow }).booking });
      } else if (decision.kind !== 'book') {
        outcomes.push(decision);
      } else {
        const mine = booked.get(decision.bookingId);
        outcomes.push(mine ? { kind: 'booked', booking: mine } : { kind: 'replayed', booking: existing.get(keyOf(requests[i]!)!)! });
      }
    });
    return outcomes;
  });
}

async function knownCustomers(db: Queryable, requests: Reservation[]): Promise<Set<number>> {
  const ids = [...new Set(requests.map((r) => r.userId))];
  const { rows } = await db.query<{ customer_id: number }>('SELECT customer_id FROM customers WHERE customer_id = ANY($1::int[])', [ids]);
  return new Set(rows.map((r) => r.customer_id));
}

/** A locked event: the tickets left, the most one customer may hold (null: no limit), and whether it sells through its waiting room. */
interface LockedEvent {
  left: number;
  limit: number | null;
  queued: boolean;
}

/**
 * The events as of the lock: no other instance sells them until this batch
 * commits. FOR NO KEY UPDATE, not FOR UPDATE: inserts that only refer to an
 * event (orders, queue entries) take FOR KEY SHARE for their foreign key and
 * need not wait for the batch.
 */
async function lockEvents(db: Queryable, requests: Reservation[]): Promise<Map<number, LockedEvent>> {
  const ids = [...new Set(requests.map((r) => r.eventId))];
  const { rows } = await db.query<{ event_id: number; left_capacity: number; max_tickets_per_customer: number | null; queued: boolean }>(
    `SELECT event_id, left_capacity, max_tickets_per_customer, on_sale_starts_at IS NOT NULL AS queued
       FROM events WHERE event_id = ANY($1::int[]) ORDER BY event_id FOR NO KEY UPDATE`,
    [ids],
  );
  return new Map(rows.map((r) => [r.event_id, { left: r.left_capacity, limit: r.max_tickets_per_customer, queued: r.queued }]));
}

/** The customers who book a waiting-room event with a genuine pass: their turns are locked and checked. */
function passHolders(requests: Reservation[], events: Map<number, LockedEvent>): { customerId: number; eventId: number }[] {
  return requests.filter((r) => events.get(r.eventId)?.queued && r.pass?.kind === 'genuine').map((r) => ({ customerId: r.userId, eventId: r.eventId }));
}

/**
 * The tickets each customer of the batch holds (PENDING or CONFIRMED) of
 * each limited event they ask for, by holdingKey. A statement of its own
 * after the lock, so its snapshot holds every booking of those events
 * committed before: every booking takes the same lock to be made.
 */
async function ticketsHeld(db: Queryable, requests: Reservation[], events: Map<number, LockedEvent>): Promise<Map<string, number>> {
  const limited = requests.filter((r) => events.get(r.eventId)?.limit != null);
  if (limited.length === 0) return new Map();
  const { rows } = await db.query<{ customer_id: number; event_id: number; held: number }>(
    `SELECT customer_id, event_id, sum(ticket_count)::int AS held
       FROM bookings
      WHERE (customer_id, event_id) IN (SELECT * FROM unnest($1::int[], $2::int[]))
        AND status IN ('PENDING', 'CONFIRMED')
      GROUP BY customer_id, event_id`,
    [limited.map((r) => r.userId), limited.map((r) => r.eventId)],
  );
  return new Map(rows.map((r) => [holdingKey(r.customer_id, r.event_id), r.held]));
}

/**
 * In arrival order, as if each had come alone: a key already used in this
 * batch by a booking replays it; otherwise the customer and event must
 * exist, an event sold through its waiting room needs a genuine pass whose
 * turn is open (not spent by an earlier request of the batch), the tickets
 * must fit in what the earlier requests left, and, for a limited event,
 * with what the customer holds and booked earlier in the batch, within the
 * limit.
 */
function allocate(requests: Reservation[], customers: Set<number>, events: Map<number, LockedEvent>, held: Map<string, number>, turns: Map<string, Turn>): Decision[] {
  const bookedKeys = new Map<string, number>();
  return requests.map((request, i): Decision => {
    const key = keyOf(request);
    const earlier = key === undefined ? undefined : bookedKeys.get(key);
    if (earlier !== undefined) return { kind: 'sameKeyAs', index: earlier };
    if (!customers.has(request.userId)) return { kind: 'unknownCustomer' };
    const event = events.get(request.eventId);
    if (event === undefined) return { kind: 'unknownEvent' };
    const turn = turns.get(turnKey(request.userId, request.eventId));
    if (event.queued) {
      const refusal = passRefusal(request.pass, turn);
      if (refusal) return refusal;
    }
    if (event.left < request.ticketCount) return { kind: 'soldOut', left: event.left };
    const holding = holdingKey(request.userId, request.eventId);
    const holds = held.get(holding) ?? 0;
    if (event.limit !== null && holds + request.ticketCount > event.limit) {
      return { kind: 'overLimit', limit: event.limit, mayStillBook: Math.max(0, event.limit - holds) };
    }
    event.left -= request.ticketCount;
    held.set(holding, holds + request.ticketCount);
    if (turn) turn.used = true;
    if (key !== undefined) bookedKeys.set(key, i);
    return { kind: 'book', bookingId: randomUUID() };
  });
}

function passRefusal(pass: PassReading | undefined, turn: Turn | undefined): Decision | undefined {
  if (pass === undefined || pass.kind === 'none') return { kind: 'passRequired' };
  if (pass.kind === 'refused') return { kind: 'passRefused', fault: pass.fault, detail: pass.detail };
  const fault = turnFault(turn);
  return fault && { kind: 'passRefused', ...fault };
}

function holdingKey(customerId: number, eventId: number): string {
  return `${customerId} ${eventId}`;
}

/**
 * Writes the accepted bookings, takes their tickets and queues their
 * messages. A key another instance committed since the look-up before
 * batching is skipped (ON CONFLICT), not an error that fails the batch; its
 * tickets are not taken. The CHECK constraint refuses any oversell a bug
 * could still make.
 */
async function storeBookings(db: Queryable, requests: Reservation[], decisions: Decision[]): Promise<Map<string, BookingRow>> {
  const accepted = decisions.flatMap((d, i) => (d.kind === 'book' ? [{ bookingId: d.bookingId, request: requests[i]! }] : []));
  if (accepted.length === 0) return new Map();
  const column = <T>(pick: (r: Reservation) => T) => accepted.map((a) => pick(a.request));
  const { rows } = await db.query<BookingRow>(
    `INSERT INTO bookings (booking_id, customer_id, event_id, ticket_count, total_price, idempotency_key, request_hash)
     SELECT r.booking_id, r.customer_id, r.event_id, r.ticket_count, e.ticket_price * r.ticket_count, r.idempotency_key, r.request_hash
       FROM unnest($1::uuid[], $2::int[], $3::int[], $4::int[], $5::text[], $6::text[]) WITH ORDINALITY
            AS r(booking_id, customer_id, event_id, ticket_count, idempotency_key, request_hash, arrival)
       JOIN events e USING (event_id)
      ORDER BY r.arrival
     ON CONFLICT (customer_id, idempotency_key) DO NOTHING
     RETURNING ${BOOKING_COLUMNS}`,
    [accepted.map((a) => a.bookingId), column((r) => r.userId), column((r) => r.eventId), column((r) => r.ticketCount), column((r) => r.key ?? null), column((r) => r.fingerprint ?? null)],
  );
  if (rows.length === 0) return new Map();

  const taken = new Map<number, number>();
  for (const row of rows) taken.set(row.event_id, (taken.get(row.event_id) ?? 0) + row.ticket_count);
  await db.query(
    `UPDATE events e SET left_capacity = e.left_capacity - t.taken
       FROM unnest($1::int[], $2::int[]) AS t(event_id, taken)
      WHERE e.event_id = t.event_id`,
    [[...taken.keys()], [...taken.values()]],
  );
  // The message is shaped by the database (booking_message), so a re-driven booking sends the same one.
  await db.query(
    `INSERT INTO outbox (topic, message_key, payload)
     SELECT $1, b.booking_id::text, booking_message(b)
       FROM unnest($2::uuid[]) WITH ORDINALITY AS i(booking_id, arrival)
       JOIN bookings b USING (booking_id)
      ORDER BY i.arrival`,
    [topics.booking, rows.map((r) => r.booking_id)],
  );
  return new Map(rows.map((r) => [r.booking_id, r]));
}

/** The bookings that keys skipped by ON CONFLICT already made, by key. */
async function bookingsOfLostKeys(db: Queryable, requests: Reservation[], decisions: Decision[], booked: Map<string, BookingRow>): Promise<Map<string, BookingRow>> {
  const lost = requests.filter((_, i) => {
    const decision = decisions[i]!;
    return decision.kind === 'book' && !booked.has(decision.bookingId);
  });
  if (lost.length === 0) return new Map();
  const { rows } = await db.query<BookingRow & { idempotency_key: string }>(
    `SELECT ${BOOKING_COLUMNS}, idempotency_key FROM bookings
      WHERE (customer_id, idempotency_key) IN (SELECT * FROM unnest($1::int[], $2::text[]))`,
    [lost.map((r) => r.userId), lost.map((r) => r.key)],
  );
  return new Map(rows.map(({ idempotency_key, ...booking }) => [keyOf({ userId: booking.customer_id, key: idempotency_key })!, booking]));
}

function keyOf(request: Pick<Reservation, 'userId' | 'key'>): string | undefined {
  return request.key === undefined ? undefined : `${request.userId} ${request.key}`;
}
