import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { randomUUID } from 'node:crypto';
import book from '../functions/book/index.js';
import consumeOrder from '../functions/consume-order/index.js';
import getEvent from '../functions/get-event/index.js';
import getVenue from '../functions/get-venue/index.js';
import listEvents from '../functions/list-events/index.js';
import listOrders from '../functions/list-orders/index.js';
import { pool } from './db.js';
import { validator } from './validation.js';
import { createCustomer, createEvent, serve, useTestIssuer, type RunningFunction, type TestIssuer } from './test-support/index.js';

// Ids and numeric parameters are read as plain decimal integers in range,
// or refused with a 400 naming the field: never passed on to Postgres as
// ±Infinity or a float it refuses (a 500), nor rounded to another id.
const functions = { book, consumeOrder, getEvent, getVenue, listEvents, listOrders };
const urls: Record<keyof typeof functions, string> = { book: '', consumeOrder: '', getEvent: '', getVenue: '', listEvents: '', listOrders: '' };
const running: RunningFunction[] = [];
let issuer: TestIssuer;

before(async () => {
  issuer = await useTestIssuer();
  for (const [name, definition] of Object.entries(functions)) {
    const fn = await serve(definition);
    running.push(fn);
    urls[name as keyof typeof functions] = fn.url;
  }
});
after(() => Promise.all(running.map((fn) => fn.stop())));

const hostileNumerals = ['Infinity', '-Infinity', '1e400', '1e2', '1E2', '5.0', '0.9999999999999999999', '007', '00', '+5', '-0', '-5', ' 5', '5 ', '0x10', '0b1', '1_000', '', '9'.repeat(400), '9'.repeat(5000)];

async function assertRefused(res: Response, field: string): Promise<void> {
  assert.equal(res.status, 400, `${field}: ${await res.clone().text()}`);
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
  const problem = (await res.json()) as { type: string; invalidParams?: { name: string }[] };
  assert.equal(problem.type, 'urn:boxoffice:problem:validation-failed');
  assert.deepEqual(problem.invalidParams?.map((p) => p.name), [field]);
}

const label = (numeral: string) => JSON.stringify(numeral.length > 24 ? `${numeral.slice(0, 8)}... (${numeral.length} digits)` : numeral);

for (const numeral of hostileNumerals) {
  // An empty path segment is another path, not an empty id.
  if (numeral !== '') {
    test(`an event or venue id written ${label(numeral)} is a 400 naming the id`, async () => {
      await assertRefused(await fetch(`${urls.getEvent}/api/v1/inventory/event/${encodeURIComponent(numeral)}`), 'path/eventId');
      await assertRefused(await fetch(`${urls.getVenue}/api/v1/inventory/venue/${encodeURIComponent(numeral)}`), 'path/venueId');
    });
  }

  test(`a limit, offset or userId written ${label(numeral)} is a 400 naming the parameter`, async () => {
    const value = encodeURIComponent(numeral);
    await assertRefused(await fetch(`${urls.listEvents}/api/v1/inventory/events?limit=${value}`), 'query/limit');
    await assertRefused(await fetch(`${urls.listEvents}/api/v1/inventory/events?offset=${value}`), 'query/offset');
    const admin = { headers: await issuer.asAdmin() };
    await assertRefused(await fetch(`${urls.listOrders}/api/v1/orders?userId=${value}`, admin), 'query/userId');
    await assertRefused(await fetch(`${urls.listOrders}/api/v1/orders?userId=1&limit=${value}`, admin), 'query/limit');
  });
}

test('plain numerals in range are read as their numbers, 0 only where the range has it', async () => {
  const { eventId } = await createEvent();
  assert.equal((await fetch(`${urls.getEvent}/api/v1/inventory/event/${eventId}`)).status, 200);
  assert.equal((await fetch(`${urls.listEvents}/api/v1/inventory/events?limit=500&offset=0`)).status, 200);
  await assertRefused(await fetch(`${urls.listEvents}/api/v1/inventory/events?limit=0`), 'query/limit');
  await assertRefused(await fetch(`${urls.listEvents}/api/v1/inventory/events?limit=501`), 'query/limit');
  await assertRefused(await fetch(`${urls.getVenue}/api/v1/inventory/venue/2147483648`), 'path/venueId');
  const userId = await createCustomer();
  const orders = await fetch(`${urls.listOrders}/api/v1/orders?userId=${userId}&limit=1`, { headers: await issuer.asCustomer(userId) });
  assert.equal(orders.status, 200);
});

