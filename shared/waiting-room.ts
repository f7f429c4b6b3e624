import { randomBytes } from 'node:crypto';
import { mayActFor, type Principal } from './auth.js';
import type { Queryable } from './db.js';
import { problems, type Problem } from './errors.js';
import { issuePass, passFaultDetail, type PassFault } from './queue-pass.js';

// The waiting room's places (queue_entries, migrations/6_waiting_room.sql),
// as join-queue, queue-position and book read and write them; the admitter
// (admitter/admitter.ts) moves the line.

/** A customer's place in an event's line, as the database reads it now. */
interface PlaceRow {
  admitted_at: Date | null;
  expires_at: Date | null;
  used_at: Date | null;
  starts_at: Date;
  admit_per_minute: number;
  /** Customers still waiting ahead; null once admitted, and before the start, when the line is not yet drawn. */
  ahead: number | null;
  /** The pass expired unused (by the database's clock, or as the admitter counted it). */
  lapsed: boolean;
  now: Date;
}

/** What join-queue and queue-position answer. */
export interface PlaceView {
  status: 'WAITING' | 'ADMITTED';
  /** 1 for the next to be admitted, 0 once admitted; null before the start. */
  position: number | null;
  estimatedWaitSeconds: number;
  /** The pass to book with, while the turn is open. */
  pass?: string;
  startsAt?: string;
  passExpiresAt?: string;
  /** Why an admitted customer's turn is over. */
  turnEnded?: 'used' | 'expired';
}

/**
 * A random key for a customer who joins before the start: ordering by it is
 * a uniform shuffle of everyone in the room when the sale starts. From the
 * system's CSPRNG, 62 bits (collisions fall to customer_id), never shown.
 */
function shuffleKey(): string {
  return String(randomBytes(8).readBigUInt64BE() >> 2n);
}

/**
 * Puts the customer in the event's line, unless they are already in it:
 * before the start at a random place among the early joiners (a negative
 * key), after it behind everyone (the next arrival number). Whether they
 * came before the start is the database's clock's to say, in the same
 * statement. False when they were in it already, or when the event has no
 * waiting room or either does not exist (see `whyNoPlace`).
 */
export async function joinLine(db: Queryable, eventId: number, customerId: number): Promise<boolean> {
  const { rowCount } = await db.query(
    `INSERT INTO queue_entries (event_id, customer_id, line_key)
     SELECT e.event_id, c.customer_id,
            CASE WHEN now() < e.on_sale_starts_at THEN -$3::bigint ELSE nextval('queue_arrivals') END
       FROM events e, customers c
      WHERE e.event_id = $1 AND e.on_sale_starts_at IS NOT NULL AND c.customer_id = $2
     ON CONFLICT ON CONSTRAINT queue_entries_one_per_customer DO NOTHING`,
    [eventId, customerId, shuffleKey()],
  );
  return rowCount === 1;
}

/**
 * The customer's place, or undefined when they have none. Their position
 * counts those still waiting ahead of them in line order, one index range
 * of the event's waiting entries.
 */
export async function placeInLine(db: Queryable, eventId: number, customerId: number): Promise<PlaceView | undefined> {
  const { rows } = await db.query<PlaceRow>(
    `SELECT q.admitted_at, q.expires_at, q.used_at, e.on_sale_starts_at AS starts_at, e.on_sale_admit_per_minute AS admit_per_minute, now() AS now,
            q.used_at IS NULL AND (q.expiry_counted OR q.expires_at <= now()) AS lapsed,
            CASE WHEN q.admitted_at IS NULL AND now() >= e.on_sale_starts_at THEN
              (SELECT count(*)::int FROM queue_entries a
                WHERE a.event_id = q.event_id AND a.admitted_at IS NULL AND (a.line_key, a.customer_id) < (q.line_key, q.customer_id))
            END AS ahead
       FROM queue_entries q
       JOIN events e USING (event_id)
      WHERE q.event_id = $1 AND q.customer_id = $2 AND e.on_sale_starts_at IS NOT NULL`,
    [eventId, customerId],
  );
  const place = rows[0];
  return place && view(place, eventId, customerId);
}

