import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CATALOGUE_MAX_AGE_MS } from '../../shared/catalogue.js';
import { pool } from '../../shared/db.js';
import { createEvent, serve, type RunningFunction } from '../../shared/test-support/index.js';
import listEvents from './index.js';

let fn: RunningFunction;
before(async () => (fn = await serve(listEvents)));
after(() => fn.stop());

interface EventJson {
  eventId: number;
  event: string;
  capacity: number;
  ticketPrice: number;
  venue: { id: number; name: string; address: string; totalCapacity: number };
}

async function allEvents(): Promise<EventJson[]> {
  const res = await fetch(`${fn.url}/api/v1/inventory/events?limit=500`);
  assert.equal(res.status, 200);
  return (await res.json()) as EventJson[];
}

test('lists events in id order with their venue, in the original shape', async () => {
  const first = await createEvent({ capacity: 40, ticketPrice: '45.00' });
  const second = await createEvent({ capacity: 7, ticketPrice: '0.10' });

  const events = await allEvents();
  const ids = events.map((e) => e.eventId);
  assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
  const listed = events.find((e) => e.eventId === second.eventId);
  assert.deepEqual(Object.keys(listed ?? {}).sort(), ['capacity', 'event', 'eventId', 'ticketPrice', 'venue']);
  assert.equal(listed?.capacity, 7);
  assert.equal(listed?.ticketPrice, 0.1);
  assert.equal(events.find((e) => e.eventId === first.eventId)?.venue.id, first.venueId);
});

test('pages with limit and offset', async () => {
  await createEvent();
  await createEvent();
  const all = await allEvents();
  const res = await fetch(`${fn.url}/api/v1/inventory/events?limit=1&offset=1`);
  assert.equal(res.status, 200);
  const page = (await res.json()) as EventJson[];
  assert.deepEqual(page.map((e) => e.eventId), [all[1]?.eventId]);
});

test('a new event, then a sale, show in the list once the catalogue max age has passed', async () => {
  const { eventId } = await createEvent({ capacity: 30 });
  const capacity = async () => (await allEvents()).find((e) => e.eventId === eventId)?.capacity;
  await capacity();
  await sleep(CATALOGUE_MAX_AGE_MS + 50);
  assert.equal(await capacity(), 30);

  await pool.query('UPDATE events SET left_capacity = left_capacity - 4 WHERE event_id = $1', [eventId]);
  await sleep(CATALOGUE_MAX_AGE_MS + 50);

  assert.equal(await capacity(), 26);
});

for (const query of ['limit=0', 'limit=501', 'offset=-1', 'limit=ten', 'colour=red']) {
  test(`an invalid query (${query}) is a 400 problem`, async () => {
    const res = await fetch(`${fn.url}/api/v1/inventory/events?${query}`);
    assert.equal(res.status, 400);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    const problem = (await res.json()) as { invalidParams: { name: string }[] };
    assert.match(problem.invalidParams[0]?.name ?? '', /^query\//);
  });
}
