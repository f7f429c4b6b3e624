import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { pool } from '../../shared/db.js';
import { createCustomer, createEvent, serve, type RunningFunction, useTestIssuer } from '../../shared/test-support/index.js';
import listOrders from './index.js';

let fn: RunningFunction;
let admin: Record<string, string>;
before(async () => {
  const issuer = await useTestIssuer();
  admin = await issuer.asAdmin();
});
before(async () => (fn = await serve(listOrders)));
after(() => fn.stop());

interface OrderJson {
  orderId: string;
  bookingId: string;
  userId: number;
  eventId: number;
  quantity: number;
  total: number;
  placedAt: string;
  status: string;
  cancelledAt?: string;
  refund?: number;
}

/** A confirmed booking and its order, placed at `placedAt`. */
async function createOrder(
  customerId: number,
  fields: { placedAt: string; quantity?: number; total?: string; eventId?: number },
): Promise<{ orderId: string; bookingId: string; eventId: number }> {
  const eventId = fields.eventId ?? (await createEvent()).eventId;
  const bookingId = randomUUID();
  const quantity = fields.quantity ?? 1;
  const total = fields.total ?? '10.00';
  await pool.query(
    `INSERT INTO bookings (booking_id, customer_id, event_id, ticket_count, total_price, status)
     VALUES ($1, $2, $3, $4, $5, 'CONFIRMED')`,
    [bookingId, customerId, eventId, quantity, total],
  );
  const { rows } = await pool.query<{ order_id: string }>(
    `INSERT INTO orders (booking_id, customer_id, event_id, quantity, total, placed_at)
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING order_id`,
    [bookingId, customerId, eventId, quantity, total, fields.placedAt],
  );
  return { orderId: rows[0]!.order_id, bookingId, eventId };
}

async function ordersOf(customerId: number, extra = ''): Promise<OrderJson[]> {
  const res = await fetch(`${fn.url}/api/v1/orders?userId=${customerId}${extra}`, { headers: admin });
  assert.equal(res.status, 200);
  return (await res.json()) as OrderJson[];
}

test('an order reads with its bigint id as a string and an exact total', async () => {
  const customerId = await createCustomer();
  const order = await createOrder(customerId, { placedAt: '2025-06-01T12:30:45.678Z', quantity: 4, total: '120.00' });

  const res = await fetch(`${fn.url}/api/v1/orders?userId=${customerId}`, { headers: admin });

  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  const text = await res.text();
  assert.match(text, /"total":120\.00[,}]/);
  assert.match(text, new RegExp(`"orderId":"${order.orderId}"`));
  assert.deepEqual(JSON.parse(text), [
    {
      orderId: order.orderId,
      bookingId: order.bookingId,
      userId: customerId,
      eventId: order.eventId,
      quantity: 4,
      total: 120,
      placedAt: '2025-06-01T12:30:45.678Z',
      status: 'ACTIVE',
    },
  ]);
});

test('a cancelled order is listed as cancelled, with when and what is refunded', async () => {
  const customerId = await createCustomer();
  const order = await createOrder(customerId, { placedAt: '2025-06-02T10:00:00.000Z', quantity: 2, total: '50.00' });
  const db = await pool.connect();
  try {
    await db.query('BEGIN');
    await db.query("UPDATE bookings SET status = 'CANCELLED', cancelled_at = now(), updated_at = now() WHERE booking_id = $1", [order.bookingId]);
    await db.query("UPDATE orders SET status = 'CANCELLED', cancelled_at = '2025-06-03T09:00:00Z', refund = total WHERE order_id = $1", [order.orderId]);
    await db.query('COMMIT');
  } catch (error) {
    await db.query('ROLLBACK');
    throw error;
  } finally {
    db.release();
  }
  const [listed] = await ordersOf(customerId);
  assert.deepEqual({ status: listed?.status, cancelledAt: listed?.cancelledAt, refund: listed?.refund }, { status: 'CANCELLED', cancelledAt: '2025-06-03T09:00:00.000Z', refund: 50 });
});

test('orders are listed newest first, ties broken by the later order id', async () => {
  const customerId = await createCustomer();
  const { eventId } = await createEvent();
  const middle = await createOrder(customerId, { eventId, placedAt: '2025-02-01T00:00:00.000Z' });
  const newest = await createOrder(customerId, { eventId, placedAt: '2025-03-01T00:00:00.000Z' });
  const oldest = await createOrder(customerId, { eventId, placedAt: '2025-01-01T00:00:00.000Z' });
  const tiedFirst = await createOrder(customerId, { eventId, placedAt: '2025-02-15T00:00:00.000Z' });
  const tiedSecond = await createOrder(customerId, { eventId, placedAt: '2025-02-15T00:00:00.000Z' });

  const orders = await ordersOf(customerId);

  assert.deepEqual(
    orders.map((o) => o.orderId),
    [newest, tiedSecond, tiedFirst, middle, oldest].map((o) => o.orderId),
  );
});

