import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { signingKey } from '../../scripts/dev-issuer.js';
import { freePort, untilReady } from '../../scripts/functions.js';
import { DELIVERER_ROLE } from '../../shared/auth.js';
import { deliverCloudEvent } from '../../shared/cloudevent-delivery.js';
import { pool } from '../../shared/db.js';
import { createCustomer, createEvent, metricValue, serve, useTestIssuer, type RunningFunction, type TestIssuer } from '../../shared/test-support/index.js';
import { confirmations } from './confirm.js';
import consumeOrder from './index.js';

let fn: RunningFunction;
let issuer: TestIssuer;
/** The deliverers' Authorization header, got by the client credentials grant as the trigger gets it. */
let deliverer: Record<string, string>;
before(async () => {
  issuer = await useTestIssuer();
  deliverer = await issuer.asDeliverer();
  fn = await serve(consumeOrder);
});
after(async () => {
  await fn.stop();
  await issuer.stop();
});

interface Booking {
  bookingId: string;
  userId: number;
  eventId: number;
  ticketCount: number;
}

/** A PENDING booking whose tickets are already reserved, as book leaves it. */
async function pendingBooking(ticketCount = 2): Promise<Booking> {
  const userId = await createCustomer();
  const { eventId } = await createEvent({ capacity: 10, ticketPrice: '12.50' });
  const bookingId = randomUUID();
  await pool.query('UPDATE events SET left_capacity = left_capacity - $2 WHERE event_id = $1', [eventId, ticketCount]);
  await pool.query(
    'INSERT INTO bookings (booking_id, customer_id, event_id, ticket_count, total_price) VALUES ($1, $2, $3, $4::int, 12.50 * $4::int)',
    [bookingId, userId, eventId, ticketCount],
  );
  return { bookingId, userId, eventId, ticketCount };
}

const BINARY_HEADERS = { 'ce-specversion': '1.0', 'ce-type': 'dev.knative.kafka.event', 'ce-source': '/test', 'content-type': 'application/json' };

/** POSTs as the deliverer, unless `headers` names another Authorization. */
function post(headers: Record<string, string>, body?: string | Buffer): Promise<Response> {
  return fetch(fn.url, { method: 'POST', headers: { ...deliverer, ...headers }, body });
}

/** A binary CloudEvent; `data` given as a string is sent as that exact JSON text. */
function binary(data: unknown, id = randomUUID(), headers: Record<string, string> = {}): Promise<Response> {
  return post({ ...BINARY_HEADERS, 'ce-id': id, ...headers }, typeof data === 'string' ? data : JSON.stringify(data));
}

/** A structured CloudEvent whose data is the exact JSON text `dataText`; an attribute given as undefined is left out. */
function structured(dataText: string, attributes: Record<string, unknown> = {}): Promise<Response> {
  const envelope = JSON.stringify({ specversion: '1.0', id: randomUUID(), type: 'dev.knative.kafka.event', source: '/s', ...attributes });
  return post({ 'content-type': 'application/cloudevents+json' }, envelope.replace(/}$/, `,"data":${dataText}}`));
}

/** The message `book` writes for a booking, with its total as exact JSON text. */
function messageText(booking: Booking, fields: Record<string, unknown> = {}, totalPrice = '25.00'): string {
  return JSON.stringify({ ...booking, ...fields }).replace(/}$/, `,"totalPrice":${totalPrice}}`);
}

async function problemOf(res: Response): Promise<{ status: number; type: string; detail: string; contentType: string | null }> {
  const body = (await res.json()) as { type: string; detail: string };
  return { status: res.status, type: body.type, detail: body.detail, contentType: res.headers.get('content-type') };
}

async function state(booking: Booking) {
  const { rows } = await pool.query<{ status: string; orders: number; total: string | null; left_capacity: number }>(
    `SELECT b.status, (SELECT count(*)::int FROM orders WHERE booking_id = b.booking_id) AS orders,
            (SELECT total::text FROM orders WHERE booking_id = b.booking_id) AS total, e.left_capacity
       FROM bookings b JOIN events e USING (event_id) WHERE b.booking_id = $1`,
    [booking.bookingId],
  );
  return rows[0]!;
}