async function view(place: PlaceRow, eventId: number, customerId: number): Promise<PlaceView> {
  if (place.admitted_at === null) {
    if (place.ahead === null) {
      // Not drawn yet: at least the time to the start.
      const untilStart = Math.max(0, Math.ceil((place.starts_at.getTime() - place.now.getTime()) / 1000));
      return { status: 'WAITING', position: null, estimatedWaitSeconds: untilStart, startsAt: place.starts_at.toISOString() };
    }
    const position = place.ahead + 1;
    // At the configured rate; slower while the room is full of active passes.
    return { status: 'WAITING', position, estimatedWaitSeconds: Math.ceil((position * 60) / place.admit_per_minute) };
  }
  const expiresAt = place.expires_at!;
  const admitted = { status: 'ADMITTED', position: 0, estimatedWaitSeconds: 0 } as const;
  if (place.used_at !== null) return { ...admitted, passExpiresAt: expiresAt.toISOString(), turnEnded: 'used' };
  if (place.lapsed) return { ...admitted, passExpiresAt: expiresAt.toISOString(), turnEnded: 'expired' };
  return { ...admitted, pass: await issuePass({ customerId, eventId, expiresAt }), passExpiresAt: expiresAt.toISOString() };
}

/** The problem that says why the customer has no place in the event's line. */
export async function whyNoPlace(db: Queryable, eventId: number, customerId: number): Promise<Problem> {
  const { rows } = await db.query<{ queued: boolean | null; customer: boolean }>(
    `SELECT (SELECT on_sale_starts_at IS NOT NULL FROM events WHERE event_id = $1) AS queued,
            EXISTS (SELECT 1 FROM customers WHERE customer_id = $2) AS customer`,
    [eventId, customerId],
  );
  const { queued, customer } = rows[0]!;
  if (queued === null) return problems.notFound(`Event ${eventId} does not exist`);
  if (!queued) return problems.noWaitingRoom(eventId);
  if (!customer) return problems.notFound(`Customer ${customerId} does not exist`);
  return problems.notFound(`Customer ${customerId} has not joined the waiting room of event ${eventId}: POST /api/v1/queue/${eventId} joins it`);
}

/** A customer's turn at an event, as a booking finds it under its row lock. */
export interface Turn {
  admitted: boolean;
  /** Unused, and unexpired by the database's clock and not counted as expired by the admitter. */
  open: boolean;
  used: boolean;
}

export const turnKey = (customerId: number, eventId: number) => `${customerId} ${eventId}`;

/**
 * Locks the places of customers who book with a genuine pass (inside the
 * booking's transaction, after the events' locks, in one order), by
 * turnKey. A place counted as expired is not open even if the clock of
 * this transaction says otherwise: it may no longer be used.
 */
export async function lockTurns(db: Queryable, holders: { customerId: number; eventId: number }[]): Promise<Map<string, Turn>> {
  if (holders.length === 0) return new Map();
  const { rows } = await db.query<Turn & { customer_id: number; event_id: number }>(
    `SELECT customer_id, event_id, admitted_at IS NOT NULL AS admitted, used_at IS NOT NULL AS used,
            used_at IS NULL AND NOT expiry_counted AND expires_at > now() AS open
       FROM queue_entries
      WHERE (customer_id, event_id) IN (SELECT * FROM unnest($1::int[], $2::int[]))
      ORDER BY event_id, customer_id
        FOR UPDATE`,
    [holders.map((h) => h.customerId), holders.map((h) => h.eventId)],
  );
  return new Map(rows.map(({ customer_id, event_id, ...turn }) => [turnKey(customer_id, event_id), turn]));
}

/** Why a genuine pass's turn does not let its holder book now, or undefined when it does. */
export function turnFault(turn: Turn | undefined): { fault: PassFault; detail: string } | undefined {
  const fault: keyof typeof passFaultDetail | undefined = !turn?.admitted ? 'not-admitted' : turn.used ? 'used' : !turn.open ? 'expired' : undefined;
  return fault && { fault, detail: passFaultDetail[fault] };
}

/** Ends the turns a booking used, in its transaction: their slots free up for the admitter. */
export async function useTurns(db: Queryable, turns: { customerId: number; eventId: number }[]): Promise<void> {
  if (turns.length === 0) return;
  await db.query(
    `UPDATE queue_entries SET used_at = now()
      WHERE (customer_id, event_id) IN (SELECT * FROM unnest($1::int[], $2::int[]))`,
    [turns.map((t) => t.customerId), turns.map((t) => t.eventId)],
  );
}

/**
 * The customer a waiting-room request is for: `userId` when given (an
 * admin's, or the caller's own), else the token's customer; 403 for anyone
 * else's, as everywhere.
 */
export function customerFor(principal: Principal, userId: number | undefined): number {
  const customerId = userId ?? principal.customerId;
  if (customerId === undefined) throw problems.validation([{ name: 'query/userId', reason: 'is required for a token linked to no customer' }]);
  mayActFor(principal, customerId);
  return customerId;
}
