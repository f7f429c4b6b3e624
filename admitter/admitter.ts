import { pool, transaction, type Queryable } from '../shared/db.js';
import { queueActivePasses, queueAdmitted, queuePassesExpired, queueWait, queueWaiting } from '../shared/metrics.js';

/** What one tick did and found. */
export interface Tick {
  now: Date;
  admitted: number;
  expired: number;
  waiting: number;
  active: number;
}

export interface TickOptions {
  /** The moment the tick runs at: the database's clock unless a test gives one (simulated time). */
  now?: Date;
  /** How often ticks come: a room keeps at most two ticks' worth of credit. */
  tickMs: number;
  /** Only these events' rooms (tests, which share a database, tick their own); every room by default. */
  events?: number[];
}

/** Expired passes counted by one statement; the rest wait for the next tick. */
const EXPIRED_PER_TICK = 5_000;

/**
 * One tick of the admitter: counts the passes that expired unused, admits
 * the next customers of every started sale with tickets left and people
 * waiting, then measures the rooms. Any number of admitters may tick at
 * once: one at a time admits a room (its waiting_rooms row, taken SKIP
 * LOCKED), and each expired pass is counted by one.
 */
export async function admitTick({ now: given, tickMs, events }: TickOptions): Promise<Tick> {
  const now = given ?? (await pool.query<{ now: Date }>('SELECT now()')).rows[0]!.now;
  const scope = events ?? null;
  const expired = await countExpiredPasses(pool, now, scope);
  queuePassesExpired.inc(expired);
  let admitted = 0;
  for (const eventId of await roomsToAdmit(pool, now, scope)) {
    const waits = await admitInto(eventId, now, tickMs);
    for (const seconds of waits) queueWait.observe(seconds);
    queueAdmitted.inc(waits.length);
    admitted += waits.length;
  }
  const { waiting, active } = await measure(pool, now, scope);
  queueWaiting.set(waiting);
  queueActivePasses.set(active);
  return { now, admitted, expired, waiting, active };
}

/**
 * Marks the passes that expired unused as counted, and counts them: their
 * slots are free already (a pass is active only until it expires). A pass
 * a booking holds locked is left to the next tick: it may be being used.
 */
async function countExpiredPasses(db: Queryable, now: Date, scope: number[] | null): Promise<number> {
  const { rowCount } = await db.query(
    `UPDATE queue_entries q SET expiry_counted = true
       FROM (SELECT event_id, customer_id FROM queue_entries
              WHERE admitted_at IS NOT NULL AND used_at IS NULL AND NOT expiry_counted AND expires_at <= $1
                AND ($3::int[] IS NULL OR event_id = ANY($3))
              ORDER BY event_id, customer_id
              LIMIT $2
                FOR UPDATE SKIP LOCKED) lapsed
      WHERE q.event_id = lapsed.event_id AND q.customer_id = lapsed.customer_id`,
    [now, EXPIRED_PER_TICK, scope],
  );
  return rowCount ?? 0;
}

/** Events whose sale has started, with tickets left and someone waiting. */
async function roomsToAdmit(db: Queryable, now: Date, scope: number[] | null): Promise<number[]> {
  const { rows } = await db.query<{ event_id: number }>(
    `SELECT e.event_id FROM events e
      WHERE e.on_sale_starts_at <= $1 AND e.left_capacity > 0
        AND EXISTS (SELECT 1 FROM queue_entries q WHERE q.event_id = e.event_id AND q.admitted_at IS NULL)
        AND ($2::int[] IS NULL OR e.event_id = ANY($2))
      ORDER BY e.event_id`,
    [now, scope],
  );
  return rows.map((r) => r.event_id);
}

/** A room as its admitter reads it, under the room's lock. */
interface Room {
  credit: number;
  credited_at: Date;
  starts_at: Date;
  admit_per_minute: number;
  max_active: number;
  pass_minutes: number;
  /** Passes admitted, unused and unexpired at the tick's moment. */
  active: number;
}

/**
 * Admits the next customers of one event's line, in line order, with a
 * pass for the event's passMinutes: as many as the room's credit allows
 * (see `accrued`), never more than leave maxActive passes active. Nothing
 * when another admitter holds the room. Resolves with how long each waited,
 * in seconds.
 */