test('a booking message becomes one order and confirms the booking', async () => {
  const booking = await pendingBooking(2);
  const res = await binary({ ...booking, totalPrice: 25.0 });
  assert.equal(res.status, 200);
  const answer = (await res.json()) as { outcome: string; orderId: string };
  assert.equal(answer.outcome, 'created');
  assert.deepEqual(await state(booking), { status: 'CONFIRMED', orders: 1, total: '25.00', left_capacity: 8 });
});

test("only the deliverers' service account may deliver: no token or a bad one is a 401 problem, a customer's or an admin's token a 403, and none writes anything; /metrics and the probes need no token", async () => {
  const booking = await pendingBooking(2);
  const headers = { ...BINARY_HEADERS, 'ce-id': randomUUID() };
  const send = (authorization?: string) => fetch(fn.url, { method: 'POST', headers: authorization ? { ...headers, authorization } : headers, body: JSON.stringify(booking) });

  const none = await send();
  assert.equal(none.status, 401);
  assert.equal(none.headers.get('content-type'), 'application/problem+json');
  assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer /);
  const refused: [string, string | undefined, number][] = [
    ['a customer', (await issuer.asCustomer(booking.userId)).authorization, 403],
    ['an admin', (await issuer.asAdmin()).authorization, 403],
    ['the role as a plain top-level claim', `Bearer ${await issuer.sign({ extra: { roles: [DELIVERER_ROLE] } })}`, 403],
    ['the role, signed with another key', `Bearer ${await issuer.sign({ roles: [DELIVERER_ROLE] }, await signingKey())}`, 401],
    ['the role, expired', `Bearer ${await issuer.sign({ roles: [DELIVERER_ROLE], expiresIn: -60 })}`, 401],
    ['the role, for another audience', `Bearer ${await issuer.sign({ roles: [DELIVERER_ROLE], audience: 'another-api' })}`, 401],
    ['not a bearer token', 'Basic Ym94b2ZmaWNlLWRlbGl2ZXJlcjpzZWNyZXQ=', 401],
  ];
  for (const [who, authorization, status] of refused) {
    const problem = await problemOf(await send(authorization));
    assert.deepEqual([problem.status, problem.contentType], [status, 'application/problem+json'], `${who}: ${problem.detail}`);
  }
  // Nothing else of the function shows without the token: a GET is a 401 too, not a 405.
  assert.equal((await fetch(fn.url)).status, 401);
  assert.deepEqual(await state(booking), { status: 'PENDING', orders: 0, total: null, left_capacity: 8 });
  for (const path of ['/metrics', '/_/health', '/_/ready']) assert.equal((await fetch(`${fn.url}${path}`)).status, 200, `${path} needs no token`);

  assert.equal((await send(deliverer.authorization)).status, 200);
  assert.equal((await state(booking)).status, 'CONFIRMED');
});

test('CONSUME_ORDER_AUTH=off: consume-order says so loudly at start and accepts a delivery without a token; a value other than on or off stops it with one line', async (t) => {
  const port = await freePort();
  const env = { ...process.env, PORT: String(port), HOST: '127.0.0.1', OIDC_ISSUER: '', LOG_LEVEL: 'warn' };
  const child = spawn(process.execPath, ['--import', 'tsx', 'shared/run.ts', 'consume-order'], { env: { ...env, CONSUME_ORDER_AUTH: 'off' } });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  t.after(() => child.kill('SIGKILL'));
  await untilReady(`http://127.0.0.1:${port}`);

  const booking = await pendingBooking(1);
  const res = await fetch(`http://127.0.0.1:${port}`, { method: 'POST', headers: { ...BINARY_HEADERS, 'ce-id': randomUUID() }, body: JSON.stringify(booking) });
  assert.equal(res.status, 200, await res.clone().text());
  assert.equal((await state(booking)).status, 'CONFIRMED');
  for (let look = 0; !output.includes('CONSUME_ORDER_AUTH=off') && look < 100; look += 1) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.match(output, /"level":40.*CONSUME_ORDER_AUTH=off: consume-order ACCEPTS DELIVERIES FROM ANYONE/, output);

  const bad = spawnSync(process.execPath, ['--import', 'tsx', 'shared/run.ts', 'consume-order'], { env: { ...env, PORT: String(await freePort()), CONSUME_ORDER_AUTH: 'no' }, encoding: 'utf8', timeout: 30_000 });
  assert.equal(bad.status, 1, bad.stderr);
  assert.equal(bad.stderr.trim(), 'boxoffice consume-order: CONSUME_ORDER_AUTH must be on or off, got "no"');
});

