import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import { pool } from '../shared/db.js';
import { createEvent } from '../shared/test-support/index.js';

after(() => pool.end());

async function customer(): Promise<number> {
  const { rows } = await pool.query<{ customer_id: number }>(
    "INSERT INTO customers (name, email) VALUES ('Test', $1) RETURNING customer_id",
    [`${randomUUID()}@example.com`],
  );
  return rows[0]!.customer_id;
}

test('the database refuses to sell more tickets than an event has', async () => {
  const { eventId } = await createEvent({ capacity: 3 });
  await assert.rejects(pool.query('UPDATE events SET left_capacity = left_capacity - 4 WHERE event_id = $1', [eventId]), /events_capacity_never_oversold/);
  await assert.rejects(pool.query('UPDATE events SET left_capacity = 4 WHERE event_id = $1', [eventId]), /events_capacity_within_total/);
});

test('the database allows one order per booking', async () => {
  const { eventId } = await createEvent();
  const customerId = await customer();
  const bookingId = randomUUID();
  await pool.query('INSERT INTO bookings (booking_id, customer_id, event_id, ticket_count, total_price) VALUES ($1, $2, $3, 1, 10)', [bookingId, customerId, eventId]);
  const order = 'INSERT INTO orders (booking_id, customer_id, event_id, quantity, total) VALUES ($1, $2, $3, 1, 10)';
  await pool.query(order, [bookingId, customerId, eventId]);
  await assert.rejects(pool.query(order, [bookingId, customerId, eventId]), /orders_one_per_booking/);
});

test('money is stored exactly', async () => {
  const { eventId } = await createEvent({ ticketPrice: '0.10' });
  const { rows } = await pool.query<{ total: string }>('SELECT ticket_price * 3 AS total FROM events WHERE event_id = $1', [eventId]);
  assert.equal(rows[0]?.total, '0.30');
});
