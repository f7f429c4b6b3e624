import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { pool } from '../../shared/db.js';
import { topics } from '../../shared/topics.js';
import { createCustomer, createEvent, serve, useTestIssuer, type RunningFunction, type TestIssuer } from '../../shared/test-support/index.js';
import book from '../book/index.js';
import consumeOrder from '../consume-order/index.js';
import getBooking from '../get-booking/index.js';
import cancelBooking from './index.js';

// Bookings are made by the real book function and confirmed by the real
// consume-order, served beside cancel-booking, on the test Postgres.
let cancelFn: RunningFunction;
let bookFn: RunningFunction;
let consumeFn: RunningFunction;
let getFn: RunningFunction;
let issuer: TestIssuer;
let admin: Record<string, string>;
let deliverer: Record<string, string>;
before(async () => {
  issuer = await useTestIssuer();
  admin = await issuer.asAdmin();
  deliverer = await issuer.asDeliverer();
  cancelFn = await serve(cancelBooking, { maxInflight: 1000 });
  bookFn = await serve(book, { maxInflight: 1000 });
  consumeFn = await serve(consumeOrder, { maxInflight: 1000 });
  getFn = await serve(getBooking);
});
after(async () => {
  await Promise.all([cancelFn, bookFn, consumeFn, getFn].map((fn) => fn.stop()));
  await issuer.stop();
});

interface Booking {
  bookingId: string;
  userId: number;
  eventId: number;
  ticketCount: number;
  totalPrice: number;
  status: string;
  createdAt?: string;
  orderId?: string;
}

const tokens = new Map<number, Promise<Record<string, string>>>();
function asCustomer(userId: number): Promise<Record<string, string>> {
  if (!tokens.has(userId)) tokens.set(userId, issuer.asCustomer(userId));
  return tokens.get(userId)!;
}

async function bookAs(userId: number, eventId: number, ticketCount: number): Promise<Response> {
  return fetch(`${bookFn.url}/api/v1/booking`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(await asCustomer(userId)) },
    body: JSON.stringify({ userId, eventId, ticketCount }),
  });
}

async function booked(userId: number, eventId: number, ticketCount: number): Promise<Booking> {
  const res = await bookAs(userId, eventId, ticketCount);
  assert.equal(res.status, 201, await res.clone().text());
  return (await res.json()) as Booking;
}

async function cancel(bookingId: string, auth?: Record<string, string>): Promise<Response> {
  return fetch(`${cancelFn.url}/api/v1/booking/${bookingId}`, { method: 'DELETE', headers: auth ?? admin });
}

async function shown(bookingId: string): Promise<Booking> {
  const res = await fetch(`${getFn.url}/api/v1/booking/${bookingId}`, { headers: admin });
  assert.equal(res.status, 200);
  return (await res.json()) as Booking;
}

/** The outbox messages of a booking, as their exact JSON text: the acceptance, then any cancellation. */
async function messages(bookingId: string): Promise<{ accepted: string[]; cancelled: string[] }> {
  const { rows } = await pool.query<{ topic: string; payload: string; kind: string | null }>(
    "SELECT topic, payload::text AS payload, payload->>'type' AS kind FROM outbox WHERE message_key = $1 ORDER BY outbox_id",
    [bookingId],
  );
  for (const row of rows) assert.equal(row.topic, topics.booking);
  return { accepted: rows.filter((r) => r.kind === null).map((r) => r.payload), cancelled: rows.filter((r) => r.kind === 'booking.cancelled').map((r) => r.payload) };
}

/** Delivers an outbox message to consume-order as the trigger does; its answer. */
async function deliver(payload: string): Promise<{ status: number; outcome?: string; type?: string }> {
  const res = await fetch(consumeFn.url, {
    method: 'POST',
    headers: { ...deliverer, 'content-type': 'application/json', 'ce-specversion': '1.0', 'ce-id': randomUUID(), 'ce-type': 'dev.knative.kafka.event', 'ce-source': '/test' },
    body: payload,
  });
  const body = (await res.json()) as { outcome?: string; type?: string };
  return { status: res.status, outcome: body.outcome, type: body.type };
}

async function confirm(booking: Booking): Promise<void> {
  const [accepted] = (await messages(booking.bookingId)).accepted;
  assert.deepEqual(await deliver(accepted!), { status: 200, outcome: 'created', type: undefined });
}