test('the same message delivered again is a 200 no-op: still one order, capacity lowered once', async () => {
  const booking = await pendingBooking(3);
  const id = randomUUID();
  assert.equal((await binary(booking, id)).status, 200);
  const again = await binary(booking, id);
  assert.equal(again.status, 200);
  assert.equal(((await again.json()) as { outcome: string }).outcome, 'duplicate');
  assert.deepEqual(await state(booking), { status: 'CONFIRMED', orders: 1, total: '37.50', left_capacity: 7 });
  const metrics = await (await fetch(`${fn.url}/metrics`)).text();
  assert.ok((metricValue(metrics, 'boxoffice_orders_total', { outcome: 'duplicate' }) ?? 0) >= 1);
});

test('concurrent redeliveries of one message still make one order', async () => {
  const booking = await pendingBooking(1);
  const answers = await Promise.all(Array.from({ length: 10 }, () => binary(booking)));
  assert.deepEqual(new Set(answers.map((a) => a.status)), new Set([200]));
  assert.equal((await state(booking)).orders, 1);
});

test('a message that disagrees with its booking is refused with 422 and leaves the booking, tickets and orders as they were', async () => {
  const booking = await pendingBooking(2);
  const other = { eventId: (await createEvent({ capacity: 10 })).eventId, userId: await createCustomer() };
  const disagreeing: [string, string][] = [
    ['ticketCount', messageText(booking, { ticketCount: 5 })],
    ['eventId', messageText(booking, { eventId: other.eventId })],
    ['userId', messageText(booking, { userId: other.userId })],
    ['totalPrice', messageText(booking, {}, '25.01')],
    // The same float as 25.00, but not the same decimal.
    ['totalPrice', messageText(booking, {}, '25.000000000000000001')],
  ];
  for (const [field, text] of disagreeing) {
    const problem = await problemOf(await binary(text));
    assert.equal(problem.status, 422, `${field}: ${problem.detail}`);
    assert.equal(problem.type, 'urn:boxoffice:problem:booking-mismatch');
    assert.match(problem.detail, new RegExp(field));
    assert.deepEqual(await state(booking), { status: 'PENDING', orders: 0, total: null, left_capacity: 8 }, field);
  }
  const { rows } = await pool.query<{ left_capacity: number }>('SELECT left_capacity FROM events WHERE event_id = $1', [other.eventId]);
  assert.equal(rows[0]!.left_capacity, 10);

  // The right message, its total in other digits of the same decimal, still confirms it.
  const res = await binary(messageText(booking, {}, '25.000'));
  assert.equal(res.status, 200);
  assert.equal(((await res.json()) as { outcome: string }).outcome, 'created');
  assert.deepEqual(await state(booking), { status: 'CONFIRMED', orders: 1, total: '25.00', left_capacity: 8 });
});

test('a totalPrice written with escapes or nested is still compared as the data reads it; one written twice is refused', async () => {
  const booking = await pendingBooking(2);
  // The data's totalPrice is 25.01; the only plainly written one is another object's.
  const escaped = JSON.stringify({ ...booking, other: { totalPrice: 25 } }).replace(/}$/, ',"totalPric\\u0065":25.01}');
  const mismatch = await problemOf(await binary(escaped));
  assert.equal(mismatch.status, 422, mismatch.detail);
  // JSON.parse would keep the last of a repeated key: no reading of it is safe.
  const repeated = await problemOf(await binary(messageText(booking, {}, '25.00').replace(/}$/, ',"totalPrice":25.01}')));
  assert.deepEqual([repeated.status, repeated.type], [400, 'urn:boxoffice:problem:validation-failed'], repeated.detail);
  assert.match(repeated.detail, /data\/totalPrice is given more than once/);
  assert.equal((await state(booking)).status, 'PENDING');
});