/** Bookings and their outbox rows of one event. */
async function writtenFor(eventId: number): Promise<{ bookings: number; outbox: number }> {
  const { rows } = await pool.query<{ bookings: number; outbox: number }>(
    `SELECT (SELECT count(*)::int FROM bookings WHERE event_id = $1) AS bookings,
            (SELECT count(*)::int FROM outbox o JOIN bookings b ON b.booking_id::text = o.message_key WHERE b.event_id = $1) AS outbox`,
    [eventId],
  );
  return rows[0]!;
}

for (const [field, written] of [
  ['userId', '0.9999999999999999999'],
  ['userId', '1.0'],
  ['userId', '12345678901234567890'],
  ['eventId', '1e400'],
  ['ticketCount', '2.0'],
  ['ticketCount', '2e0'],
  ['ticketCount', '1.9999999999999999999'],
] as const) {
  test(`a booking whose ${field} is written ${written} is a 400 naming it, and books nothing`, async () => {
    const userId = await createCustomer();
    const { eventId } = await createEvent({ capacity: 10 });
    const fields: Record<string, string> = { userId: String(userId), eventId: String(eventId), ticketCount: '2', [field]: written };
    const body = `{"userId":${fields.userId},"eventId":${fields.eventId},"ticketCount":${fields.ticketCount}}`;

    const res = await fetch(`${urls.book}/api/v1/booking`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(await issuer.asAdmin()) },
      body,
    });

    await assertRefused(res, `body/${field}`);
    assert.deepEqual(await writtenFor(eventId), { bookings: 0, outbox: 0 });
  });
}

test('a booking written with plain integers (and spaces) is accepted', async () => {
  const userId = await createCustomer();
  const { eventId } = await createEvent({ capacity: 10 });
  const res = await fetch(`${urls.book}/api/v1/booking`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(await issuer.asCustomer(userId)) },
    body: `{ "userId" : ${userId}, "eventId":${eventId},\n "ticketCount" :2 }`,
  });
  assert.equal(res.status, 201, await res.clone().text());
  assert.deepEqual(await writtenFor(eventId), { bookings: 1, outbox: 1 });
});

test('a CloudEvent whose data writes an integer with a fraction is a 400 naming it, in binary and structured mode', async () => {
  const data = (written: string) => `{"bookingId":"${randomUUID()}","userId":1,"eventId":1,"ticketCount":${written}}`;
  const binary = await fetch(urls.consumeOrder, {
    method: 'POST',
    headers: { ...(await issuer.asDeliverer()), 'content-type': 'application/json', 'ce-id': 'n1', 'ce-type': 't', 'ce-source': '/test', 'ce-specversion': '1.0' },
    body: data('2.0'),
  });
  await assertRefused(binary, 'data/ticketCount');
  const structured = await fetch(urls.consumeOrder, {
    method: 'POST',
    headers: { ...(await issuer.asDeliverer()), 'content-type': 'application/cloudevents+json' },
    body: `{"specversion":"1.0","id":"n2","type":"t","source":"/test","data":${data('0.9999999999999999999')}}`,
  });
  await assertRefused(structured, 'data/ticketCount');
});

test('a URL value declared as anything but a string or an integer is refused when the function is defined', () => {
  for (const type of ['number', 'boolean', 'array']) {
    assert.throws(() => validator('query', { type: 'object', properties: { flag: { type } } }), /query\/flag: a URL value can be declared a string or an integer/);
  }
  assert.doesNotThrow(() => validator('query', { type: 'object', properties: { mode: { enum: ['a'] }, name: { type: 'string' }, page: { type: 'integer' } } }));
});

test('a booking body that gives a key twice is a 400 naming it, and books nothing (JSON.parse would keep the last silently)', async () => {
  const userId = await createCustomer();
  const { eventId } = await createEvent({ capacity: 10 });
  for (const body of [
    `{"userId":${userId},"eventId":${eventId},"ticketCount":1,"ticketCount":2}`,
    `{"userId":${userId},"eventId":${eventId},"ticketCount":1,"ticket\\u0043ount":2}`,
  ]) {
    const res = await fetch(`${urls.book}/api/v1/booking`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(await issuer.asCustomer(userId)) },
      body,
    });
    await assertRefused(res, 'body/ticketCount');
  }
  assert.deepEqual(await writtenFor(eventId), { bookings: 0, outbox: 0 });
});
