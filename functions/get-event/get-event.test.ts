import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CATALOGUE_MAX_AGE_MS } from '../../shared/catalogue.js';
import { pool } from '../../shared/db.js';
import { createEvent, createVenue, serve, type RunningFunction } from '../../shared/test-support/index.js';
import getEvent from './index.js';

let fn: RunningFunction;
before(async () => (fn = await serve(getEvent)));
after(() => fn.stop());

test('an event reads in the original shape, with capacity left and an exact price', async () => {
  const venue = await createVenue({ totalCapacity: 300 });
  const event = await createEvent({ venueId: venue.venueId, capacity: 250, ticketPrice: '19.99' });

  const res = await fetch(`${fn.url}/api/v1/inventory/event/${event.eventId}`);

  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  const text = await res.text();
  assert.match(text, /"ticketPrice":19\.99[,}]/);
  assert.deepEqual(JSON.parse(text), {
    eventId: event.eventId,
    event: event.name,
    capacity: 250,
    ticketPrice: 19.99,
    venue: { id: venue.venueId, name: venue.name, address: '1 Test Street', totalCapacity: 300 },
  });
});

test('an event with a per-customer maximum and on-sale settings shows them after the original fields; one without, only those', async () => {
  const { eventId } = await createEvent({ capacity: 100, ticketPrice: '25.00' });
  await pool.query(
    `UPDATE events SET max_tickets_per_customer = 6, on_sale_starts_at = '2031-03-01T09:00:00+01:00',
            on_sale_admit_per_minute = 120, on_sale_max_active = 500, on_sale_pass_minutes = 15
      WHERE event_id = $1`,
    [eventId],
  );
  const plain = await createEvent();

  const body = (await (await fetch(`${fn.url}/api/v1/inventory/event/${eventId}`)).json()) as Record<string, unknown>;

  assert.deepEqual(Object.keys(body), ['eventId', 'event', 'capacity', 'ticketPrice', 'venue', 'maxTicketsPerCustomer', 'onSale']);
  assert.equal(body.maxTicketsPerCustomer, 6);
  assert.deepEqual(body.onSale, { startsAt: '2031-03-01T08:00:00.000Z', admitPerMinute: 120, maxActive: 500, passMinutes: 15 });
  const original = (await (await fetch(`${fn.url}/api/v1/inventory/event/${plain.eventId}`)).json()) as object;
  assert.deepEqual(Object.keys(original), ['eventId', 'event', 'capacity', 'ticketPrice', 'venue']);
});

test('a sale shows in the capacity left once the catalogue max age has passed', async () => {
  const { eventId } = await createEvent({ capacity: 50 });
  const capacity = async () => ((await (await fetch(`${fn.url}/api/v1/inventory/event/${eventId}`)).json()) as { capacity: number }).capacity;
  assert.equal(await capacity(), 50);

  await pool.query('UPDATE events SET left_capacity = left_capacity - 3 WHERE event_id = $1', [eventId]);
  await sleep(CATALOGUE_MAX_AGE_MS + 50);

  assert.equal(await capacity(), 47);
});

test('an unknown event is a 404 problem', async () => {
  const res = await fetch(`${fn.url}/api/v1/inventory/event/2147483000`);
  assert.equal(res.status, 404);
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
  const problem = (await res.json()) as { type: string; status: number; detail: string };
  assert.equal(problem.status, 404);
  assert.equal(problem.type, 'urn:boxoffice:problem:not-found');
  assert.match(problem.detail, /Event 2147483000/);
});

for (const id of ['abc', '0', '-3', '1.5', '99999999999', '%E0%A4%A']) {
  test(`a malformed event id (${id}) is a 400 problem naming the id`, async () => {
    const res = await fetch(`${fn.url}/api/v1/inventory/event/${id}`);
    assert.equal(res.status, 400);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    const problem = (await res.json()) as { invalidParams: { name: string }[] };
    assert.match(problem.invalidParams[0]?.name ?? '', /^path/);
  });
}

test('a wrong method is a 405 problem with Allow', async () => {
  const res = await fetch(`${fn.url}/api/v1/inventory/event/1`, { method: 'DELETE' });
  assert.equal(res.status, 405);
  assert.equal(res.headers.get('allow'), 'GET, HEAD');
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
});

test('a path this function does not serve is a 404 problem', async () => {
  const res = await fetch(`${fn.url}/api/v1/inventory/events/1/extra`);
  assert.equal(res.status, 404);
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
});
