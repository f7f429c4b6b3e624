import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { pool } from '../../shared/db.js';
import { createCustomer, createEvent, serve, useTestIssuer, type RunningFunction, type TestIssuer } from '../../shared/test-support/index.js';
import { createCustomers, createOnSaleEvent, inWaves, startSaleNow, usePassKey } from '../../shared/test-support/waiting-room.js';
import joinQueue from './index.js';

let fn: RunningFunction;
let issuer: TestIssuer;
before(async () => {
  usePassKey();
  issuer = await useTestIssuer();
  fn = await serve(joinQueue, { maxInflight: 1000 });
});
after(async () => {
  await fn.stop();
  await issuer.stop();
});

interface Place {
  status: string;
  position: number | null;
  estimatedWaitSeconds: number;
  startsAt?: string;
}

async function join(eventId: number, customerId: number, auth?: Record<string, string>, query = ''): Promise<Response> {
  return fetch(`${fn.url}/api/v1/queue/${eventId}${query}`, { method: 'POST', headers: auth ?? (await issuer.asCustomer(customerId)) });
}

async function entries(eventId: number): Promise<number> {
  const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM queue_entries WHERE event_id = $1', [eventId]);
  return rows[0]!.n;
}

test('a customer who joins before the start waits with no position yet (the line is drawn at the start) and is told the time to the start', async () => {
  const startsAt = new Date(Date.now() + 600_000);
  const eventId = await createOnSaleEvent({ startsAt });
  const customerId = await createCustomer();

  const res = await join(eventId, customerId);
  assert.equal(res.status, 201);
  assert.equal(res.headers.get('location'), `/api/v1/queue/${eventId}`);
  const place = (await res.json()) as Place;
  assert.equal(place.status, 'WAITING');
  assert.equal(place.position, null);
  assert.equal(place.startsAt, startsAt.toISOString());
  assert.ok(place.estimatedWaitSeconds > 590 && place.estimatedWaitSeconds <= 600, `${place.estimatedWaitSeconds} s to the start`);
});

test('joining again changes nothing and answers the same place, with 200', async () => {
  const eventId = await createOnSaleEvent();
  const [first, second] = await createCustomers(2);
  assert.equal((await join(eventId, first!)).status, 201);
  await startSaleNow(eventId);
  assert.equal((await join(eventId, second!)).status, 201);

  const again = await Promise.all([join(eventId, first!), join(eventId, first!), join(eventId, second!)]);
  assert.deepEqual(again.map((res) => res.status), [200, 200, 200]);
  const [a, b, c] = (await Promise.all(again.map((res) => res.json()))) as Place[];
  assert.deepEqual([a!.position, b!.position, c!.position], [1, 1, 2], 'the early joiner is still ahead of the later one');
  assert.equal(await entries(eventId), 2);
});

test('after the start, later arrivals line up behind everyone, first come first served, each told an estimate at the configured rate', async () => {
  const eventId = await createOnSaleEvent({ admitPerMinute: 30 });
  const early = await createCustomers(5);
  await inWaves(early, 5, (customerId) => join(eventId, customerId));
  await startSaleNow(eventId);

  const late = await createCustomers(5);
  const places: Place[] = [];
  for (const customerId of late) places.push((await (await join(eventId, customerId)).json()) as Place);
  assert.deepEqual(places.map((p) => p.position), [6, 7, 8, 9, 10]);
  assert.deepEqual(places.map((p) => p.estimatedWaitSeconds), [12, 14, 16, 18, 20], 'two seconds a place at 30 a minute');
});

test('an event that sells without a waiting room, an unknown event and an unknown customer are 404 problems that name which, and write nothing', async () => {
  const customerId = await createCustomer();
  const { eventId: plain } = await createEvent();
  const onSale = await createOnSaleEvent();

  const noRoom = await join(plain, customerId);
  assert.equal(noRoom.status, 404);
  assert.equal(noRoom.headers.get('content-type'), 'application/problem+json');
  assert.deepEqual(await noRoom.json(), {
    type: 'urn:boxoffice:problem:no-waiting-room',
    title: 'No waiting room',
    status: 404,
    detail: `Event ${plain} sells without a waiting room: book it directly`,
  });
  const unknownEvent = await join(2147483000, customerId);
  assert.equal(unknownEvent.status, 404);
  assert.match(((await unknownEvent.json()) as { detail: string }).detail, /Event 2147483000 does not exist/);
  const unknownCustomer = await join(onSale, 0, await issuer.asAdmin(), '?userId=2147483000');
  assert.equal(unknownCustomer.status, 404);
  assert.match(((await unknownCustomer.json()) as { detail: string }).detail, /Customer 2147483000 does not exist/);
  assert.equal(await entries(plain), 0);
  assert.equal(await entries(onSale), 0);
});

test('a customer joins only for themselves (403 for another, 401 without a token); an admin joins for anyone', async () => {
  const eventId = await createOnSaleEvent();
  const [customerId, other] = await createCustomers(2);

  const forOther = await join(eventId, customerId!, await issuer.asCustomer(customerId!), `?userId=${other}`);
  assert.equal(forOther.status, 403);
  assert.equal((await fetch(`${fn.url}/api/v1/queue/${eventId}`, { method: 'POST' })).status, 401);
  assert.equal(await entries(eventId), 0);

  assert.equal((await join(eventId, 0, await issuer.asAdmin(), `?userId=${other}`)).status, 201);
  const { rows } = await pool.query<{ customer_id: number }>('SELECT customer_id FROM queue_entries WHERE event_id = $1', [eventId]);
  assert.deepEqual(rows.map((r) => r.customer_id), [other]);
});

test('a malformed event id is a 400 naming it', async () => {
  const customerId = await createCustomer();
  const res = await fetch(`${fn.url}/api/v1/queue/007`, { method: 'POST', headers: await issuer.asCustomer(customerId) });
  assert.equal(res.status, 400);
  assert.deepEqual(((await res.json()) as { invalidParams: { name: string }[] }).invalidParams.map((p) => p.name), ['path/eventId']);
});