async function admitInto(eventId: number, now: Date, tickMs: number): Promise<number[]> {
  return transaction(async (db) => {
    // The room's first tick credits it from the start.
    await db.query(
      `INSERT INTO waiting_rooms (event_id, credited_at)
       SELECT event_id, on_sale_starts_at FROM events WHERE event_id = $1 AND on_sale_starts_at IS NOT NULL
       ON CONFLICT (event_id) DO NOTHING`,
      [eventId],
    );
    const { rows } = await db.query<Room>(
      `SELECT w.credit, w.credited_at, e.on_sale_starts_at AS starts_at, e.on_sale_admit_per_minute AS admit_per_minute,
              e.on_sale_max_active AS max_active, e.on_sale_pass_minutes AS pass_minutes,
              (SELECT count(*)::int FROM queue_entries q
                WHERE q.event_id = w.event_id AND q.admitted_at IS NOT NULL AND q.used_at IS NULL AND NOT q.expiry_counted AND q.expires_at > $2) AS active
         FROM waiting_rooms w
         JOIN events e USING (event_id)
        WHERE w.event_id = $1 AND e.on_sale_starts_at IS NOT NULL
          FOR UPDATE OF w SKIP LOCKED`,
      [eventId, now],
    );
    const room = rows[0];
    if (!room) return [];
    const credit = accrued(room, now, tickMs);
    // The epsilon keeps a credit that sums to 1 in binary fractions (7 a minute) from falling a tick behind.
    const count = Math.max(0, Math.min(Math.floor(credit + 1e-9), room.max_active - room.active));
    const admitted = count === 0 ? [] : (await db.query<{ waited: number }>(
      `UPDATE queue_entries q
          SET admitted_at = $2, expires_at = $2::timestamptz + make_interval(mins => $3)
         FROM (SELECT customer_id FROM queue_entries
                WHERE event_id = $1 AND admitted_at IS NULL
                ORDER BY line_key, customer_id
                LIMIT $4) next
        WHERE q.event_id = $1 AND q.customer_id = next.customer_id
        RETURNING greatest(0, extract(epoch FROM $2::timestamptz - greatest(q.joined_at, $5::timestamptz)))::float8 AS waited`,
      [eventId, now, room.pass_minutes, count, room.starts_at],
    )).rows;
    await db.query('UPDATE waiting_rooms SET credit = $2, credited_at = greatest(credited_at, $3) WHERE event_id = $1', [
      eventId,
      Math.max(0, credit - admitted.length),
      now,
    ]);
    return admitted.map((row) => row.waited);
  });
}

/**
 * The room's credit at `now` (a token bucket): what it had, plus
 * admitPerMinute for every minute since it was last credited, capped at two
 * ticks' worth (at least one admission). Over any stretch of time the room
 * admits at most the rate allows plus that cap; a tick that comes a little
 * late loses nothing, and an admitter back from an outage does not make up
 * for lost time in a burst.
 */
function accrued(room: Pick<Room, 'credit' | 'credited_at' | 'admit_per_minute'>, now: Date, tickMs: number): number {
  const elapsedMs = Math.max(0, now.getTime() - room.credited_at.getTime());
  const cap = Math.max(1, (room.admit_per_minute * 2 * tickMs) / 60_000);
  return Math.min(cap, room.credit + (room.admit_per_minute * elapsedMs) / 60_000);
}

/** Customers waiting in rooms with tickets left, and passes active at `now`, over every room. */
async function measure(db: Queryable, now: Date, scope: number[] | null): Promise<{ waiting: number; active: number }> {
  const { rows } = await db.query<{ waiting: number; active: number }>(
    `SELECT (SELECT count(*)::int FROM queue_entries q JOIN events e USING (event_id)
              WHERE q.admitted_at IS NULL AND e.left_capacity > 0 AND ($2::int[] IS NULL OR q.event_id = ANY($2))) AS waiting,
            (SELECT count(*)::int FROM queue_entries
              WHERE admitted_at IS NOT NULL AND used_at IS NULL AND NOT expiry_counted AND expires_at > $1
                AND ($2::int[] IS NULL OR event_id = ANY($2))) AS active`,
    [now, scope],
  );
  return rows[0]!;
}