test('a message that disagrees with a confirmed booking is refused too, not taken for a duplicate', async () => {
  const booking = await pendingBooking(2);
  assert.equal((await binary(booking)).status, 200);
  const problem = await problemOf(await binary({ ...booking, ticketCount: 3 }));
  assert.equal(problem.status, 422);
  assert.equal(problem.type, 'urn:boxoffice:problem:booking-mismatch');
  assert.deepEqual(await state(booking), { status: 'CONFIRMED', orders: 1, total: '25.00', left_capacity: 8 });
});

test("a structured event's totalPrice is compared as a decimal too", async () => {
  const booking = await pendingBooking(2);
  assert.equal((await structured(messageText(booking, {}, '25.000000000000000001'))).status, 422);
  assert.equal((await state(booking)).status, 'PENDING');
  assert.equal((await structured(messageText(booking, {}, '25.0'))).status, 200);
  assert.equal((await state(booking)).status, 'CONFIRMED');
});

/** Cancels a booking as cancel-booking does, without its outbox row: the tickets go back. */
async function cancelled(booking: Booking): Promise<Booking> {
  await pool.query("UPDATE bookings SET status = 'CANCELLED', cancelled_at = now() WHERE booking_id = $1", [booking.bookingId]);
  await pool.query('UPDATE events SET left_capacity = left_capacity + $2 WHERE event_id = $1', [booking.eventId, booking.ticketCount]);
  return booking;
}

test('a message for a booking cancelled before its order was made makes no order and is answered 200 cancelled, so it is not dead-lettered', async () => {
  const booking = await cancelled(await pendingBooking(2));
  const res = await binary(messageText(booking));
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { bookingId: booking.bookingId, outcome: 'cancelled', status: 'CANCELLED' });
  assert.deepEqual(await state(booking), { status: 'CANCELLED', orders: 0, total: null, left_capacity: 10 });
  const metrics = await (await fetch(`${fn.url}/metrics`)).text();
  assert.ok((metricValue(metrics, 'boxoffice_orders_total', { outcome: 'cancelled' }) ?? 0) >= 1);
});

test("a booking.cancelled message on the same topic is answered 200 cancelled when its booking is cancelled, refused with 422 when it is not; a message type it does not know is a 400", async () => {
  const booking = await cancelled(await pendingBooking(2));
  const cancellation = messageText(booking, { type: 'booking.cancelled', orderId: null, refund: 0 });
  const res = await binary(cancellation);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { bookingId: booking.bookingId, outcome: 'cancelled', status: 'CANCELLED' });

  const live = await pendingBooking(2);
  const refused = await problemOf(await binary(messageText(live, { type: 'booking.cancelled' })));
  assert.deepEqual([refused.status, refused.type], [422, 'urn:boxoffice:problem:booking-mismatch']);
  assert.match(refused.detail, /cancelled, but it is PENDING/);
  const unknown = await problemOf(await binary(messageText(live, { type: 'booking.refunded' })));
  assert.deepEqual([unknown.status, unknown.type], [400, 'urn:boxoffice:problem:validation-failed'], unknown.detail);
  assert.deepEqual(await state(live), { status: 'PENDING', orders: 0, total: null, left_capacity: 8 });
});

test('a message for a booking that does not exist is refused with 422, so it is dead-lettered', async () => {
  const res = await binary({ bookingId: randomUUID(), userId: 1, eventId: 1, ticketCount: 1 });
  assert.equal(res.status, 422);
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
});

test('malformed data is a 400 problem naming the field', async () => {
  const res = await binary({ bookingId: 'not-a-uuid', userId: 1, eventId: 1, ticketCount: 1 });
  assert.equal(res.status, 400);
  const names = ((await res.json()) as { invalidParams: { name: string }[] }).invalidParams.map((p) => p.name);
  assert.deepEqual([...new Set(names)], ['data/bookingId']);
});

