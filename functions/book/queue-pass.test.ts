import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { admitTick } from '../../admitter/admitter.js';
import { pool } from '../../shared/db.js';
import { issuePass } from '../../shared/queue-pass.js';
import { createEvent, serve, useTestIssuer, type RunningFunction, type TestIssuer } from '../../shared/test-support/index.js';
import { createCustomers, createOnSaleEvent, startSaleNow, usePassKey } from '../../shared/test-support/waiting-room.js';
import { joinLine, placeInLine } from '../../shared/waiting-room.js';
import book from './index.js';
import { reservations } from './reserve.js';

let fn: RunningFunction;
let issuer: TestIssuer;
before(async () => {
  usePassKey();
  issuer = await useTestIssuer();
  fn = await serve(book, { maxInflight: 1000 });
});
after(async () => {
  await fn.stop();
  await issuer.stop();
});

interface Problem {
  type: string;
  status: number;
  detail: string;
  reason?: string;
}

async function post(body: { userId: number; eventId: number; ticketCount: number }, pass?: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${fn.url}/api/v1/booking`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(await issuer.asCustomer(body.userId)), ...(pass === undefined ? {} : { 'queue-pass': pass }), ...headers },
    body: JSON.stringify(body),
  });
}

/** A sale that has started, with `count` customers admitted, and each one's pass. */
async function admitted(count: number, fields: { capacity?: number } = {}): Promise<{ eventId: number; customers: number[]; passes: string[] }> {
  const eventId = await createOnSaleEvent({ admitPerMinute: 6_000, maxActive: 1_000, ...fields });
  const customers = await createCustomers(count);
  for (const customerId of customers) await joinLine(pool, eventId, customerId);
  const start = await startSaleNow(eventId);
  await admitTick({ now: new Date(start.getTime() + 1_000), tickMs: 1_000, events: [eventId] });
  const passes = await Promise.all(customers.map(async (customerId) => (await placeInLine(pool, eventId, customerId))!.pass!));
  assert.ok(passes.every(Boolean), 'every customer was admitted');
  return { eventId, customers, passes };
}

async function sold(eventId: number): Promise<{ left: number; bookings: number }> {
  const { rows } = await pool.query<{ left: number; bookings: number }>(
    'SELECT left_capacity AS "left", (SELECT count(*)::int FROM bookings WHERE event_id = $1) AS bookings FROM events WHERE event_id = $1',
    [eventId],
  );
  return rows[0]!;
}

/** Polls often: a batch held behind a lock gives up after the lock timeout (2 s). */
async function until<T>(what: string, check: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function refusal(res: Response): Promise<Problem> {
  assert.equal(res.status, 403, await res.clone().text());
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
  return (await res.json()) as Problem;
}

test('booking an event sold through its waiting room without a pass is a 403 queue-pass-required saying how to get one, and takes nothing', async () => {
  const { eventId, customers } = await admitted(1);
  const problem = await refusal(await post({ userId: customers[0]!, eventId, ticketCount: 1 }));
  assert.deepEqual(problem, {
    type: 'urn:boxoffice:problem:queue-pass-required',
    title: 'A waiting-room pass is required',
    status: 403,
    detail: `Event ${eventId} sells through its waiting room: join it (POST /api/v1/queue/${eventId}) and, once admitted, send your pass in a Queue-Pass header`,
  });
  assert.deepEqual(await sold(eventId), { left: 100, bookings: 0 });
});

test("a customer's own pass books once: the booking spends it, the same pass again is refused as used, and a retry with the same Idempotency-Key still answers the booking", async () => {
  const { eventId, customers, passes } = await admitted(1);
  const body = { userId: customers[0]!, eventId, ticketCount: 2 };
  const first = await post(body, passes[0], { 'idempotency-key': 'queue-pass-once' });
  assert.equal(first.status, 201, await first.clone().text());
  const { rows } = await pool.query<{ used: boolean }>('SELECT used_at IS NOT NULL AS used FROM queue_entries WHERE event_id = $1', [eventId]);
  assert.deepEqual(rows, [{ used: true }], 'the pass is spent with the booking');

  const again = await refusal(await post(body, passes[0]));
  assert.deepEqual([again.type, again.reason, again.detail], ['urn:boxoffice:problem:queue-pass-invalid', 'used', 'The pass was used by a booking already: one pass, one booking']);
  const retry = await post(body, passes[0], { 'idempotency-key': 'queue-pass-once' });
  assert.equal(retry.status, 201);
  assert.equal(retry.headers.get('idempotent-replayed'), 'true');
  assert.deepEqual(await sold(eventId), { left: 98, bookings: 1 });
});

test('a pass of another customer or of another event is refused, naming which, and takes nothing', async () => {
  const { eventId, customers, passes } = await admitted(2);
  const other = await admitted(1);

  const stolen = await refusal(await post({ userId: customers[0]!, eventId, ticketCount: 1 }, passes[1]));
  assert.deepEqual([stolen.type, stolen.reason, stolen.detail], ['urn:boxoffice:problem:queue-pass-invalid', 'other-customer', `The pass belongs to another customer, not customer ${customers[0]}`]);
  const elsewhere = await refusal(await post({ userId: other.customers[0]!, eventId, ticketCount: 1 }, other.passes[0]));
  assert.deepEqual([elsewhere.reason, elsewhere.detail], ['other-event', `The pass is for event ${other.eventId}, not event ${eventId}`]);
  assert.deepEqual(await sold(eventId), { left: 100, bookings: 0 });
});

test('an expired pass is refused: by its own expiry, and by the database once the turn is over, whatever the pass says', async () => {
  const { eventId, customers, passes } = await admitted(2);
  const lapsed = await issuePass({ customerId: customers[0]!, eventId, expiresAt: new Date(Date.now() - 1_000) });
  const byPass = await refusal(await post({ userId: customers[0]!, eventId, ticketCount: 1 }, lapsed));
  assert.deepEqual([byPass.reason, byPass.detail], ['expired', 'The pass has expired: the turn it gave is over']);

  // The turn ended a minute ago (as the admitter's clock saw it), though the pass was signed to last.
  await pool.query("UPDATE queue_entries SET expires_at = now() - interval '1 minute', admitted_at = now() - interval '11 minutes' WHERE event_id = $1 AND customer_id = $2", [eventId, customers[1]]);
  const byDatabase = await refusal(await post({ userId: customers[1]!, eventId, ticketCount: 1 }, passes[1]));
  assert.equal(byDatabase.reason, 'expired');
  assert.deepEqual(await sold(eventId), { left: 100, bookings: 0 });
});

test('a pass counted as expired by the admitter is refused even while its own expiry has not come', async () => {
  const { eventId, customers, passes } = await admitted(1);
  await pool.query('UPDATE queue_entries SET expiry_counted = true WHERE event_id = $1', [eventId]);
  assert.equal((await refusal(await post({ userId: customers[0]!, eventId, ticketCount: 1 }, passes[0]))).reason, 'expired');
});

test('a pass the waiting room did not sign is refused as not genuine; one that is not a JWT at all is a 400', async () => {
  const { eventId, customers, passes } = await admitted(1);
  const [header, payload, signature] = passes[0]!.split('.');
  const tampered = `${header}.${payload}.${signature!.startsWith('A') ? 'B' : 'A'}${signature!.slice(1)}`;
  const forged = await refusal(await post({ userId: customers[0]!, eventId, ticketCount: 1 }, tampered));
  assert.deepEqual([forged.reason, forged.detail], ['not-genuine', 'The pass was not issued by the waiting room (malformed, or a bad signature)']);
  // The customer's own identity token is no pass either.
  const identity = (await issuer.asCustomer(customers[0]!)).authorization!.slice('Bearer '.length);
  assert.equal((await refusal(await post({ userId: customers[0]!, eventId, ticketCount: 1 }, identity))).reason, 'not-genuine');

  const malformed = await post({ userId: customers[0]!, eventId, ticketCount: 1 }, 'not a pass');
  assert.equal(malformed.status, 400);
  assert.deepEqual(((await malformed.json()) as { invalidParams: { name: string }[] }).invalidParams.map((p) => p.name), ['header/queue-pass']);
  assert.deepEqual(await sold(eventId), { left: 100, bookings: 0 });
});

test('requests sharing one pass in one batch: the first books, the later ones are refused as used, each answered as if alone', async () => {
  const { eventId, customers, passes } = await admitted(2);
  const blocker = await pool.connect();
  let answers: Response[];
  try {
    // Holding the event's lock, a first booking's batch waits, and the next three gather into one batch behind it.
    await blocker.query('BEGIN');
    await blocker.query('SELECT 1 FROM events WHERE event_id = $1 FOR UPDATE', [eventId]);
    const first = post({ userId: customers[1]!, eventId, ticketCount: 1 }, passes[1]);
    await until('the first batch to wait for the lock', async () => {
      const { rowCount } = await pool.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FROM events WHERE event_id = ANY%'");
      return rowCount ? true : undefined;
    });
    const shared = [1, 2, 3].map((ticketCount) => post({ userId: customers[0]!, eventId, ticketCount }, passes[0]));
    await until('the three to gather', () => (reservations.waiting === 3 ? true : undefined));
    await blocker.query('COMMIT');
    answers = await Promise.all([first, ...shared]);
  } finally {
    blocker.release();
  }
  assert.equal(answers[0]!.status, 201);
  const statuses = answers.slice(1).map((res) => res.status);
  assert.deepEqual([...statuses].sort(), [201, 403, 403]);
  for (const res of answers.slice(1).filter((r) => r.status === 403)) assert.equal(((await res.json()) as Problem).reason, 'used');
  const booked = (await answers.slice(1).find((r) => r.status === 201)!.json()) as { ticketCount: number };
  assert.deepEqual(await sold(eventId), { left: 99 - booked.ticketCount, bookings: 2 });
});

test('admitted buyers booking at once each book with their own pass, within the tickets left; the rest get 409, never a 503', async () => {
  const { eventId, customers, passes } = await admitted(30, { capacity: 20 });
  const answers = await Promise.all(customers.map((userId, i) => post({ userId, eventId, ticketCount: 1 }, passes[i])));
  const statuses = answers.map((res) => res.status);
  assert.equal(statuses.filter((s) => s === 201).length, 20);
  assert.equal(statuses.filter((s) => s === 409).length, 10, statuses.join(','));
  assert.deepEqual(await sold(eventId), { left: 0, bookings: 20 });
});

test('an event sold without a waiting room ignores a Queue-Pass header', async () => {
  const { eventId: queued, customers, passes } = await admitted(1);
  const { eventId } = await createEvent({ capacity: 5 });
  assert.ok(queued !== eventId);
  assert.equal((await post({ userId: customers[0]!, eventId, ticketCount: 1 }, passes[0])).status, 201);
  assert.equal((await post({ userId: customers[0]!, eventId, ticketCount: 1 })).status, 201);
});

test('without a key to check passes, a booking that sends one is a 503 queue-pass-unavailable with Retry-After', async () => {
  const { eventId, customers, passes } = await admitted(1);
  const key = process.env.QUEUE_PASS_KEY;
  delete process.env.QUEUE_PASS_KEY;
  try {
    const res = await post({ userId: customers[0]!, eventId, ticketCount: 1 }, passes[0]);
    assert.equal(res.status, 503);
    assert.equal(res.headers.get('retry-after'), '5');
    assert.equal(((await res.json()) as Problem).type, 'urn:boxoffice:problem:queue-pass-unavailable');
  } finally {
    process.env.QUEUE_PASS_KEY = key;
  }
  assert.deepEqual(await sold(eventId), { left: 100, bookings: 0 });
});
