import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { pool } from '../../shared/db.js';
import { createCustomer, createEvent, metricValue, serve, type RunningFunction } from '../../shared/test-support/index.js';
import consumeOrder from './index.js';

let fn: RunningFunction;
before(async () => (fn = await serve(consumeOrder)));
after(() => fn.stop());

interface Booking {
  bookingId: string;
  userId: number;
  eventId: number;
  ticketCount: number;
}

/** A PENDING booking whose tickets are already reserved, as book leaves it. */
async function pendingBooking(ticketCount = 2): Promise<Booking> {
  const userId = await createCustomer();
  const { eventId } = await createEvent({ capacity: 10, ticketPrice: '12.50' });
  const bookingId = randomUUID();
  await pool.query('UPDATE events SET left_capacity = left_capacity - $2 WHERE event_id = $1', [eventId, ticketCount]);
  await pool.query(
    'INSERT INTO bookings (booking_id, customer_id, event_id, ticket_count, total_price) VALUES ($1, $2, $3, $4::int, 12.50 * $4::int)',
    [bookingId, userId, eventId, ticketCount],
  );
  return { bookingId, userId, eventId, ticketCount };
}

function binary(data: unknown, id = randomUUID(), headers: Record<string, string> = { 'content-type': 'application/json' }): Promise<Response> {
  return fetch(fn.url, {
    method: 'POST',
    headers: { 'ce-specversion': '1.0', 'ce-id': id, 'ce-type': 'dev.knative.kafka.event', 'ce-source': '/test', ...headers },
    body: JSON.stringify(data),
  });
}

async function state(booking: Booking) {
  const { rows } = await pool.query<{ status: string; orders: number; total: string | null; left_capacity: number }>(
    `SELECT b.status, (SELECT count(*)::int FROM orders WHERE booking_id = b.booking_id) AS orders,
            (SELECT total::text FROM orders WHERE booking_id = b.booking_id) AS total, e.left_capacity
       FROM bookings b JOIN events e USING (event_id) WHERE b.booking_id = $1`,
    [booking.bookingId],
  );
  return rows[0]!;
}

test('a booking message becomes one order and confirms the booking', async () => {
  const booking = await pendingBooking(2);
  const res = await binary({ ...booking, totalPrice: 25.0 });
  assert.equal(res.status, 200);
  const answer = (await res.json()) as { outcome: string; orderId: string };
  assert.equal(answer.outcome, 'created');
  assert.deepEqual(await state(booking), { status: 'CONFIRMED', orders: 1, total: '25.00', left_capacity: 8 });
});

test('the same message delivered again is a 200 no-op: still one order, capacity lowered once', async () => {
  const booking = await pendingBooking(3);
  const id = randomUUID();
  assert.equal((await binary(booking, id)).status, 200);
  const again = await binary(booking, id);
  assert.equal(again.status, 200);
  assert.equal(((await again.json()) as { outcome: string }).outcome, 'duplicate');
  assert.deepEqual(await state(booking), { status: 'CONFIRMED', orders: 1, total: '37.50', left_capacity: 7 });
  const metrics = await (await fetch(`${fn.url}/metrics`)).text();
  assert.ok((metricValue(metrics, 'boxoffice_orders_total', { outcome: 'duplicate' }) ?? 0) >= 1);
});

test('concurrent redeliveries of one message still make one order', async () => {
  const booking = await pendingBooking(1);
  const answers = await Promise.all(Array.from({ length: 10 }, () => binary(booking)));
  assert.deepEqual(new Set(answers.map((a) => a.status)), new Set([200]));
  assert.equal((await state(booking)).orders, 1);
});

test('a message that disagrees with its booking fails the booking and releases its tickets', async () => {
  const booking = await pendingBooking(2);
  const res = await binary({ ...booking, ticketCount: 5 });
  assert.equal(res.status, 200);
  assert.equal(((await res.json()) as { outcome: string }).outcome, 'failed');
  assert.deepEqual(await state(booking), { status: 'FAILED', orders: 0, total: null, left_capacity: 10 });
  // A later, correct delivery cannot resurrect it.
  await binary(booking);
  assert.deepEqual(await state(booking), { status: 'FAILED', orders: 0, total: null, left_capacity: 10 });
});

test('a message for a booking that does not exist is refused with 422, so it is dead-lettered', async () => {
  const res = await binary({ bookingId: randomUUID(), userId: 1, eventId: 1, ticketCount: 1 });
  assert.equal(res.status, 422);
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
});

test('malformed data is a 400 problem naming the field', async () => {
  const res = await binary({ bookingId: 'not-a-uuid', userId: 1, eventId: 1, ticketCount: 1 });
  assert.equal(res.status, 400);
  const names = ((await res.json()) as { invalidParams: { name: string }[] }).invalidParams.map((p) => p.name);
  assert.deepEqual([...new Set(names)], ['data/bookingId']);
});

test('a binary CloudEvent without a Content-Type is still read as JSON', async () => {
  const booking = await pendingBooking(1);
  const res = await fetch(fn.url, {
    method: 'POST',
    headers: { 'ce-specversion': '1.0', 'ce-id': 'x', 'ce-type': 't', 'ce-source': '/s' },
    body: Buffer.from(JSON.stringify(booking)),
  });
  assert.equal(res.status, 200);
  assert.equal((await state(booking)).status, 'CONFIRMED');
});

test('a structured-mode CloudEvent is accepted', async () => {
  const booking = await pendingBooking(1);
  const res = await fetch(fn.url, {
    method: 'POST',
    headers: { 'content-type': 'application/cloudevents+json' },
    body: JSON.stringify({ specversion: '1.0', id: 'e-1', type: 'dev.knative.kafka.event', source: '/s', data: booking }),
  });
  assert.equal(res.status, 200);
  assert.equal((await state(booking)).status, 'CONFIRMED');
});

test("OpenFaaS kafka-connector's raw message is accepted", async () => {
  const booking = await pendingBooking(1);
  const res = await fetch(fn.url, {
    method: 'POST',
    headers: { 'x-topic': 'booking', 'x-kafka-partition': '0', 'x-kafka-offset': '42', 'x-kafka-key': booking.bookingId },
    body: JSON.stringify(booking),
  });
  assert.equal(res.status, 200);
  assert.equal((await state(booking)).status, 'CONFIRMED');
});

test('a request that is no CloudEvent is a 400 problem; a GET is a 405', async () => {
  const res = await fetch(fn.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.equal(res.status, 400);
  assert.equal(((await res.json()) as { type: string }).type, 'urn:boxoffice:problem:not-a-cloudevent');
  assert.equal((await fetch(fn.url)).status, 405);
  assert.equal((await fetch(`${fn.url}/_/health`)).status, 200);
});