test('pages with limit and offset, newest first', async () => {
  const customerId = await createCustomer();
  const { eventId } = await createEvent();
  const placed = [];
  for (let day = 1; day <= 5; day += 1) placed.push(await createOrder(customerId, { eventId, placedAt: `2025-07-0${day}T09:00:00.000Z` }));
  const newestFirst = placed.reverse().map((o) => o.orderId);

  assert.deepEqual((await ordersOf(customerId, '&limit=2')).map((o) => o.orderId), newestFirst.slice(0, 2));
  assert.deepEqual((await ordersOf(customerId, '&limit=2&offset=2')).map((o) => o.orderId), newestFirst.slice(2, 4));
  assert.deepEqual((await ordersOf(customerId, '&limit=2&offset=4')).map((o) => o.orderId), newestFirst.slice(4));
  assert.deepEqual(await ordersOf(customerId, '&offset=5'), []);
});

test('without a limit at most 50 orders are answered', async () => {
  const customerId = await createCustomer();
  const { eventId } = await createEvent();
  await pool.query(
    `WITH made AS (
       INSERT INTO bookings (booking_id, customer_id, event_id, ticket_count, total_price, status)
       SELECT gen_random_uuid(), $1, $2, 1, 10.00, 'CONFIRMED' FROM generate_series(1, 51)
       RETURNING booking_id)
     INSERT INTO orders (booking_id, customer_id, event_id, quantity, total)
     SELECT booking_id, $1, $2, 1, 10.00 FROM made`,
    [customerId, eventId],
  );
  assert.equal((await ordersOf(customerId)).length, 50);
  assert.equal((await ordersOf(customerId, '&limit=500')).length, 51);
});

test('only the asked-for customer\'s orders are listed', async () => {
  const customerId = await createCustomer();
  const otherId = await createCustomer();
  const mine = await createOrder(customerId, { placedAt: '2025-08-01T00:00:00.000Z' });
  await createOrder(otherId, { placedAt: '2025-08-02T00:00:00.000Z' });

  assert.deepEqual((await ordersOf(customerId)).map((o) => o.orderId), [mine.orderId]);
});

test('a customer with no orders gets an empty list', async () => {
  const customerId = await createCustomer();
  assert.deepEqual(await ordersOf(customerId), []);
});

test('an unknown customer is a 404 problem, not an empty list', async () => {
  const res = await fetch(`${fn.url}/api/v1/orders?userId=2147483000`, { headers: admin });
  assert.equal(res.status, 404);
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
  const problem = (await res.json()) as { type: string; status: number; detail: string };
  assert.equal(problem.type, 'urn:boxoffice:problem:not-found');
  assert.equal(problem.detail, 'Customer 2147483000 does not exist');
});

for (const [query, name] of [
  ['', 'query/userId'],
  ['limit=10', 'query/userId'],
  ['userId=abc', 'query/userId'],
  ['userId=0', 'query/userId'],
  ['userId=1.5', 'query/userId'],
  ['userId=99999999999', 'query/userId'],
  ['userId=1&userId=2', 'query/userId'],
  ['userId=1&limit=0', 'query/limit'],
  ['userId=1&limit=501', 'query/limit'],
  ['userId=1&limit=ten', 'query/limit'],
  ['userId=1&offset=-1', 'query/offset'],
  ['userId=1&offset=1000001', 'query/offset'],
  ['userId=1&colour=red', 'query/colour'],
] as const) {
  test(`an invalid query (${query || 'none'}) is a 400 problem naming ${name}`, async () => {
    const res = await fetch(`${fn.url}/api/v1/orders?${query}`, { headers: admin });
    assert.equal(res.status, 400);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    const problem = (await res.json()) as { type: string; invalidParams: { name: string }[] };
    assert.equal(problem.type, 'urn:boxoffice:problem:validation-failed');
    assert.deepEqual(problem.invalidParams.map((p) => p.name), [name]);
  });
}

test('a POST to the orders is a 405 problem with Allow: GET', async () => {
  const res = await fetch(`${fn.url}/api/v1/orders?userId=1`, { method: 'POST', body: '{}', headers: { ...admin, 'content-type': 'application/json' } });
  assert.equal(res.status, 405);
  assert.equal(res.headers.get('allow'), 'GET, HEAD');
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
});
