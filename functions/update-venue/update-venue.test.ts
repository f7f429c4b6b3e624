import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { changeEvent } from '../../shared/catalogue.js';
import { pool } from '../../shared/db.js';
import { createCustomer, createEvent, createVenue, eventually, serve, uniqueName, useTestIssuer, type RunningFunction, type TestIssuer } from '../../shared/test-support/index.js';
import getVenue from '../get-venue/index.js';
import updateVenue from './index.js';

let fn: RunningFunction;
let reader: RunningFunction;
let issuer: TestIssuer;
before(async () => {
  issuer = await useTestIssuer();
  [fn, reader] = await Promise.all([serve(updateVenue), serve(getVenue)]);
});
after(async () => {
  await Promise.all([fn.stop(), reader.stop()]);
  await issuer.stop();
});

async function patch(venueId: number, body: unknown, auth?: Record<string, string>): Promise<Response> {
  return fetch(`${fn.url}/api/v1/inventory/venue/${venueId}`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/json', ...(auth ?? (await issuer.asAdmin())) },
    body: JSON.stringify(body),
  });
}

async function row(venueId: number): Promise<{ name: string; address: string; total_capacity: number }> {
  const { rows } = await pool.query<{ name: string; address: string; total_capacity: number }>('SELECT name, address, total_capacity FROM venues WHERE venue_id = $1', [venueId]);
  return rows[0]!;
}

test('a venue takes the fields given and answers as get-venue shows it', async () => {
  const venue = await createVenue({ totalCapacity: 400 });
  const res = await patch(venue.venueId, { address: '2 New Street' });
  assert.equal(res.status, 200);
  const changed = await res.json();
  assert.deepEqual(changed, { venueId: venue.venueId, venueName: venue.name, totalCapacity: 400, address: '2 New Street' });
  assert.deepEqual(await (await fetch(`${reader.url}/api/v1/inventory/venue/${venue.venueId}`)).json(), changed);
});

test('its name and address may be put right after tickets were sold at it', async () => {
  const { eventId, venueId } = await createEvent({ capacity: 10 });
  await pool.query('INSERT INTO bookings (booking_id, customer_id, event_id, ticket_count, total_price) VALUES ($1, $2, $3, 1, 10)', [randomUUID(), await createCustomer(), eventId]);
  const venueName = uniqueName('Renamed hall');
  const res = await patch(venueId, { venueName, address: '3 Right Street' });
  assert.equal(res.status, 200);
  assert.deepEqual(await row(venueId), { name: venueName, address: '3 Right Street', total_capacity: 1000 });
});

test('its capacity may not drop below one of its events: 409 naming the event, nothing changed', async () => {
  const venue = await createVenue({ totalCapacity: 500 });
  const { eventId } = await createEvent({ venueId: venue.venueId, capacity: 300 });
  await createEvent({ venueId: venue.venueId, capacity: 100 });

  const res = await patch(venue.venueId, { totalCapacity: 299, address: 'Elsewhere' });
  assert.equal(res.status, 409);
  const problem = (await res.json()) as { type: string; detail: string };
  assert.equal(problem.type, 'urn:boxoffice:problem:capacity-exceeds-venue');
  assert.match(problem.detail, new RegExp(`Event ${eventId} at venue ${venue.venueId} has 300 tickets`));
  assert.deepEqual(await row(venue.venueId), { name: venue.name, address: '1 Test Street', total_capacity: 500 });

  assert.equal((await patch(venue.venueId, { totalCapacity: 300 })).status, 200);
  assert.equal((await row(venue.venueId)).total_capacity, 300);
});

test('a shrink racing an event growing at the venue waits for it, then refuses: an event never outgrows its venue', async () => {
  const venue = await createVenue({ totalCapacity: 500 });
  const { eventId } = await createEvent({ venueId: venue.venueId, capacity: 300 });
  // An event writer has grown the event, not yet committed.
  const writer = await pool.connect();
  try {
    await writer.query('BEGIN');
    await changeEvent(writer, eventId, { capacity: 400 });
    const { rows } = await writer.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    let answered = false;
    const answer = patch(venue.venueId, { totalCapacity: 350 }).finally(() => (answered = true));
    // Until it waits for the lock (or, were there none to wait for, has answered).
    await eventually('the shrink to wait for the lock or answer', async () => {
      const blocked = await pool.query('SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [rows[0]!.pid]);
      return blocked.rows.length > 0 || answered ? true : undefined;
    }, 5_000);
    await writer.query('COMMIT');
    const res = await answer;
    assert.equal(res.status, 409, await res.clone().text());
  } finally {
    writer.release();
  }
  assert.equal((await row(venue.venueId)).total_capacity, 500);
});

test('an unknown venue is a 404, an empty or invalid change a 400, a customer a 403', async () => {
  assert.equal((await patch(2147483000, { address: 'x' })).status, 404);
  const venue = await createVenue({ totalCapacity: 50 });
  const empty = await patch(venue.venueId, {});
  assert.equal(empty.status, 400);
  const invalid = await patch(venue.venueId, { venueName: '', totalCapacity: 0, address: null });
  assert.equal(invalid.status, 400);
  const names = ((await invalid.json()) as { invalidParams: { name: string }[] }).invalidParams.map((p) => p.name);
  assert.deepEqual([...new Set(names)].sort(), ['body/address', 'body/totalCapacity', 'body/venueName']);
  assert.equal((await patch(venue.venueId, { address: 'x' }, await issuer.asCustomer(1))).status, 403);
  assert.deepEqual(await row(venue.venueId), { name: venue.name, address: '1 Test Street', total_capacity: 50 });
});
