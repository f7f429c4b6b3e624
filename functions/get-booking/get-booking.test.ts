import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { pool } from '../../shared/db.js';
import { createCustomer, createEvent, serve, type RunningFunction, useTestIssuer } from '../../shared/test-support/index.js';
import getBooking from './index.js';

let fn: RunningFunction;
let admin: Record<string, string>;
before(async () => {
  const issuer = await useTestIssuer();
  admin = await issuer.asAdmin();
});
before(async () => (fn = await serve(getBooking)));
after(() => fn.stop());

interface Booking {
  bookingId: string;
  customerId: number;
  eventId: number;
}

async function createBooking(fields: { ticketCount: number; totalPrice: string; status: string; createdAt: string }): Promise<Booking> {
  const customerId = await createCustomer();
  const { eventId } = await createEvent();
  const bookingId = randomUUID();
  await pool.query(
    `INSERT INTO bookings (booking_id, customer_id, event_id, ticket_count, total_price, status, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [bookingId, customerId, eventId, fields.ticketCount, fields.totalPrice, fields.status, fields.createdAt],
  );
  return { bookingId, customerId, eventId };
}

async function createOrder(booking: Booking, quantity: number, total: string): Promise<string> {
  const { rows } = await pool.query<{ order_id: string }>(
    `INSERT INTO orders (booking_id, customer_id, event_id, quantity, total)
     VALUES ($1, $2, $3, $4, $5) RETURNING order_id`,
    [booking.bookingId, booking.customerId, booking.eventId, quantity, total],
  );
  return rows[0]!.order_id;
}

test('a booking without an order reads with its status, an exact total and no orderId', async () => {
  const booking = await createBooking({ ticketCount: 3, totalPrice: '90.50', status: 'PENDING', createdAt: '2025-03-01T10:15:30.123Z' });

  const res = await fetch(`${fn.url}/api/v1/booking/${booking.bookingId}`, { headers: admin });

  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  const text = await res.text();
  assert.match(text, /"totalPrice":90\.50[,}]/);
  assert.deepEqual(JSON.parse(text), {
    bookingId: booking.bookingId,
    userId: booking.customerId,
    eventId: booking.eventId,
    ticketCount: 3,
    totalPrice: 90.5,
    status: 'PENDING',
    createdAt: '2025-03-01T10:15:30.123Z',
  });
});

test('a booking with an order also names the order, its bigint id as a string', async () => {
  const booking = await createBooking({ ticketCount: 2, totalPrice: '39.98', status: 'CONFIRMED', createdAt: '2025-04-02T08:00:00.000Z' });
  const orderId = await createOrder(booking, 2, '39.98');

  const res = await fetch(`${fn.url}/api/v1/booking/${booking.bookingId}`, { headers: admin });

  assert.equal(res.status, 200);
  const text = await res.text();
  assert.match(text, /"totalPrice":39\.98[,}]/);
  assert.match(text, new RegExp(`"orderId":"${orderId}"`));
  assert.deepEqual(JSON.parse(text), {
    bookingId: booking.bookingId,
    userId: booking.customerId,
    eventId: booking.eventId,
    ticketCount: 2,
    totalPrice: 39.98,
    status: 'CONFIRMED',
    createdAt: '2025-04-02T08:00:00.000Z',
    orderId,
  });
});

test('a failed booking reads with status FAILED', async () => {
  const booking = await createBooking({ ticketCount: 1, totalPrice: '0.00', status: 'FAILED', createdAt: '2025-05-05T05:05:05.005Z' });
  const res = await fetch(`${fn.url}/api/v1/booking/${booking.bookingId}`, { headers: admin });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { status: string; orderId?: string };
  assert.equal(body.status, 'FAILED');
  assert.equal(body.orderId, undefined);
});

test('an upper-case booking id finds the booking and answers its canonical lower-case id', async () => {
  const booking = await createBooking({ ticketCount: 1, totalPrice: '10.00', status: 'PENDING', createdAt: '2025-01-01T00:00:00.000Z' });
  const res = await fetch(`${fn.url}/api/v1/booking/${booking.bookingId.toUpperCase()}`, { headers: admin });
  assert.equal(res.status, 200);
  assert.equal(((await res.json()) as { bookingId: string }).bookingId, booking.bookingId);
});

test('an unknown booking is a 404 problem naming the id', async () => {
  const id = randomUUID();
  const res = await fetch(`${fn.url}/api/v1/booking/${id}`, { headers: admin });
  assert.equal(res.status, 404);
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
  const problem = (await res.json()) as { type: string; status: number; detail: string };
  assert.equal(problem.status, 404);
  assert.equal(problem.type, 'urn:boxoffice:problem:not-found');
  assert.equal(problem.detail, `Booking ${id} does not exist`);
});

const wellFormed = '6f1c2a4e-8b3d-4c5e-9a7f-0123456789ab';
for (const id of [
  'not-a-uuid',
  '42',
  wellFormed.slice(0, -1),
  `${wellFormed}0`,
  wellFormed.replace('6', 'g'),
  wellFormed.replaceAll('-', ''),
  `urn:uuid:${wellFormed}`,
]) {
  test(`a malformed booking id (${id}) is a 400 problem naming the id`, async () => {
    const res = await fetch(`${fn.url}/api/v1/booking/${id}`, { headers: admin });
    assert.equal(res.status, 400);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    const problem = (await res.json()) as { type: string; invalidParams: { name: string }[] };
    assert.equal(problem.type, 'urn:boxoffice:problem:validation-failed');
    assert.equal(problem.invalidParams[0]?.name, 'path/bookingId');
  });
}

test('a booking id that is not valid percent-encoding is a 400 problem', async () => {
  const res = await fetch(`${fn.url}/api/v1/booking/%E0%A4%A`, { headers: admin });
  assert.equal(res.status, 400);
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
  const problem = (await res.json()) as { invalidParams: { name: string }[] };
  assert.match(problem.invalidParams[0]?.name ?? '', /^path/);
});

for (const method of ['POST', 'DELETE']) {
  test(`a ${method} to a booking is a 405 problem with Allow: GET`, async () => {
    const res = await fetch(`${fn.url}/api/v1/booking/${randomUUID()}`, { method, body: '{}', headers: { ...admin, 'content-type': 'application/json' } });
    assert.equal(res.status, 405);
    assert.equal(res.headers.get('allow'), 'GET, HEAD');
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
  });
}

test('a path this function does not serve is a 404 problem', async () => {
  const res = await fetch(`${fn.url}/api/v1/booking/${randomUUID()}/order`, { headers: admin });
  assert.equal(res.status, 404);
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
});
