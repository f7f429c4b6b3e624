import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { pool } from '../../shared/db.js';
import { createCustomer, createEvent, createVenue, eventually, serve, useTestIssuer, type RunningFunction, type TestIssuer } from '../../shared/test-support/index.js';
import getEvent from '../get-event/index.js';
import updateEvent from './index.js';

let fn: RunningFunction;
let reader: RunningFunction;
let issuer: TestIssuer;
before(async () => {
  issuer = await useTestIssuer();
  [fn, reader] = await Promise.all([serve(updateEvent), serve(getEvent)]);
});
after(async () => {
  await Promise.all([fn.stop(), reader.stop()]);
  await issuer.stop();
});

async function patch(eventId: number, body: unknown, auth?: Record<string, string>): Promise<Response> {
  return fetch(`${fn.url}/api/v1/inventory/event/${eventId}`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/json', ...(auth ?? (await issuer.asAdmin())) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

interface EventRow {
  name: string;
  venue_id: number;
  total_capacity: number;
  left_capacity: number;
  ticket_price: string;
  max_tickets_per_customer: number | null;
  on_sale_starts_at: Date | null;
}

async function row(eventId: number): Promise<EventRow> {
  const { rows } = await pool.query<EventRow>(
    'SELECT name, venue_id, total_capacity, left_capacity, ticket_price, max_tickets_per_customer, on_sale_starts_at FROM events WHERE event_id = $1',
    [eventId],
  );
  return rows[0]!;
}

async function book(eventId: number, db: { query: typeof pool.query } = pool): Promise<void> {
  await db.query("INSERT INTO bookings (booking_id, customer_id, event_id, ticket_count, total_price) VALUES ($1, $2, $3, 1, 10)", [randomUUID(), await createCustomer(), eventId]);
  await db.query('UPDATE events SET left_capacity = left_capacity - 1 WHERE event_id = $1', [eventId]);
}

const inAnHour = () => new Date(Date.now() + 3_600_000);

test('before its sale an event takes the fields given and answers as get-event shows it; capacity left follows its capacity', async () => {
  const { eventId, venueId } = await createEvent({ capacity: 50, ticketPrice: '10.00' });
  const startsAt = inAnHour();
  const res = await patch(
    eventId,
    `{"capacity":80,"ticketPrice":12.50,"maxTicketsPerCustomer":2,"onSale":{"startsAt":"${startsAt.toISOString()}","admitPerMinute":30,"maxActive":40,"passMinutes":5}}`,
  );

  assert.equal(res.status, 200);
  const text = await res.text();
  assert.match(text, /"ticketPrice":12\.50[,}]/);
  const changed = JSON.parse(text) as Record<string, unknown>;
  assert.deepEqual({ ...changed, event: 'x', venue: 'x' }, {
    eventId,
    event: 'x',
    capacity: 80,
    ticketPrice: 12.5,
    venue: 'x',
    maxTicketsPerCustomer: 2,
    onSale: { startsAt: startsAt.toISOString(), admitPerMinute: 30, maxActive: 40, passMinutes: 5 },
  });
  assert.equal((changed.venue as { id: number }).id, venueId, 'fields not given stay as they were');
  assert.deepEqual(await (await fetch(`${reader.url}/api/v1/inventory/event/${eventId}`)).json(), changed);
  const stored = await row(eventId);
  assert.deepEqual([stored.total_capacity, stored.left_capacity], [80, 80]);

  const smaller = await patch(eventId, { capacity: 30, maxTicketsPerCustomer: null, onSale: null });
  assert.equal(smaller.status, 200);
  assert.deepEqual(Object.keys((await smaller.json()) as object).sort(), ['capacity', 'event', 'eventId', 'ticketPrice', 'venue'], 'null removes the limit and the on-sale settings');
  assert.deepEqual([(await row(eventId)).total_capacity, (await row(eventId)).left_capacity], [30, 30]);
});

test('an event moves to another venue it fits in, not to one too small (409) or unknown (404)', async () => {
  const { eventId } = await createEvent({ capacity: 200 });
  const big = await createVenue({ totalCapacity: 300 });
  const small = await createVenue({ totalCapacity: 100 });

  const tooSmall = await patch(eventId, { venueId: small.venueId });
  assert.equal(tooSmall.status, 409);
  assert.equal(((await tooSmall.json()) as { type: string }).type, 'urn:boxoffice:problem:capacity-exceeds-venue');
  assert.equal((await patch(eventId, { venueId: 2147483000 })).status, 404);
  assert.equal((await patch(eventId, { capacity: 301, venueId: big.venueId })).status, 409);

  const moved = await patch(eventId, { venueId: big.venueId });
  assert.equal(moved.status, 200);
  assert.equal(((await moved.json()) as { venue: { id: number } }).venue.id, big.venueId);
});

test('once a booking has been made the event cannot be changed: 409 sale-started, nothing changed', async () => {
  const { eventId } = await createEvent({ capacity: 10, ticketPrice: '10.00' });
  await book(eventId);
  const before = await row(eventId);

  const res = await patch(eventId, { ticketPrice: 1, capacity: 20 });

  assert.equal(res.status, 409);
  const problem = (await res.json()) as { type: string; detail: string };
  assert.equal(problem.type, 'urn:boxoffice:problem:sale-started');
  assert.match(problem.detail, new RegExp(`Event ${eventId} has bookings`));
  assert.deepEqual(await row(eventId), before);
});

test('once its on-sale start has passed the event cannot be changed: 409 sale-started', async () => {
  const { eventId } = await createEvent({ capacity: 10 });
  await pool.query(
    "UPDATE events SET on_sale_starts_at = now() - interval '1 minute', on_sale_admit_per_minute = 1, on_sale_max_active = 1, on_sale_pass_minutes = 1 WHERE event_id = $1",
    [eventId],
  );
  const res = await patch(eventId, { event: 'Renamed' });
  assert.equal(res.status, 409);
  assert.match(((await res.json()) as { detail: string }).detail, /The sale of event \d+ started at/);
  assert.notEqual((await row(eventId)).name, 'Renamed');
});

test('a change racing a booking in flight waits for it, then refuses: never a change after a sale', async () => {
  const { eventId } = await createEvent({ capacity: 10, ticketPrice: '10.00' });
  // A booking batch holds the event's lock and has written its booking, not yet committed.
  const batch = await pool.connect();
  try {
    await batch.query('BEGIN');
    await batch.query('SELECT 1 FROM events WHERE event_id = $1 FOR UPDATE', [eventId]);
    await book(eventId, batch);
    const { rows } = await batch.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    let answered = false;
    const answer = patch(eventId, { ticketPrice: 99 }).finally(() => (answered = true));
    // Until it waits for the lock (or, were there none to wait for, has answered).
    await eventually('the change to wait for the lock or answer', async () => {
      const blocked = await pool.query('SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [rows[0]!.pid]);
      return blocked.rows.length > 0 || answered ? true : undefined;
    }, 5_000);
    await batch.query('COMMIT');
    const res = await answer;
    assert.equal(res.status, 409, await res.clone().text());
  } finally {
    batch.release();
  }
  const after = await row(eventId);
  assert.deepEqual([after.ticket_price, after.total_capacity, after.left_capacity], ['10.00', 10, 9]);
});

test('an unknown event is a 404, an empty change a 400, a customer a 403', async () => {
  assert.equal((await patch(2147483000, { capacity: 5 })).status, 404);
  const { eventId } = await createEvent({ capacity: 10 });
  const empty = await patch(eventId, {});
  assert.equal(empty.status, 400);
  assert.equal(((await empty.json()) as { invalidParams: { name: string }[] }).invalidParams[0]?.name, 'body');
  assert.equal((await patch(eventId, { capacity: 5 }, await issuer.asCustomer(1))).status, 403);
  assert.equal((await row(eventId)).total_capacity, 10);
});

const invalid: [string, string, string[]][] = [
  ['a price with three decimals', '{"ticketPrice":1.005}', ['body/ticketPrice']],
  ['a limit of 0', '{"maxTicketsPerCustomer":0}', ['body/maxTicketsPerCustomer']],
  ['a start in the past', '{"onSale":{"startsAt":"2020-01-01T00:00:00Z","admitPerMinute":1,"maxActive":1,"passMinutes":1}}', ['body/onSale/startsAt']],
  ['a pass of 0 minutes', `{"onSale":{"startsAt":"${inAnHour().toISOString()}","admitPerMinute":1,"maxActive":1,"passMinutes":0}}`, ['body/onSale/passMinutes']],
  ['a null capacity', '{"capacity":null}', ['body/capacity']],
  ['the event id', '{"eventId":5}', ['body/eventId']],
];
for (const [what, body, names] of invalid) {
  test(`a change with ${what} is a 400 problem naming each fault, and changes nothing`, async () => {
    const { eventId } = await createEvent({ capacity: 10 });
    const before = await row(eventId);
    const res = await patch(eventId, body);
    assert.equal(res.status, 400);
    const problem = (await res.json()) as { invalidParams: { name: string }[] };
    assert.deepEqual([...new Set(problem.invalidParams.map((p) => p.name))].sort(), names);
    assert.deepEqual(await row(eventId), before);
  });
}
