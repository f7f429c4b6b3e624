import { pool } from '../shared/db.js';
import { bookingsRedriven, oldestPendingBooking } from '../shared/metrics.js';

// Bookings PENDING for longer than the threshold whose message is not still
// waiting in the outbox (an outage of Kafka is the outbox's to ride out, not
// a reason to pile up copies) get their message published again, at most
// once per threshold each. consume-order is idempotent, so a copy is always
// safe; what this guards against is a message lost past the outbox (a
// dead-letter, a deliverer that acknowledged and dropped it).
const REDRIVE = `
  WITH stuck AS (
    SELECT b.booking_id FROM bookings b
     WHERE b.status = 'PENDING'
       AND b.created_at < now() - $2 * interval '1 millisecond'
       AND (b.redriven_at IS NULL OR b.redriven_at < now() - $2 * interval '1 millisecond')
       AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.message_key = b.booking_id::text AND o.published_at IS NULL)
     ORDER BY b.created_at
     LIMIT 500
       FOR UPDATE SKIP LOCKED),
  marked AS (
    UPDATE bookings b SET redriven_at = now() FROM stuck WHERE b.booking_id = stuck.booking_id RETURNING b.*)
  INSERT INTO outbox (topic, message_key, payload)
  SELECT $1, marked.booking_id::text, booking_message(marked::bookings) FROM marked`;

const OLDEST_PENDING = `
  SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS seconds
    FROM bookings WHERE status = 'PENDING'`;

/** Publishes again the message of every booking PENDING longer than `afterMs`; returns how many. */
export async function redriveStuckBookings(topic: string, afterMs: number): Promise<number> {
  const { rowCount } = await pool.query(REDRIVE, [topic, afterMs]);
  bookingsRedriven.inc(rowCount ?? 0);
  return rowCount ?? 0;
}

/** Updates the oldest-PENDING-booking gauge, which the alert rule watches. */
export async function measureOldestPending(): Promise<number> {
  const { rows } = await pool.query<{ seconds: number }>(OLDEST_PENDING);
  const seconds = rows[0]?.seconds ?? 0;
  oldestPendingBooking.set(seconds);
  return seconds;
}

// Published rows are kept a while (to look into a delivery), then removed in
// bounded steps so the outbox stays small and its indexes hot.
const PRUNE = `
  DELETE FROM outbox WHERE outbox_id IN (
    SELECT outbox_id FROM outbox
     WHERE published_at < now() - $1 * interval '1 millisecond'
     LIMIT 5000)`;

/** Removes outbox rows published longer than `keepMs` ago; returns how many. */
export async function prunePublished(keepMs: number): Promise<number> {
  const { rowCount } = await pool.query(PRUNE, [keepMs]);
  return rowCount ?? 0;
}
