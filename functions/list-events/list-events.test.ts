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
  maxTicketsPerCustomer?: number;
  onSale?: { startsAt: string; admitPerMinute: number; maxActive: number; passMinutes: number };
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

test('lists an event\'s per-customer maximum and on-sale settings where set', async () => {
  const limited = await createEvent();
  const onSale = await createEvent();
  await pool.query('UPDATE events SET max_tickets_per_customer = 2 WHERE event_id = $1', [limited.eventId]);
  await pool.query(
    `UPDATE events SET on_sale_starts_at = '2031-01-01T00:00:00Z', on_sale_admit_per_minute = 60, on_sale_max_active = 100, on_sale_pass_minutes = 10
      WHERE event_id = $1`,
    [onSale.eventId],
  );
  // The page that starts at the first of them, whatever other tests have added before.
  const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM events WHERE event_id < $1', [limited.eventId]);
  const res = await fetch(`${fn.url}/api/v1/inventory/events?limit=500&offset=${rows[0]!.n}`);
  const events = (await res.json()) as EventJson[];
  const [first, second] = [events.find((e) => e.eventId === limited.eventId), events.find((e) => e.eventId === onSale.eventId)];
  assert.equal(first?.maxTicketsPerCustomer, 2);
  assert.equal(first?.onSale, undefined);
  assert.equal(second?.maxTicketsPerCustomer, undefined);
  assert.deepEqual(second?.onSale, { startsAt: '2031-01-01T00:00:00.000Z', admitPerMinute: 60, maxActive: 100, passMinutes: 10 });
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
