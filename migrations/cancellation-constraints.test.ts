import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import type pg from 'pg';
import { pool } from '../shared/db.js';
import { createCustomer, createEvent } from '../shared/test-support/index.js';

after(() => pool.end());

/** Refused by the database for the constraint named, whether a CHECK or a trigger's. */
async function refusedBy(work: Promise<unknown>, constraint: string): Promise<void> {
  await assert.rejects(work, (error: pg.DatabaseError) => {
    assert.equal(error.constraint, constraint, error.message);
    return true;
  });
}

interface Booking {
  bookingId: string;
  customerId: number;
  eventId: number;
}

async function booking(status = 'PENDING'): Promise<Booking> {
  const [customerId, { eventId }] = await Promise.all([createCustomer(), createEvent()]);
  const bookingId = randomUUID();
  await pool.query('INSERT INTO bookings (booking_id, customer_id, event_id, ticket_count, total_price, status) VALUES ($1, $2, $3, 2, 20, $4)', [
    bookingId,
    customerId,
    eventId,
    status,
  ]);
  return { bookingId, customerId, eventId };
}

const order = 'INSERT INTO orders (booking_id, customer_id, event_id, quantity, total) VALUES ($1, $2, $3, 2, 20)';
const cancelBooking = "UPDATE bookings SET status = 'CANCELLED', cancelled_at = now() WHERE booking_id = $1";
const cancelOrder = "UPDATE orders SET status = 'CANCELLED', cancelled_at = now(), refund = total WHERE booking_id = $1";

test('the database knows the CANCELLED status, and a booking has a cancellation time exactly when it is cancelled', async () => {
  const { bookingId } = await booking();
  await refusedBy(pool.query("UPDATE bookings SET status = 'REFUNDED' WHERE booking_id = $1", [bookingId]), 'bookings_status_known');
  await refusedBy(pool.query("UPDATE bookings SET status = 'CANCELLED' WHERE booking_id = $1", [bookingId]), 'bookings_cancelled_when');
  await refusedBy(pool.query('UPDATE bookings SET cancelled_at = now() WHERE booking_id = $1', [bookingId]), 'bookings_cancelled_when');
  await pool.query(cancelBooking, [bookingId]);
});

test('a cancelled booking stays cancelled, and only a PENDING or CONFIRMED one can be cancelled', async () => {
  const cancelled = await booking();
  await pool.query(cancelBooking, [cancelled.bookingId]);
  for (const status of ['PENDING', 'CONFIRMED', 'FAILED']) {
    await refusedBy(pool.query('UPDATE bookings SET status = $2, cancelled_at = NULL WHERE booking_id = $1', [cancelled.bookingId, status]), 'bookings_cancelled_is_final');
  }
  const failed = await booking('FAILED');
  await refusedBy(pool.query(cancelBooking, [failed.bookingId]), 'bookings_cancelled_is_final');
  const confirmed = await booking('CONFIRMED');
  await pool.query(cancelBooking, [confirmed.bookingId]);
});

test('an order is ACTIVE or CANCELLED; a cancelled one has its cancellation time and a refund within its total', async () => {
  const { bookingId, customerId, eventId } = await booking('CONFIRMED');
  await pool.query(order, [bookingId, customerId, eventId]);
  const set = (fields: string) => pool.query(`UPDATE orders SET ${fields} WHERE booking_id = $1`, [bookingId]);
  await refusedBy(set("status = 'REFUNDED'"), 'orders_status_known');
  await refusedBy(set("status = 'CANCELLED', refund = 20"), 'orders_cancelled_when');
  await refusedBy(set("status = 'CANCELLED', cancelled_at = now()"), 'orders_refund_when_cancelled');
  await refusedBy(set("status = 'CANCELLED', cancelled_at = now(), refund = 20.01"), 'orders_refund_within_total');
  await refusedBy(set("status = 'CANCELLED', cancelled_at = now(), refund = -1"), 'orders_refund_within_total');
  await set("status = 'CANCELLED', cancelled_at = now(), refund = 0");
});

test('no ACTIVE order for a CANCELLED booking, whichever changes: the booking cancelled, an order made, or a cancelled order revived', async () => {
  const withOrder = await booking('CONFIRMED');
  await pool.query(order, [withOrder.bookingId, withOrder.customerId, withOrder.eventId]);
  await refusedBy(pool.query(cancelBooking, [withOrder.bookingId]), 'orders_none_active_for_cancelled_booking');

  const cancelled = await booking();
  await pool.query(cancelBooking, [cancelled.bookingId]);
  await refusedBy(pool.query(order, [cancelled.bookingId, cancelled.customerId, cancelled.eventId]), 'orders_none_active_for_cancelled_booking');

  // Checked at commit: one transaction may cancel the booking before its order.
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(cancelBooking, [withOrder.bookingId]);
    await client.query(cancelOrder, [withOrder.bookingId]);
    await client.query('COMMIT');
  } finally {
    client.release();
  }
  const revive = "UPDATE orders SET status = 'ACTIVE', cancelled_at = NULL, refund = NULL WHERE booking_id = $1";
  await refusedBy(pool.query(revive, [withOrder.bookingId]), 'orders_none_active_for_cancelled_booking');
});

test('an order made while its booking is being cancelled, each committing before it could see the other, is still refused', async () => {
  const { bookingId, customerId, eventId } = await booking();
  const [canceller, orderer] = await Promise.all([pool.connect(), pool.connect()]);
  try {
    await canceller.query('BEGIN');
    await canceller.query(cancelBooking, [bookingId]);
    // The order's foreign key takes only a key-share lock of the booking: it does not wait for the cancel.
    await orderer.query('BEGIN');
    await orderer.query(order, [bookingId, customerId, eventId]);
    const { rows } = await orderer.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const ordererCommits = orderer.query('COMMIT');
    ordererCommits.catch(() => undefined);
    // At its commit the orderer's check waits for the booking the canceller holds.
    for (let look = 0; ; look += 1) {
      const waiting = await pool.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", [rows[0]!.pid]);
      if (waiting.rowCount) break;
      assert.ok(look < 400, 'the order never waited for the cancelled booking');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await canceller.query('COMMIT');
    await refusedBy(ordererCommits, 'orders_none_active_for_cancelled_booking');
  } finally {
    // A no-op after a commit; after a failed assertion, no transaction goes back to the pool.
    await Promise.all([canceller.query('ROLLBACK'), orderer.query('ROLLBACK')]).catch(() => undefined);
    canceller.release();
    orderer.release();
  }
  const { rows } = await pool.query<{ orders: number }>('SELECT count(*)::int AS orders FROM orders WHERE booking_id = $1', [bookingId]);
  assert.equal(rows[0]!.orders, 0);
});