test('a binary CloudEvent without a Content-Type is still read as JSON', async () => {
  const booking = await pendingBooking(1);
  const res = await fetch(fn.url, {
    method: 'POST',
    headers: { ...deliverer, 'ce-specversion': '1.0', 'ce-id': 'x', 'ce-type': 't', 'ce-source': '/s' },
    body: Buffer.from(JSON.stringify(booking)),
  });
  assert.equal(res.status, 200);
  assert.equal((await state(booking)).status, 'CONFIRMED');
});

test("the binary event the trigger delivers, with book's exact total, confirms the booking", async () => {
  const booking = await pendingBooking(2);
  const event = { id: 'partition:0/offset:7', type: 'dev.knative.kafka.event', source: '/boxoffice/trigger/booking', subject: booking.bookingId };
  await deliverCloudEvent(fn.url, { ...event, data: messageText(booking) }, { token: issuer.deliverer });
  assert.deepEqual(await state(booking), { status: 'CONFIRMED', orders: 1, total: '25.00', left_capacity: 8 });
});

test('a structured-mode CloudEvent is accepted', async () => {
  const booking = await pendingBooking(1);
  const res = await fetch(fn.url, {
    method: 'POST',
    headers: { ...deliverer, 'content-type': 'application/cloudevents+json' },
    body: JSON.stringify({ specversion: '1.0', id: 'e-1', type: 'dev.knative.kafka.event', source: '/s', data: booking }),
  });
  assert.equal(res.status, 200);
  assert.equal((await state(booking)).status, 'CONFIRMED');
});

test("OpenFaaS kafka-connector's raw message is accepted", async () => {
  const booking = await pendingBooking(1);
  const res = await fetch(fn.url, {
    method: 'POST',
    headers: { ...deliverer, 'x-topic': 'booking', 'x-kafka-partition': '0', 'x-kafka-offset': '42', 'x-kafka-key': booking.bookingId },
    body: messageText(booking, {}, '12.50'),
  });
  assert.equal(res.status, 200);
  assert.equal((await state(booking)).status, 'CONFIRMED');
});

test('a request that is no CloudEvent is a 400 problem; a GET is a 405', async () => {
  const res = await post({ 'content-type': 'application/json' }, '{}');
  assert.equal(res.status, 400);
  assert.equal(((await res.json()) as { type: string }).type, 'urn:boxoffice:problem:not-a-cloudevent');
  assert.equal((await fetch(fn.url, { headers: deliverer })).status, 405);
  assert.equal((await fetch(`${fn.url}/_/health`)).status, 200);
});

test('specversion 0.3 is refused with a 400 naming it, in binary and structured mode', async () => {
  const booking = await pendingBooking(1);
  for (const res of [await binary(booking, randomUUID(), { 'ce-specversion': '0.3' }), await structured(JSON.stringify(booking), { specversion: '0.3' })]) {
    const problem = await problemOf(res);
    assert.equal(problem.status, 400);
    assert.equal(problem.type, 'urn:boxoffice:problem:not-a-cloudevent');
    assert.match(problem.detail, /specversion "0\.3"/);
  }
  assert.equal((await state(booking)).status, 'PENDING');
});

test('a structured event without a source is refused with a 400 naming it', async () => {
  const booking = await pendingBooking(1);
  const problem = await problemOf(await structured(JSON.stringify(booking), { source: undefined }));
  assert.equal(problem.status, 400);
  assert.equal(problem.type, 'urn:boxoffice:problem:not-a-cloudevent');
  assert.match(problem.detail, /source/);
  assert.equal((await state(booking)).status, 'PENDING');
});