async function left(eventId: number): Promise<number> {
  const { rows } = await pool.query<{ left_capacity: number }>('SELECT left_capacity FROM events WHERE event_id = $1', [eventId]);
  return rows[0]!.left_capacity;
}

async function orderOf(bookingId: string): Promise<{ order_id: string; status: string; total: string; refund: string | null; cancelled: boolean } | undefined> {
  const { rows } = await pool.query<{ order_id: string; status: string; total: string; refund: string | null; cancelled: boolean }>(
    'SELECT order_id, status, total, refund, cancelled_at IS NOT NULL AS cancelled FROM orders WHERE booking_id = $1',
    [bookingId],
  );
  return rows[0];
}

test('the owner cancels a pending booking: 200 with the booking as get-booking shows it, CANCELLED; its tickets go back and a booking.cancelled message is queued', async () => {
  const userId = await createCustomer();
  const { eventId } = await createEvent({ capacity: 10, ticketPrice: '12.50' });
  const booking = await booked(userId, eventId, 3);
  assert.equal(await left(eventId), 7);

  const res = await cancel(booking.bookingId, await asCustomer(userId));

  assert.equal(res.status, 200);
  const text = await res.text();
  assert.match(text, /"totalPrice":37\.50[,}]/);
  const body = JSON.parse(text) as Booking;
  assert.deepEqual(body, await shown(booking.bookingId));
  assert.deepEqual({ ...body, createdAt: 'x' }, { ...booking, status: 'CANCELLED', createdAt: 'x' });
  assert.equal(await left(eventId), 10);
  assert.equal(await orderOf(booking.bookingId), undefined);

  const { accepted, cancelled } = await messages(booking.bookingId);
  assert.equal(accepted.length, 1);
  assert.equal(cancelled.length, 1);
  const message = JSON.parse(cancelled[0]!) as Record<string, unknown>;
  assert.ok(!Number.isNaN(Date.parse(message.cancelledAt as string)), `cancelledAt ${String(message.cancelledAt)}`);
  assert.deepEqual(
    { ...message, cancelledAt: 'x' },
    { type: 'booking.cancelled', bookingId: booking.bookingId, userId, eventId, ticketCount: 3, totalPrice: 37.5, cancelledAt: 'x', orderId: null, refund: 0 },
  );
  assert.match(cancelled[0]!, /"totalPrice" ?: ?37\.50\b/, 'money as the exact decimal');
  assert.match(cancelled[0]!, /"refund" ?: ?0\.00\b/);
});

test('cancelling a confirmed booking cancels its order, with its whole total to refund, named in the message', async () => {
  const userId = await createCustomer();
  const { eventId } = await createEvent({ capacity: 10, ticketPrice: '19.99' });
  const booking = await booked(userId, eventId, 2);
  await confirm(booking);
  const order = await orderOf(booking.bookingId);

  const res = await cancel(booking.bookingId, await asCustomer(userId));

  assert.equal(res.status, 200);
  const body = (await res.json()) as Booking;
  assert.deepEqual(body, await shown(booking.bookingId));
  assert.deepEqual([body.status, body.orderId], ['CANCELLED', order!.order_id]);
  assert.deepEqual(await orderOf(booking.bookingId), { order_id: order!.order_id, status: 'CANCELLED', total: '39.98', refund: '39.98', cancelled: true });
  assert.equal(await left(eventId), 10);
  const [message] = (await messages(booking.bookingId)).cancelled;
  assert.deepEqual(
    { orderId: (JSON.parse(message!) as { orderId: unknown }).orderId, refund: /"refund" ?: ?([\d.]+)/.exec(message!)?.[1] },
    { orderId: order!.order_id, refund: '39.98' },
  );
});

test('cancelling again answers the same and changes nothing more; concurrent cancels of one booking give its tickets back once', async () => {
  const userId = await createCustomer();
  const { eventId } = await createEvent({ capacity: 10 });
  const first = await booked(userId, eventId, 2);
  const second = await booked(userId, eventId, 3);
  await confirm(second);

  const once = await (await cancel(first.bookingId)).json();
  const again = await cancel(first.bookingId);
  assert.equal(again.status, 200);
  assert.deepEqual(await again.json(), once);

  const answers = await Promise.all(Array.from({ length: 10 }, () => cancel(second.bookingId)));
  assert.deepEqual(answers.map((a) => a.status), Array(10).fill(200));
  const bodies = await Promise.all(answers.map((a) => a.json()));
  for (const body of bodies) assert.deepEqual(body, bodies[0]);

  assert.equal(await left(eventId), 10);
  assert.equal((await messages(first.bookingId)).cancelled.length, 1);
  assert.equal((await messages(second.bookingId)).cancelled.length, 1);
  assert.equal((await orderOf(second.bookingId))?.refund, '30.00');
});

