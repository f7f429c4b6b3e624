import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { pool } from '../../shared/db.js';
import { createVenue, serve, uniqueName, useTestIssuer, type RunningFunction, type TestIssuer } from '../../shared/test-support/index.js';
import getEvent from '../get-event/index.js';
import createEvent from './index.js';

let fn: RunningFunction;
let reader: RunningFunction;
let issuer: TestIssuer;
before(async () => {
  issuer = await useTestIssuer();
  [fn, reader] = await Promise.all([serve(createEvent), serve(getEvent)]);
});
after(async () => {
  await Promise.all([fn.stop(), reader.stop()]);
  await issuer.stop();
});

async function post(body: unknown, auth?: Record<string, string>): Promise<Response> {
  return fetch(`${fn.url}/api/v1/inventory/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(auth ?? (await issuer.asAdmin())) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

async function eventsAt(venueId: number): Promise<number> {
  const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM events WHERE venue_id = $1', [venueId]);
  return rows[0]!.n;
}

const inAnHour = () => new Date(Date.now() + 3_600_000);

test('an admin creates an event: 201, its Location, and the event as get-event shows it, new fields included', async () => {
  const venue = await createVenue({ totalCapacity: 500 });
  const name = uniqueName('Gala');
  const startsAt = inAnHour();
  // An offset other than Z: the answer gives the same instant in UTC.
  const local = new Date(startsAt.getTime() + 2 * 3_600_000).toISOString().replace('Z', '+02:00');
  const res = await post(
    `{"event":"${name}","venueId":${venue.venueId},"capacity":300,"ticketPrice":19.90,"maxTicketsPerCustomer":4,` +
      `"onSale":{"startsAt":"${local}","admitPerMinute":60,"maxActive":200,"passMinutes":10}}`,
  );

  assert.equal(res.status, 201);
  const text = await res.text();
  assert.match(text, /"ticketPrice":19\.90[,}]/, 'the price as the exact decimal stored');
  const created = JSON.parse(text) as { eventId: number };
  assert.deepEqual(created, {
    eventId: created.eventId,
    event: name,
    capacity: 300,
    ticketPrice: 19.9,
    venue: { id: venue.venueId, name: venue.name, address: '1 Test Street', totalCapacity: 500 },
    maxTicketsPerCustomer: 4,
    onSale: { startsAt: startsAt.toISOString(), admitPerMinute: 60, maxActive: 200, passMinutes: 10 },
  });
  assert.equal(res.headers.get('location'), `/api/v1/inventory/event/${created.eventId}`);
  assert.deepEqual(await (await fetch(`${reader.url}${res.headers.get('location')}`)).json(), created);
});

test('an event without a limit or on-sale settings reads in the original shape only', async () => {
  const venue = await createVenue();
  const res = await post({ event: uniqueName('Quiet night'), venueId: venue.venueId, capacity: 20, ticketPrice: 5 });
  assert.equal(res.status, 201);
  assert.deepEqual(Object.keys((await res.json()) as object).sort(), ['capacity', 'event', 'eventId', 'ticketPrice', 'venue']);
});

test('an event larger than its venue is a 409 problem, and an unknown venue a 404; neither writes', async () => {
  const venue = await createVenue({ totalCapacity: 100 });
  const tooLarge = await post({ event: uniqueName('Crush'), venueId: venue.venueId, capacity: 101, ticketPrice: 5 });
  assert.equal(tooLarge.status, 409);
  const problem = (await tooLarge.json()) as { type: string; detail: string };
  assert.equal(problem.type, 'urn:boxoffice:problem:capacity-exceeds-venue');
  assert.match(problem.detail, /101 tickets does not fit in venue \d+, which holds 100/);
  assert.equal(await eventsAt(venue.venueId), 0);

  const fits = await post({ event: uniqueName('Full house'), venueId: venue.venueId, capacity: 100, ticketPrice: 5 });
  assert.equal(fits.status, 201);

  const unknown = await post({ event: uniqueName('Nowhere'), venueId: 2147483000, capacity: 1, ticketPrice: 5 });
  assert.equal(unknown.status, 404);
  assert.match(((await unknown.json()) as { detail: string }).detail, /Venue 2147483000 does not exist/);
});

test('a customer may not create an event (403), and nothing is written', async () => {
  const venue = await createVenue();
  const res = await post({ event: uniqueName('Party'), venueId: venue.venueId, capacity: 10, ticketPrice: 5 }, await issuer.asCustomer(1));
  assert.equal(res.status, 403);
  assert.equal(await eventsAt(venue.venueId), 0);
});

const onSale = { startsAt: inAnHour().toISOString(), admitPerMinute: 60, maxActive: 100, passMinutes: 10 };
const invalid: [string, string, string[]][] = [
  ['no fields', '{}', ['body/capacity', 'body/event', 'body/ticketPrice', 'body/venueId']],
  ['a price with three decimals', '"ticketPrice":19.999', ['body/ticketPrice']],
  ['a price a float would round', '"ticketPrice":19.999999999999999999', ['body/ticketPrice']],
  ['a price with an exponent', '"ticketPrice":1.5e1', ['body/ticketPrice']],
  ['a negative price', '"ticketPrice":-1', ['body/ticketPrice']],
  ['a price as a string', '"ticketPrice":"19.99"', ['body/ticketPrice']],
  ['a price too large', '"ticketPrice":10000000000', ['body/ticketPrice']],
  ['a zero capacity', '"capacity":0', ['body/capacity']],
  ['a limit of 0', '"maxTicketsPerCustomer":0', ['body/maxTicketsPerCustomer']],
  ['a limit of null', '"maxTicketsPerCustomer":null', ['body/maxTicketsPerCustomer']],
  ['a limit written 2.0', '"maxTicketsPerCustomer":2.0', ['body/maxTicketsPerCustomer']],
  ['on-sale settings missing a field', `"onSale":${JSON.stringify({ ...onSale, passMinutes: undefined })}`, ['body/onSale/passMinutes']],
  ['a pass of 61 minutes', `"onSale":${JSON.stringify({ ...onSale, passMinutes: 61 })}`, ['body/onSale/passMinutes']],
  ['nobody admitted', `"onSale":${JSON.stringify({ ...onSale, admitPerMinute: 0, maxActive: 0 })}`, ['body/onSale/admitPerMinute', 'body/onSale/maxActive']],
  ['a start without an offset', `"onSale":${JSON.stringify({ ...onSale, startsAt: '2030-01-01T10:00:00' })}`, ['body/onSale/startsAt']],
  ['a start that is no date', `"onSale":${JSON.stringify({ ...onSale, startsAt: 'tomorrow' })}`, ['body/onSale/startsAt']],
  ['a start in the past', `"onSale":${JSON.stringify({ ...onSale, startsAt: '2020-01-01T10:00:00Z' })}`, ['body/onSale/startsAt']],
  ['a blank name', '"event":" "', ['body/event']],
];
for (const [what, member, names] of invalid) {
  test(`an event with ${what} is a 400 problem naming each fault, and writes nothing`, async () => {
    const venue = await createVenue();
    const valid = { event: uniqueName('Show'), venueId: venue.venueId, capacity: 10, ticketPrice: 5 };
    const body = member === '{}' ? member : `{${Object.entries(valid).filter(([key]) => !member.startsWith(`"${key}"`)).map(([k, v]) => `"${k}":${JSON.stringify(v)}`).join(',')},${member}}`;
    const res = await post(body);
    assert.equal(res.status, 400, await res.clone().text());
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    const problem = (await res.json()) as { invalidParams: { name: string }[] };
    assert.deepEqual([...new Set(problem.invalidParams.map((p) => p.name))].sort(), names);
    assert.equal(await eventsAt(venue.venueId), 0);
  });
}