test('no malformed event gets a 500: each is a 400 problem and writes nothing', async () => {
  const booking = await pendingBooking(1);
  const data = JSON.stringify(booking);
  const id = randomUUID();
  const ce = 'urn:boxoffice:problem:not-a-cloudevent';
  const without = (name: string) => Object.fromEntries(Object.entries({ ...BINARY_HEADERS, 'ce-id': id }).filter(([header]) => header !== name));
  const structuredJson = { 'content-type': 'application/cloudevents+json' };
  const cases: [string, Promise<Response>, string][] = [
    ['binary without ce-source', post(without('ce-source'), data), ce],
    ['binary without ce-type', post(without('ce-type'), data), ce],
    ['binary without ce-specversion', post(without('ce-specversion'), data), ce],
    ['binary with specversion 2.0', binary(data, id, { 'ce-specversion': '2.0' }), ce],
    ['binary with an empty ce-source', binary(data, id, { 'ce-source': '' }), ce],
    ['binary with a badly named extension', binary(data, id, { 'ce-bad_name': 'x' }), ce],
    ['binary text/plain data that is not JSON', binary('hello', id, { 'content-type': 'text/plain' }), 'urn:boxoffice:problem:malformed-json'],
    ['binary data that is not JSON, no content type', post(without('content-type'), Buffer.from('hello')), 'urn:boxoffice:problem:malformed-json'],
    ['binary JSON that does not parse', binary('{"bookingId":', id), 'urn:boxoffice:problem:malformed-json'],
    ['binary data a JSON string holding JSON', binary(JSON.stringify(data), id), 'urn:boxoffice:problem:validation-failed'],
    ['binary data null', binary('null', id), 'urn:boxoffice:problem:validation-failed'],
    ['binary without a body', post({ ...BINARY_HEADERS, 'ce-id': id }), 'urn:boxoffice:problem:validation-failed'],
    ['structured without id', structured(data, { id: undefined }), ce],
    ['structured without type', structured(data, { type: undefined }), ce],
    ['structured without specversion', structured(data, { specversion: undefined }), ce],
    ['structured with specversion 1 (a number)', structured(data, { specversion: 1 }), ce],
    ['structured with source a number', structured(data, { source: 5 }), ce],
    ['structured with a badly named attribute', structured(data, { 'Bad-Name': 'x' }), ce],
    ['structured with data_base64', structured(data, { data_base64: Buffer.from(data).toString('base64') }), ce],
    ['structured: an array', post(structuredJson, '[]'), ce],
    ['structured: a string', post(structuredJson, '"event"'), ce],
    ['structured: null', post(structuredJson, 'null'), ce],
    ['structured: no body', post(structuredJson), ce],
    ['structured: JSON that does not parse', post(structuredJson, '{"specversion":'), 'urn:boxoffice:problem:malformed-json'],
    ['structured, not JSON', post({ 'content-type': 'application/cloudevents' }, 'hello'), ce],
    ['a batch', post({ 'content-type': 'application/cloudevents-batch+json' }, `[${JSON.stringify({ specversion: '1.0', id, type: 't', source: '/s', data: booking })}]`), ce],
    ['totalPrice beyond a float', binary(messageText(booking, {}, '1e400'), id), 'urn:boxoffice:problem:validation-failed'],
    ['totalPrice with more digits than numeric holds', binary(messageText(booking, {}, `0.${'0'.repeat(20_000)}1`), id), 'urn:boxoffice:problem:validation-failed'],
    ['totalPrice negative', binary(messageText(booking, {}, '-25.00'), id), 'urn:boxoffice:problem:validation-failed'],
    ['totalPrice a string', binary(messageText(booking, {}, '"25.00"'), id), 'urn:boxoffice:problem:validation-failed'],
    ['a NUL escape Postgres cannot store', binary(messageText(booking, { note: '\u0000' }), id), 'urn:boxoffice:problem:validation-failed'],
  ];
  const answers = await Promise.all(cases.map(async ([name, res, type]) => ({ name, type, problem: await problemOf(await res) })));
  for (const { name, type, problem } of answers) {
    assert.deepEqual({ status: problem.status, type: problem.type, contentType: problem.contentType }, { status: 400, type, contentType: 'application/problem+json' }, `${name}: ${problem.detail}`);
  }
  assert.deepEqual(await state(booking), { status: 'PENDING', orders: 0, total: null, left_capacity: 9 });
  assert.equal((await binary(booking)).status, 200);
});