test("another customer's token is a 403 problem and changes nothing; an admin may cancel anyone's booking; no token is a 401", async () => {
  const [owner, other] = await Promise.all([createCustomer(), createCustomer()]);
  const { eventId } = await createEvent({ capacity: 10 });
  const booking = await booked(owner, eventId, 1);

  const forbidden = await cancel(booking.bookingId, await asCustomer(other));
  assert.equal(forbidden.status, 403);
  assert.equal(forbidden.headers.get('content-type'), 'application/problem+json');
  assert.equal((await fetch(`${cancelFn.url}/api/v1/booking/${booking.bookingId}`, { method: 'DELETE' })).status, 401);
  assert.equal((await shown(booking.bookingId)).status, 'PENDING');
  assert.equal(await left(eventId), 9);
  assert.equal((await messages(booking.bookingId)).cancelled.length, 0);

  const res = await cancel(booking.bookingId, admin);
  assert.equal(res.status, 200);
  assert.equal(((await res.json()) as Booking).status, 'CANCELLED');
});

test('an unknown booking is a 404 problem naming it; a malformed id is a 400 problem naming the path parameter', async () => {
  const id = randomUUID();
  const unknown = await cancel(id);
  assert.equal(unknown.status, 404);
  assert.equal(unknown.headers.get('content-type'), 'application/problem+json');
  assert.equal(((await unknown.json()) as { detail: string }).detail, `Booking ${id} does not exist`);

  const malformed = await cancel('not-a-uuid');
  assert.equal(malformed.status, 400);
  assert.equal(((await malformed.json()) as { invalidParams: { name: string }[] }).invalidParams[0]?.name, 'path/bookingId');
});

test('a FAILED booking is a 409 problem (it holds nothing to cancel) and changes nothing', async () => {
  const userId = await createCustomer();
  const { eventId } = await createEvent({ capacity: 10 });
  const bookingId = randomUUID();
  await pool.query("INSERT INTO bookings (booking_id, customer_id, event_id, ticket_count, total_price, status) VALUES ($1, $2, $3, 2, 20, 'FAILED')", [bookingId, userId, eventId]);

  const res = await cancel(bookingId, await asCustomer(userId));

  assert.equal(res.status, 409);
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
  const problem = (await res.json()) as { type: string; detail: string };
  assert.equal(problem.type, 'urn:boxoffice:problem:booking-failed');
  assert.match(problem.detail, /nothing to cancel/);
  assert.equal((await shown(bookingId)).status, 'FAILED');
  assert.equal(await left(eventId), 10);
  assert.equal((await messages(bookingId)).cancelled.length, 0);
});

test('cancel, then rebook: the tickets come back and another customer buys them; the customer gets their per-customer allowance back too', async () => {
  const [ann, bob] = await Promise.all([createCustomer(), createCustomer()]);
  const { eventId } = await createEvent({ capacity: 4 });
  await pool.query('UPDATE events SET max_tickets_per_customer = 4 WHERE event_id = $1', [eventId]);
  const anns = await booked(ann, eventId, 4);
  await confirm(anns);
  const soldOut = await bookAs(bob, eventId, 4);
  assert.equal(soldOut.status, 409);
  assert.equal(((await soldOut.json()) as { type: string }).type, 'urn:boxoffice:problem:not-enough-tickets');

  assert.equal((await cancel(anns.bookingId, await asCustomer(ann))).status, 200);

  const bobs = await booked(bob, eventId, 4);
  await confirm(bobs);
  assert.equal(await left(eventId), 0);
  assert.equal((await bookAs(ann, eventId, 1)).status, 409, 'sold out again');

  // Ann's cancelled tickets no longer count against her limit.
  const limited = await createEvent({ capacity: 10 });
  await pool.query('UPDATE events SET max_tickets_per_customer = 2 WHERE event_id = $1', [limited.eventId]);
  const first = await booked(ann, limited.eventId, 2);
  const over = await bookAs(ann, limited.eventId, 1);
  assert.equal(((await over.json()) as { type: string }).type, 'urn:boxoffice:problem:ticket-limit-reached');
  assert.equal((await cancel(first.bookingId, await asCustomer(ann))).status, 200);
  await booked(ann, limited.eventId, 2);
  assert.equal(await left(limited.eventId), 8);
});

