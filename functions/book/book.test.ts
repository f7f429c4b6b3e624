import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { pool } from '../../shared/db.js';
import { createCustomer, createEvent, serve, useTestIssuer, type RunningFunction, type TestIssuer } from '../../shared/test-support/index.js';
import book from './index.js';

let fn: RunningFunction;
let issuer: TestIssuer;
before(async () => {
  issuer = await useTestIssuer();
  fn = await serve(book, { maxInflight: 1000 });
});
after(() => fn.stop());

interface Booked {
  bookingId: string;
  userId: number;
  eventId: number;
  ticketCount: number;
  totalPrice: number;
  status: string;
}

/** Posts as the customer the body names (as an admin when it names none). */
async function post(body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  const userId = (body as { userId?: unknown } | null)?.userId;
  const auth = typeof userId === 'number' && Number.isSafeInteger(userId) && userId > 0 ? await issuer.asCustomer(userId) : await issuer.asAdmin();
  return fetch(`${fn.url}/api/v1/booking`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...auth, ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

async function leftCapacity(eventId: number): Promise<number> {
  const { rows } = await pool.query<{ left_capacity: number }>('SELECT left_capacity FROM events WHERE event_id = $1', [eventId]);
  return rows[0]!.left_capacity;
}

async function rowsFor(eventId: number): Promise<{ bookings: number; outbox: number }> {
  const { rows } = await pool.query<{ bookings: number; outbox: number }>(
    `SELECT (SELECT count(*)::int FROM bookings WHERE event_id = $1) AS bookings,
            (SELECT count(*)::int FROM outbox o JOIN bookings b ON b.booking_id::text = o.message_key WHERE b.event_id = $1) AS outbox`,
    [eventId],
  );
  return rows[0]!;
}

test('a booking reserves the tickets and answers the original four fields, an id and PENDING', async () => {
  const userId = await createCustomer();
  const { eventId } = await createEvent({ capacity: 50, ticketPrice: '19.99' });

  const res = await post({ userId, eventId, ticketCount: 3 });

  assert.equal(res.status, 201);
  const text = await res.text();
  assert.match(text, /"totalPrice":59\.97[,}]/);
  const booked = JSON.parse(text) as Booked;
  assert.deepEqual({ ...booked, bookingId: 'x' }, { bookingId: 'x', userId, eventId, ticketCount: 3, totalPrice: 59.97, status: 'PENDING' });
  assert.equal(res.headers.get('location'), `/api/v1/booking/${booked.bookingId}`);
  assert.equal(await leftCapacity(eventId), 47);
  assert.deepEqual(await rowsFor(eventId), { bookings: 1, outbox: 1 });
});

test('the outbox row carries the booking message, exact money included', async () => {
  const userId = await createCustomer();
  const { eventId } = await createEvent({ ticketPrice: '0.10' });
  const booked = (await (await post({ userId, eventId, ticketCount: 3 })).json()) as Booked;

  const { rows } = await pool.query<{ topic: string; payload: string }>('SELECT topic, payload::text AS payload FROM outbox WHERE message_key = $1', [booked.bookingId]);
  assert.equal(rows[0]?.topic, process.env.BOOKING_TOPIC || 'booking');
  assert.deepEqual(JSON.parse(rows[0]!.payload), { bookingId: booked.bookingId, userId, eventId, ticketCount: 3, totalPrice: 0.3 });
  assert.match(rows[0]!.payload, /"totalPrice" ?: ?0\.30\b/, 'the total is written as the exact decimal');
});

test('asking for more tickets than are left is a 409 problem and takes nothing', async () => {
  const userId = await createCustomer();
  const { eventId } = await createEvent({ capacity: 2 });
  const res = await post({ userId, eventId, ticketCount: 3 });
  assert.equal(res.status, 409);
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
  assert.match(((await res.json()) as { detail: string }).detail, /has 2 tickets left/);
  assert.equal(await leftCapacity(eventId), 2);
  assert.deepEqual(await rowsFor(eventId), { bookings: 0, outbox: 0 });
});

test('an unknown customer is a 404 problem and takes nothing', async () => {
  const { eventId } = await createEvent({ capacity: 5 });
  const res = await post({ userId: 2147483000, eventId, ticketCount: 1 });
  assert.equal(res.status, 404);
  assert.match(((await res.json()) as { detail: string }).detail, /Customer 2147483000/);
  assert.equal(await leftCapacity(eventId), 5);
  assert.deepEqual(await rowsFor(eventId), { bookings: 0, outbox: 0 });
});

test('an unknown event is a 404 problem', async () => {
  const userId = await createCustomer();
  const res = await post({ userId, eventId: 2147483000, ticketCount: 1 });
  assert.equal(res.status, 404);
  assert.match(((await res.json()) as { detail: string }).detail, /Event 2147483000/);
});

test('a customer books up to the event\'s per-customer maximum; past it a 409 names the limit and how many more may be booked, and takes nothing', async () => {
  const [userId, other] = await Promise.all([createCustomer(), createCustomer()]);
  const { eventId } = await createEvent({ capacity: 50 });
  await pool.query('UPDATE events SET max_tickets_per_customer = 4 WHERE event_id = $1', [eventId]);

  assert.equal((await post({ userId, eventId, ticketCount: 3 })).status, 201);
  const over = await post({ userId, eventId, ticketCount: 2 });
  assert.equal(over.status, 409);
  assert.equal(over.headers.get('content-type'), 'application/problem+json');
  assert.deepEqual(await over.json(), {
    type: 'urn:boxoffice:problem:ticket-limit-reached',
    title: 'Per-customer ticket limit reached',
    status: 409,
    detail: `Event ${eventId} allows at most 4 tickets per customer; you may book 1 more`,
    limit: 4,
    mayStillBook: 1,
  });
  assert.equal(await leftCapacity(eventId), 47);
  assert.equal((await post({ userId, eventId, ticketCount: 1 })).status, 201);
  assert.equal(((await (await post({ userId, eventId, ticketCount: 1 })).json()) as { mayStillBook: number }).mayStillBook, 0);
  assert.equal((await post({ userId: other, eventId, ticketCount: 4 })).status, 201, 'the limit is per customer');
  assert.deepEqual(await rowsFor(eventId), { bookings: 3, outbox: 3 });
});

const invalid: [string, unknown, string[]][] = [
  ['no fields', {}, ['body/eventId', 'body/ticketCount', 'body/userId']],
  ['a string count', { userId: 1, eventId: 1, ticketCount: '2' }, ['body/ticketCount']],
  ['zero tickets', { userId: 1, eventId: 1, ticketCount: 0 }, ['body/ticketCount']],
  ['negative tickets', { userId: 1, eventId: 1, ticketCount: -1 }, ['body/ticketCount']],
  ['too many tickets', { userId: 1, eventId: 1, ticketCount: 11 }, ['body/ticketCount']],
  ['a fractional count', { userId: 1, eventId: 1, ticketCount: 1.5 }, ['body/ticketCount']],
  ['an extra field', { userId: 1, eventId: 1, ticketCount: 1, totalPrice: 0 }, ['body/totalPrice']],
  ['a zero user id', { userId: 0, eventId: 1, ticketCount: 1 }, ['body/userId']],
  ['a string event id', { userId: 1, eventId: '1', ticketCount: 1 }, ['body/eventId']],
  ['an array body', [], ['body']],
];
for (const [what, body, names] of invalid) {
  test(`a body with ${what} is a 400 problem naming each fault, and writes nothing`, async () => {
    const { eventId } = await createEvent({ capacity: 5 });
    // Aim the otherwise valid event id at an event of this test, to see it untouched.
    const aimed = (body as { eventId?: unknown }).eventId === 1 ? { ...(body as object), eventId } : body;
    const res = await post(aimed);
    assert.equal(res.status, 400);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    const problem = (await res.json()) as { invalidParams: { name: string }[] };
    assert.deepEqual([...new Set(problem.invalidParams.map((p) => p.name))].sort(), names);
    assert.equal(await leftCapacity(eventId), 5);
    assert.deepEqual(await rowsFor(eventId), { bookings: 0, outbox: 0 });
  });
}

test('malformed JSON and a missing body are 400 problems', async () => {
  assert.equal((await post('{"userId":')).status, 400);
  const empty = await fetch(`${fn.url}/api/v1/booking`, { method: 'POST', headers: { 'content-type': 'application/json', ...(await issuer.asAdmin()) } });
  assert.equal(empty.status, 400);
});

test('a retry with the same Idempotency-Key returns the first answer and reserves nothing more', async () => {
  const userId = await createCustomer();
  const { eventId } = await createEvent({ capacity: 10 });
  const headers = { 'idempotency-key': `key-${userId}` };

  const first = await post({ userId, eventId, ticketCount: 2 }, headers);
  const again = await post({ userId, eventId, ticketCount: 2 }, headers);

  assert.equal(first.status, 201);
  assert.equal(again.status, 201);
  assert.equal(again.headers.get('idempotent-replayed'), 'true');
  assert.deepEqual(await again.json(), await first.json());
  assert.equal(await leftCapacity(eventId), 8);
  assert.deepEqual(await rowsFor(eventId), { bookings: 1, outbox: 1 });
});

test('the same Idempotency-Key with another body is a 422 problem and takes nothing', async () => {
  const userId = await createCustomer();
  const { eventId } = await createEvent({ capacity: 10 });
  const headers = { 'idempotency-key': `key-${userId}` };
  assert.equal((await post({ userId, eventId, ticketCount: 2 }, headers)).status, 201);

  const other = await post({ userId, eventId, ticketCount: 3 }, headers);

  assert.equal(other.status, 422);
  assert.equal(((await other.json()) as { type: string }).type, 'urn:boxoffice:problem:idempotency-key-reused');
  assert.equal(await leftCapacity(eventId), 8);
});

test('concurrent retries with one Idempotency-Key make one booking', async () => {
  const userId = await createCustomer();
  const { eventId } = await createEvent({ capacity: 100 });
  const headers = { 'idempotency-key': `race-${userId}` };

  const answers = await Promise.all(Array.from({ length: 20 }, () => post({ userId, eventId, ticketCount: 1 }, headers)));

  assert.deepEqual(new Set(answers.map((a) => a.status)), new Set([201]));
  const ids = new Set(await Promise.all(answers.map(async (a) => ((await a.json()) as Booked).bookingId)));
  assert.equal(ids.size, 1);
  assert.equal(await leftCapacity(eventId), 99);
});

test('an invalid Idempotency-Key is a 400 problem', async () => {
  const userId = await createCustomer();
  const { eventId } = await createEvent();
  const res = await post({ userId, eventId, ticketCount: 1 }, { 'idempotency-key': 'x'.repeat(201) });
  assert.equal(res.status, 400);
  assert.equal(((await res.json()) as { invalidParams: { name: string }[] }).invalidParams[0]?.name, 'header/idempotency-key');
});

test('hundreds of concurrent bookings sell exactly the capacity, never more', async () => {
  const { eventId } = await createEvent({ capacity: 25 });
  const customers = await Promise.all(Array.from({ length: 10 }, () => createCustomer()));

  const answers = await Promise.all(
    Array.from({ length: 300 }, (_, i) => post({ userId: customers[i % customers.length], eventId, ticketCount: 1 + (i % 2) })),
  );

  const accepted = answers.filter((a) => a.status === 201);
  const refused = answers.filter((a) => a.status === 409);
  assert.equal(accepted.length + refused.length, 300, 'every answer is 201 or 409');
  const { rows } = await pool.query<{ sold: number }>('SELECT coalesce(sum(ticket_count), 0)::int AS sold FROM bookings WHERE event_id = $1', [eventId]);
  assert.ok(rows[0]!.sold <= 25, `sold ${rows[0]!.sold} of 25`);
  assert.equal(rows[0]!.sold + (await leftCapacity(eventId)), 25);
  // With 1- and 2-ticket requests racing, at most one ticket can be left unsold.
  assert.ok((await leftCapacity(eventId)) <= 1);
});

test('a booking is not held up by a transaction that only refers to its event (an order being stored, a waiting-room join): book locks the event FOR NO KEY UPDATE, not FOR UPDATE', async () => {
  const userId = await createCustomer();
  const { eventId } = await createEvent({ capacity: 10 });
  // What Postgres takes on the event for a foreign key check of an insert that refers to it.
  const referrer = await pool.connect();
  try {
    await referrer.query('BEGIN');
    await referrer.query('SELECT 1 FROM events WHERE event_id = $1 FOR KEY SHARE', [eventId]);

    const res = await post({ userId, eventId, ticketCount: 2 });

    assert.equal(res.status, 201, await res.text());
    assert.equal(await leftCapacity(eventId), 8);
  } finally {
    await referrer.query('ROLLBACK');
    referrer.release();
  }
});
