import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { pool } from '../../shared/db.js';
import { createCustomer, createEvent, serve, useTestIssuer, type RunningFunction, type TestIssuer } from '../../shared/test-support/index.js';
import { createCustomers, createOnSaleEvent } from '../../shared/test-support/waiting-room.js';
import eventSummary from './index.js';

let fn: RunningFunction;
let issuer: TestIssuer;
before(async () => {
  issuer = await useTestIssuer();
  fn = await serve(eventSummary);
});
after(async () => {
  await fn.stop();
  await issuer.stop();
});

async function get(query: string, auth: Record<string, string>): Promise<Response> {
  return fetch(`${fn.url}/api/v1/admin/events${query}`, { headers: auth });
}

/** The summary of one event, read as the operator view reads it: the page that starts at that event. */
async function summaryOf(eventId: number): Promise<Record<string, unknown>> {
  const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM events WHERE event_id < $1', [eventId]);
  const res = await get(`?limit=1&offset=${rows[0]!.n}`, await issuer.asAdmin());
  assert.equal(res.status, 200);
  const [summary] = (await res.json()) as Record<string, unknown>[];
  assert.equal(summary?.eventId, eventId);
  return summary!;
}

async function book(eventId: number, ticketCount: number, status: string): Promise<void> {
  await pool.query(
    `INSERT INTO bookings (booking_id, customer_id, event_id, ticket_count, total_price, status, cancelled_at)
     VALUES ($1, $2, $3, $4, 0, $5, CASE WHEN $5 = 'CANCELLED' THEN now() END)`,
    [randomUUID(), await createCustomer(), eventId, ticketCount, status],
  );
  if (status === 'PENDING' || status === 'CONFIRMED') await pool.query('UPDATE events SET left_capacity = left_capacity - $2 WHERE event_id = $1', [eventId, ticketCount]);
}

test('an admin sees each event with its tickets sold (confirmed), pending and left; failed and cancelled bookings count in neither', async () => {
  const { eventId, name } = await createEvent({ capacity: 20 });
  await book(eventId, 3, 'CONFIRMED');
  await book(eventId, 4, 'CONFIRMED');
  await book(eventId, 2, 'PENDING');
  await book(eventId, 5, 'FAILED');
  await book(eventId, 6, 'CANCELLED');

  assert.deepEqual(await summaryOf(eventId), { eventId, event: name, capacity: 20, sold: 7, pending: 2, left: 11 });
});

test("an on-sale event's summary carries its waiting room: those waiting, the passes active now, and everyone admitted so far", async () => {
  const startsAt = new Date(Date.now() - 60_000);
  const eventId = await createOnSaleEvent({ capacity: 50, startsAt, admitPerMinute: 30, maxActive: 5 });
  const [w1, w2, w3, active, used, expired] = await createCustomers(6);
  const place = (customerId: number, key: number, admittedAgo: string | null, expiresIn: string | null, used = false) =>
    pool.query(
      `INSERT INTO queue_entries (event_id, customer_id, line_key, admitted_at, expires_at, used_at)
       VALUES ($1, $2, $3, now() - $4::interval, now() + $5::interval, CASE WHEN $6 THEN now() END)`,
      [eventId, customerId, key, admittedAgo, expiresIn, used],
    );
  await place(w1!, 1, null, null);
  await place(w2!, 2, null, null);
  await place(w3!, 3, null, null);
  await place(active!, -3, '1 minute', '9 minutes');
  await place(used!, -2, '2 minutes', '8 minutes', true);
  await place(expired!, -1, '20 minutes', '-10 minutes');

  const summary = await summaryOf(eventId);
  assert.deepEqual(summary.waitingRoom, { startsAt: startsAt.toISOString(), admitPerMinute: 30, maxActive: 5, waiting: 3, activePasses: 1, admitted: 3 });
  assert.deepEqual([summary.sold, summary.pending, summary.left], [0, 0, 50]);
});

test('a customer may not read the summary (403), nor anyone without a token (401)', async () => {
  const customer = await get('', await issuer.asCustomer(await createCustomer()));
  assert.equal(customer.status, 403);
  assert.equal(customer.headers.get('content-type'), 'application/problem+json');
  assert.match(((await customer.json()) as { detail: string }).detail, /the realm role admin/);
  assert.equal((await get('', {})).status, 401);
});

test('a page out of range is a 400 problem naming the parameter', async () => {
  const res = await get('?limit=0', await issuer.asAdmin());
  assert.equal(res.status, 400);
  assert.deepEqual(((await res.json()) as { invalidParams: { name: string }[] }).invalidParams.map((p) => p.name), ['query/limit']);
});