/** The sessions waiting for a lock that one of `pids` holds. */
async function blockedBy(pids: number[]): Promise<number[]> {
  const { rows } = await pool.query<{ pid: number }>(
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pg_blocking_pids(pid) && $1::int[]",
    [pids],
  );
  return rows.map((r) => r.pid).filter((pid) => !pids.includes(pid));
}

async function until<T>(what: string, check: () => Promise<T | undefined>): Promise<T> {
  for (let look = 0; look < 500; look += 1) {
    const value = await check();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return assert.fail(`gave up waiting for ${what}`);
}

/**
 * Holds the booking's row lock while `first` and then `second` start and
 * queue for it in that order, then lets go: they run one after the other,
 * in that order (the lock's waiters are served first come, first served).
 */
async function oneAfterTheOther<A, B>(bookingId: string, first: () => Promise<A>, second: () => Promise<B>): Promise<[A, B]> {
  const holder = await pool.connect();
  try {
    await holder.query('BEGIN');
    const { rows } = await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const holderPid = rows[0]!.pid;
    await holder.query('SELECT 1 FROM bookings WHERE booking_id = $1 FOR UPDATE', [bookingId]);
    const a = first();
    const firstPid = await until('the first to wait', async () => (await blockedBy([holderPid]))[0]);
    const b = second();
    await until('the second to wait', async () => ((await blockedBy([holderPid, firstPid])).length === 1 ? true : undefined));
    await holder.query('COMMIT');
    return await Promise.all([a, b]);
  } finally {
    holder.release();
  }
}

test('a cancel that waits for a confirmation in flight sees the order it made and cancels it', async () => {
  const userId = await createCustomer();
  const { eventId } = await createEvent({ capacity: 10, ticketPrice: '5.00' });
  const booking = await booked(userId, eventId, 2);
  const [accepted] = (await messages(booking.bookingId)).accepted;

  const [delivered, cancelled] = await oneAfterTheOther(booking.bookingId, () => deliver(accepted!), () => cancel(booking.bookingId));

  assert.deepEqual(delivered, { status: 200, outcome: 'created', type: undefined });
  assert.equal(cancelled.status, 200, await cancelled.clone().text());
  const order = await orderOf(booking.bookingId);
  assert.deepEqual({ ...((await cancelled.json()) as Booking), createdAt: 'x' }, { ...booking, status: 'CANCELLED', createdAt: 'x', orderId: order!.order_id });
  assert.deepEqual(order, { order_id: order!.order_id, status: 'CANCELLED', total: '10.00', refund: '10.00', cancelled: true });
  assert.equal(await left(eventId), 10);
});

test('a confirmation that waits for a cancel in flight makes no order and answers 200 cancelled, so it is not dead-lettered', async () => {
  const userId = await createCustomer();
  const { eventId } = await createEvent({ capacity: 10 });
  const booking = await booked(userId, eventId, 2);
  const [accepted] = (await messages(booking.bookingId)).accepted;

  const [cancelled, delivered] = await oneAfterTheOther(booking.bookingId, () => cancel(booking.bookingId), () => deliver(accepted!));

  assert.equal(cancelled.status, 200);
  assert.deepEqual(delivered, { status: 200, outcome: 'cancelled', type: undefined });
  assert.equal(await orderOf(booking.bookingId), undefined);
  assert.equal((await shown(booking.bookingId)).status, 'CANCELLED');
  assert.equal(await left(eventId), 10);
  // The cancellation's own message, delivered on the same topic, is answered the same way.
  const [message] = (await messages(booking.bookingId)).cancelled;
  assert.deepEqual(await deliver(message!), { status: 200, outcome: 'cancelled', type: undefined });
});

test('concurrent cancels, confirmations and new bookings of one event keep sold = pending + confirmed, and never leave an active order for a cancelled booking', async () => {
  const capacity = 400;
  const { eventId } = await createEvent({ capacity, ticketPrice: '7.25' });
  const customers = await Promise.all(Array.from({ length: 8 }, () => createCustomer()));
  await Promise.all(customers.map(asCustomer));
  const bookings = await Promise.all(Array.from({ length: 60 }, (_, i) => booked(customers[i % customers.length]!, eventId, 1 + (i % 3))));
  const accepted = new Map(await Promise.all(bookings.map(async (b) => [b.bookingId, (await messages(b.bookingId)).accepted[0]!] as const)));
  // A third confirmed before the race, so that some cancels surely meet an order.
  await Promise.all(bookings.filter((_, i) => i % 3 === 0).map(confirm));
  const cancelling = new Set(bookings.filter((_, i) => i % 3 !== 2).map((b) => b.bookingId));

  // Every booking's message (again, for those confirmed), a cancel of two in three (twice for some), and new bookings, all at once.
  const work: Promise<{ kind: string; status: number; outcome?: string }>[] = [];
  bookings.forEach((b, i) => {
    work.push(deliver(accepted.get(b.bookingId)!).then((d) => ({ kind: 'deliver', status: d.status, outcome: d.outcome })));
    const cancelOnce = () => cancel(b.bookingId).then(async (r) => ({ kind: 'cancel', status: r.status, outcome: ((await r.json()) as Booking).status }));
    if (cancelling.has(b.bookingId)) work.push(cancelOnce());
    if (cancelling.has(b.bookingId) && i % 4 === 0) work.push(cancelOnce());
    if (i % 3 === 0) work.push(bookAs(customers[i % customers.length]!, eventId, 1).then(async (r) => ({ kind: 'book', status: r.status, outcome: ((await r.json()) as Booking).status })));
  });
  const results = await Promise.all(work);

  for (const r of results) {
    const expected = { deliver: [200, ['created', 'duplicate', 'cancelled']], cancel: [200, ['CANCELLED']], book: [201, ['PENDING']] }[r.kind] as [number, string[]];
    assert.ok(r.status === expected[0] && expected[1].includes(r.outcome!), `${r.kind} answered ${r.status} ${r.outcome}`);
  }

  const { rows: invariant } = await pool.query<{ sold: number; held: number }>(
    `SELECT e.total_capacity - e.left_capacity AS sold,
            (SELECT coalesce(sum(ticket_count), 0)::int FROM bookings WHERE event_id = e.event_id AND status IN ('PENDING', 'CONFIRMED')) AS held
       FROM events e WHERE e.event_id = $1`,
    [eventId],
  );
  assert.equal(invariant[0]!.sold, invariant[0]!.held, 'sold = pending + confirmed');

  const { rows } = await pool.query<{ booking_id: string; status: string; total_price: string; order_status: string | null; refund: string | null; total: string | null; cancellations: number }>(
    `SELECT b.booking_id, b.status, b.total_price, o.status AS order_status, o.refund, o.total,
            (SELECT count(*)::int FROM outbox WHERE message_key = b.booking_id::text AND payload->>'type' = 'booking.cancelled') AS cancellations
       FROM bookings b LEFT JOIN orders o USING (booking_id) WHERE b.booking_id = ANY($1::uuid[])`,
    [bookings.map((b) => b.bookingId)],
  );
  let cancelledOrders = 0;
  for (const row of rows) {
    const id = row.booking_id;
    if (cancelling.has(id)) {
      assert.equal(row.status, 'CANCELLED', id);
      assert.equal(row.cancellations, 1, `one booking.cancelled message for ${id}`);
      assert.notEqual(row.order_status, 'ACTIVE', `no active order for cancelled ${id}`);
      if (row.order_status !== null) {
        cancelledOrders += 1;
        assert.deepEqual([row.order_status, row.refund], ['CANCELLED', row.total], `${id}'s order refunds its total`);
      }
    } else {
      assert.deepEqual([row.status, row.order_status, row.cancellations], ['CONFIRMED', 'ACTIVE', 0], id);
    }
  }
  assert.equal(rows.length, bookings.length);
  assert.ok(cancelledOrders >= bookings.filter((b, i) => i % 3 === 0 && cancelling.has(b.bookingId)).length, 'the confirmed ones that were cancelled have cancelled orders');
});