test('a database connection lost mid-message is a 5xx, so the deliverer retries; the retry confirms the booking', async () => {
  const booking = await pendingBooking(1);
  const holder = await pool.connect();
  try {
    // Holds the booking's row lock, so the message's transaction waits where it can be cut off.
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM bookings WHERE booking_id = $1 FOR UPDATE', [booking.bookingId]);
    const answer = binary(booking);
    let waiting: number | undefined;
    for (let look = 0; waiting === undefined && look < 1000; look += 1) {
      const { rows } = await pool.query<{ pid: number }>(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE OF bookings%'",
      );
      waiting = rows[0]?.pid;
      if (waiting === undefined) await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.ok(waiting, 'the message never waited for the booking lock');
    await pool.query('SELECT pg_terminate_backend($1)', [waiting]);
    const res = await answer;
    assert.ok(res.status >= 500, `answered ${res.status}`);
  } finally {
    await holder.query('ROLLBACK');
    holder.release();
  }
  assert.deepEqual(await state(booking), { status: 'PENDING', orders: 0, total: null, left_capacity: 9 });
  assert.equal((await binary(booking)).status, 200);
  assert.equal((await state(booking)).status, 'CONFIRMED');
});

test('messages delivered at once are confirmed in one transaction, each answered exactly as if it had come alone', async () => {
  const [held, twice, confirmed, disagreeing, escaped, mispriced] = await Promise.all([1, 2, 1, 2, 2, 2].map((n) => pendingBooking(n)));
  assert.equal((await binary(confirmed!)).status, 200);
  const holder = await pool.connect();
  let answers: Response[];
  try {
    // The first message waits for the held row inside its batch, so the rest gather behind it.
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM bookings WHERE booking_id = $1 FOR UPDATE', [held!.bookingId]);
    const first = binary(held!);
    await until(() => confirmations.waiting === 0 && lockWaiters().then((n) => n === 1));
    const rest = [
      binary(messageText(twice!)),
      binary(messageText(twice!)),
      binary(confirmed!),
      binary({ ...twice!, bookingId: randomUUID() }),
      binary({ ...disagreeing!, ticketCount: 3 }),
      binary(messageText(escaped!).replace('"bookingId"', '"\\u0062ookingId"')),
      binary(messageText(mispriced!, {}, '25.01')),
    ];
    await until(() => confirmations.waiting === rest.length);
    await holder.query('COMMIT');
    answers = await Promise.all([first, ...rest]);
  } finally {
    holder.release();
  }
  const bodies = await Promise.all(answers.map((a) => a.json() as Promise<{ outcome?: string; status?: unknown; type?: string }>));
  assert.deepEqual(
    bodies.map((body, i) => [answers[i]!.status, body.outcome ?? body.type]),
    [
      [200, 'created'],
      [200, 'created'],
      [200, 'duplicate'],
      [200, 'duplicate'],
      [422, 'urn:boxoffice:problem:unknown-booking'],
      [422, 'urn:boxoffice:problem:booking-mismatch'],
      [200, 'created'],
      [422, 'urn:boxoffice:problem:booking-mismatch'],
    ],
  );
  assert.deepEqual(await state(twice!), { status: 'CONFIRMED', orders: 1, total: '25.00', left_capacity: 8 });
  assert.deepEqual(await state(escaped!), { status: 'CONFIRMED', orders: 1, total: '25.00', left_capacity: 8 });
  assert.deepEqual(await state(disagreeing!), { status: 'PENDING', orders: 0, total: null, left_capacity: 8 });
  assert.deepEqual(await state(mispriced!), { status: 'PENDING', orders: 0, total: null, left_capacity: 8 });
  assert.equal((await state(confirmed!)).orders, 1);
});

/** Sessions of this database waiting for a row lock on bookings. */
async function lockWaiters(): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE OF bookings%'",
  );
  return rows[0]!.n;
}

async function until(condition: () => boolean | Promise<boolean>): Promise<void> {
  for (let look = 0; look < 1000; look += 1) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.fail('condition never held');
}
