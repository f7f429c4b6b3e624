import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { pool } from '../shared/db.js';
import { createCustomer, createEvent } from '../shared/test-support/index.js';
import { measureOldestPending, prunePublished, redriveStuckBookings } from './redrive.js';

after(() => pool.end());

/** A PENDING booking with its outbox row, as book leaves one, created `ageSeconds` ago. */
async function pendingBooking(ageSeconds: number, published: boolean): Promise<string> {
  const { eventId } = await createEvent({ ticketPrice: '12.50' });
  const customerId = await createCustomer();
  const { rows } = await pool.query<{ booking_id: string }>(
    `INSERT INTO bookings (booking_id, customer_id, event_id, ticket_count, total_price, created_at)
     VALUES (gen_random_uuid(), $1, $2, 2, 25.00, now() - $3 * interval '1 second') RETURNING booking_id`,
    [customerId, eventId, ageSeconds],
  );
  const bookingId = rows[0]!.booking_id;
  await pool.query(
    `INSERT INTO outbox (topic, message_key, payload, published_at)
     SELECT 'redrive-test', booking_id::text, booking_message(b), CASE WHEN $2 THEN now() END FROM bookings b WHERE booking_id = $1`,
    [bookingId, published],
  );
  return bookingId;
}

async function messagesOf(bookingId: string): Promise<string[]> {
  const { rows } = await pool.query<{ payload: string }>('SELECT payload::text AS payload FROM outbox WHERE message_key = $1 ORDER BY outbox_id', [bookingId]);
  return rows.map((row) => row.payload);
}

test('a booking PENDING too long has its message published again, the same message, once per period', async () => {
  const stuck = await pendingBooking(600, true);
  const fresh = await pendingBooking(0, true);
  const waiting = await pendingBooking(600, false);

  assert.ok((await redriveStuckBookings('redrive-test', 60_000)) >= 1);
  const stuckMessages = await messagesOf(stuck);
  assert.equal(stuckMessages.length, 2, 'one more message for the stuck booking');
  assert.equal(stuckMessages[1], stuckMessages[0], 'byte for byte the message book wrote');
  assert.equal(JSON.parse(stuckMessages[1]!).totalPrice, 25);
  assert.match(stuckMessages[1]!, /"totalPrice" ?: ?25\.00/, 'money stays exact');
  assert.equal((await messagesOf(fresh)).length, 1, 'a recent booking is left alone');
  assert.equal((await messagesOf(waiting)).length, 1, 'a booking still waiting in the outbox is the outbox\'s to send');

  await redriveStuckBookings('redrive-test', 60_000);
  assert.equal((await messagesOf(stuck)).length, 2, 'not again within the period');

  await pool.query("UPDATE bookings SET status = 'CONFIRMED' WHERE booking_id = ANY($1::uuid[])", [[stuck, fresh, waiting]]);
});

test('the oldest PENDING booking\'s age is measured for the alert', async () => {
  const bookingId = await pendingBooking(900, true);
  assert.ok((await measureOldestPending()) >= 900);
  await pool.query("UPDATE bookings SET status = 'CONFIRMED' WHERE booking_id = $1", [bookingId]);
});

test('published outbox rows are pruned after the retention, unpublished ones never', async () => {
  const old = await pendingBooking(0, true);
  const waiting = await pendingBooking(0, false);
  await pool.query("UPDATE outbox SET published_at = now() - interval '2 hours' WHERE message_key = $1", [old]);
  await pool.query("UPDATE outbox SET created_at = now() - interval '2 hours' WHERE message_key = $1", [waiting]);
  assert.ok((await prunePublished(3_600_000)) >= 1);
  assert.deepEqual(await messagesOf(old), [], 'the row published two hours ago is gone');
  assert.equal((await messagesOf(waiting)).length, 1, 'a row never published stays, however old');
  await pool.query("UPDATE bookings SET status = 'CONFIRMED' WHERE booking_id = ANY($1::uuid[])", [[old, waiting]]);
});
