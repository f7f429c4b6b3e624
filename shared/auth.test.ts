import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { signingKey } from '../scripts/dev-issuer.js';
import book from '../functions/book/index.js';
import getBooking from '../functions/get-booking/index.js';
import listEvents from '../functions/list-events/index.js';
import listOrders from '../functions/list-orders/index.js';
import { pool } from './db.js';
import { createCustomer, createEvent, serve, useTestIssuer, type RunningFunction, type TestIssuer } from './test-support/index.js';

// Tokens against the real verification code (jose, a JWKS fetched over
// HTTP), through real functions: every bad token is a 401 that writes nothing.

let issuer: TestIssuer;
let booking: RunningFunction;
let reader: RunningFunction;
let orders: RunningFunction;
before(async () => {
  issuer = await useTestIssuer();
  [booking, reader, orders] = await Promise.all([serve(book), serve(getBooking), serve(listOrders)]);
});
after(async () => {
  await Promise.all([booking.stop(), reader.stop(), orders.stop()]);
});

const base64url = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

async function bookWith(authorization: string | undefined, body: object): Promise<Response> {
  return fetch(`${booking.url}/api/v1/booking`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(authorization === undefined ? {} : { authorization }) },
    body: JSON.stringify(body),
  });
}

async function bookingsFor(eventId: number): Promise<number> {
  const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM bookings WHERE event_id = $1', [eventId]);
  return rows[0]!.n;
}

const badTokens: [string, () => Promise<string | undefined>][] = [
  ['no token', async () => undefined],
  ['a Basic credential', async () => 'Basic YWxpY2U6YWxpY2UtcGFzcw=='],
  ['a malformed token', async () => 'Bearer not.a.jwt'],
  ['an alg none token', async () => `Bearer ${base64url({ alg: 'none', typ: 'JWT' })}.${base64url({ sub: 'x', iss: issuer.issuer, aud: 'boxoffice-api', exp: 9999999999, realm_access: { roles: ['admin'] } })}.`],
  ['a token signed by an unknown key', async () => `Bearer ${await issuer.sign({ roles: ['admin'] }, await signingKey())}`],
  ['an expired token', async () => `Bearer ${await issuer.sign({ roles: ['admin'], expiresIn: -120 })}`],
  ['a token of another issuer', async () => `Bearer ${await issuer.sign({ roles: ['admin'], issuer: 'http://127.0.0.1:1/realms/other' })}`],
  ['a token for another audience', async () => `Bearer ${await issuer.sign({ roles: ['admin'], audience: 'some-other-api' })}`],
  ['a token with a tampered payload', async () => {
    const [header, , signature] = (await issuer.sign({ customerId: 1, roles: ['customer'] })).split('.');
    return `Bearer ${header}.${base64url({ sub: 'x', iss: issuer.issuer, aud: 'boxoffice-api', exp: 9999999999, realm_access: { roles: ['admin'] } })}.${signature}`;
  }],
];

for (const [what, token] of badTokens) {
  test(`${what} is refused with 401 and WWW-Authenticate, and nothing is written`, async () => {
    const userId = await createCustomer();
    const { eventId } = await createEvent({ capacity: 5 });

    const res = await bookWith(await token(), { userId, eventId, ticketCount: 1 });

    assert.equal(res.status, 401);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm="boxoffice"/);
    assert.equal(await bookingsFor(eventId), 0);
  });
}

test('a customer books for themselves', async () => {
  const userId = await createCustomer();
  const { eventId } = await createEvent();
  const res = await bookWith((await issuer.asCustomer(userId)).authorization, { userId, eventId, ticketCount: 1 });
  assert.equal(res.status, 201);
});

test('a customer booking for another customer gets 403 and nothing is written', async () => {
  const [me, other] = [await createCustomer(), await createCustomer()];
  const { eventId } = await createEvent();
  const res = await bookWith((await issuer.asCustomer(me)).authorization, { userId: other, eventId, ticketCount: 1 });
  assert.equal(res.status, 403);
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
  assert.equal(await bookingsFor(eventId), 0);
});

test('a token linked to no customer and without the admin role gets 403', async () => {
  const userId = await createCustomer();
  const { eventId } = await createEvent();
  const res = await bookWith(`Bearer ${await issuer.sign({ roles: ['customer'] })}`, { userId, eventId, ticketCount: 1 });
  assert.equal(res.status, 403);
});

test("a plain top-level roles claim grants nothing: only Keycloak's realm_access.roles count", async () => {
  const userId = await createCustomer();
  const { eventId } = await createEvent();
  const res = await bookWith(`Bearer ${await issuer.sign({ extra: { realm_access: undefined, roles: ['admin'] } })}`, { userId, eventId, ticketCount: 1 });
  assert.equal(res.status, 403);
  assert.equal(await bookingsFor(eventId), 0);
});

test('the bearer scheme is matched case-insensitively (RFC 7235)', async () => {
  const userId = await createCustomer();
  const { eventId } = await createEvent();
  const token = await issuer.sign({ customerId: userId, roles: ['customer'] });
  for (const scheme of ['bearer', 'BEARER', 'BeArEr']) {
    assert.equal((await bookWith(`${scheme} ${token}`, { userId, eventId, ticketCount: 1 })).status, 201, scheme);
  }
});

test('an admin books for anyone', async () => {
  const userId = await createCustomer();
  const { eventId } = await createEvent();
  const res = await bookWith((await issuer.asAdmin()).authorization, { userId, eventId, ticketCount: 1 });
  assert.equal(res.status, 201);
});

test('a booking is read by its customer and an admin, not by another customer', async () => {
  const [owner, other] = [await createCustomer(), await createCustomer()];
  const { eventId } = await createEvent();
  const made = (await (await bookWith((await issuer.asCustomer(owner)).authorization, { userId: owner, eventId, ticketCount: 1 })).json()) as { bookingId: string };
  const read = (headers: Record<string, string>) => fetch(`${reader.url}/api/v1/booking/${made.bookingId}`, { headers });

  assert.equal((await read(await issuer.asCustomer(owner))).status, 200);
  assert.equal((await read(await issuer.asAdmin())).status, 200);
  assert.equal((await read(await issuer.asCustomer(other))).status, 403);
  assert.equal((await read({})).status, 401);
});

test("orders: a customer lists their own by default, not another's; an admin names the customer", async () => {
  const [me, other] = [await createCustomer(), await createCustomer()];
  const list = (query: string, headers: Record<string, string>) => fetch(`${orders.url}/api/v1/orders${query}`, { headers });

  assert.equal((await list('', await issuer.asCustomer(me))).status, 200);
  assert.equal((await list(`?userId=${me}`, await issuer.asCustomer(me))).status, 200);
  assert.equal((await list(`?userId=${other}`, await issuer.asCustomer(me))).status, 403);
  assert.equal((await list(`?userId=${other}`, await issuer.asAdmin())).status, 200);
  const noCustomer = await list('', await issuer.asAdmin());
  assert.equal(noCustomer.status, 400);
  assert.equal((await list(`?userId=${me}`, {})).status, 401);
});

test('catalogue reads stay public, even with a bad token', async () => {
  const catalogue = await serve(listEvents);
  try {
    assert.equal((await fetch(`${catalogue.url}/api/v1/inventory/events`)).status, 200);
    assert.equal((await fetch(`${catalogue.url}/api/v1/inventory/events`, { headers: { authorization: 'Bearer junk' } })).status, 200);
  } finally {
    await catalogue.stop();
  }
});
