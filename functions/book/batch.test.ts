import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { after, before, test } from 'node:test';
import { freePort, untilReady } from '../../scripts/functions.js';
import { pool } from '../../shared/db.js';
import { bookingBatchSize } from '../../shared/metrics.js';
import { createCustomer, createEvent, serve, useTestIssuer, type RunningFunction, type TestIssuer } from '../../shared/test-support/index.js';
import book from './index.js';
import { reservations } from './reserve.js';

let fn: RunningFunction;
let issuer: TestIssuer;
before(async () => {
  issuer = await useTestIssuer();
  fn = await serve(book, { maxInflight: 1000 });
});
after(async () => {
  await fn.stop();
  await issuer.stop();
});

interface Booking {
  userId: number;
  eventId: number;
  ticketCount: number;
}

// One token per customer, signed once: requests fired together then arrive together.
const tokens = new Map<number, Promise<Record<string, string>>>();

async function post(body: Booking, headers: Record<string, string> = {}, url = fn.url): Promise<Response> {
  if (!tokens.has(body.userId)) tokens.set(body.userId, issuer.asCustomer(body.userId));
  return fetch(`${url}/api/v1/booking`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(await tokens.get(body.userId)!), ...headers },
    body: JSON.stringify(body),
  });
}

/** Polls often: the batch held behind a lock gives up after the lock timeout (2 s). */
async function until<T>(what: string, check: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** The backend of a statement that waits for a lock, by a fragment of its SQL. */
async function waitingOnLock(sql: string): Promise<number | undefined> {
  const { rows } = await pool.query<{ pid: number }>(
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%'",
    [sql],
  );
  return rows[0]?.pid;
}

async function batchSizes(): Promise<{ batches: number; requests: number }> {
  const { values } = await bookingBatchSize.get();
  const valueOf = (name: string) => values.find((v) => v.metricName === name)?.value ?? 0;
  return { batches: valueOf('boxoffice_booking_batch_size_count'), requests: valueOf('boxoffice_booking_batch_size_sum') };
}

/**
 * Sends `requests` so that they share one batch, arriving in the order
 * given: a booking of a row-locked event holds the running batch while they
 * gather behind it, then the lock goes.
 */
async function inOneBatch(requests: [Booking, Record<string, string>?][], whileGathered: () => Promise<unknown> = async () => undefined): Promise<Promise<Response>[]> {
  const blocker = await createEvent({ capacity: 1 });
  const lock = await pool.connect();
  await lock.query('BEGIN');
  await lock.query('SELECT 1 FROM events WHERE event_id = $1 FOR UPDATE', [blocker.eventId]);
  const held = post({ userId: await createCustomer(), eventId: blocker.eventId, ticketCount: 1 });
  const answers: Promise<Response>[] = [];
  try {
    await until('the running batch to wait for the lock', () => waitingOnLock('FOR NO KEY UPDATE'));
    for (const [body, headers] of requests) {
      answers.push(post(body, headers));
      await until('the request to join the next batch', () => (reservations.waiting === answers.length ? true : undefined));
    }
    await whileGathered();
  } finally {
    await lock.query('COMMIT');
    lock.release();
  }
  assert.equal((await held).status, 201);
  return answers;
}

async function eventRows(eventId: number): Promise<{ left: number; bookings: number; sold: number; outbox: number }> {
  const { rows } = await pool.query<{ left: number; bookings: number; sold: number; outbox: number }>(
    `SELECT (SELECT left_capacity FROM events WHERE event_id = $1) AS left,
            (SELECT count(*)::int FROM bookings WHERE event_id = $1) AS bookings,
            (SELECT coalesce(sum(ticket_count), 0)::int FROM bookings WHERE event_id = $1) AS sold,
            (SELECT count(*)::int FROM outbox o JOIN bookings b ON b.booking_id::text = o.message_key WHERE b.event_id = $1) AS outbox`,
    [eventId],
  );
  return rows[0]!;
}

function fingerprint({ userId, eventId, ticketCount }: Booking): string {
  return createHash('sha256').update(`${userId}:${eventId}:${ticketCount}`).digest('hex');
}

test('a batch answers each of its requests exactly as if it had come alone', async () => {
  const { eventId } = await createEvent({ capacity: 5, ticketPrice: '10.00' });
  const other = await createEvent({ capacity: 10 });
  const limited = await createEvent({ capacity: 10, ticketPrice: '10.00' });
  await pool.query('UPDATE events SET max_tickets_per_customer = 3 WHERE event_id = $1', [limited.eventId]);
  const [ann, bob, cat, dan, eve, fay] = await Promise.all([createCustomer(), createCustomer(), createCustomer(), createCustomer(), createCustomer(), createCustomer()]);
  // Eve holds one ticket of the limited event already; a failed booking of hers holds none.
  await pool.query(
    `INSERT INTO bookings (booking_id, customer_id, event_id, ticket_count, total_price, status)
     VALUES (gen_random_uuid(), $1, $2, 1, 10, 'PENDING'), (gen_random_uuid(), $1, $2, 2, 20, 'FAILED')`,
    [eve, limited.eventId],
  );
  await pool.query('UPDATE events SET left_capacity = left_capacity - 1 WHERE event_id = $1', [limited.eventId]);
  const key = { 'idempotency-key': `batch-${ann}` };
  const fayKey = { 'idempotency-key': `batch-${fay}` };
  const late = { userId: dan!, eventId: other.eventId, ticketCount: 1 };
  const lateBookingId = randomUUID();
  const before = await batchSizes();

  // A key another instance commits while its request waits in the batch.
  const commitLateKey = () =>
    pool.query(
      `INSERT INTO bookings (booking_id, customer_id, event_id, ticket_count, total_price, idempotency_key, request_hash)
       VALUES ($1, $2, $3, 1, 10, $4, $5)`,
      [lateBookingId, dan, other.eventId, `late-${dan}`, fingerprint(late)],
    );

  const gathered = await inOneBatch(
    [
      [{ userId: ann!, eventId, ticketCount: 2 }, key], // booked: 3 left
      [{ userId: bob!, eventId, ticketCount: 4 }], // sold out: 3 left
      [{ userId: cat!, eventId: 2147483000, ticketCount: 1 }], // unknown event
      [{ userId: 2147483001, eventId, ticketCount: 1 }], // unknown customer
      [{ userId: ann!, eventId, ticketCount: 2 }, key], // the first one's retry: replayed
      [{ userId: ann!, eventId, ticketCount: 3 }, key], // the first one's key, another body
      [{ userId: bob!, eventId, ticketCount: 3 }], // booked: 0 left
      [{ userId: cat!, eventId, ticketCount: 1 }], // sold out: 0 left
      [late, { 'idempotency-key': `late-${dan}` }], // replays the booking committed meanwhile
      [{ userId: eve!, eventId: limited.eventId, ticketCount: 2 }], // booked: eve holds 3 of at most 3
      [{ userId: eve!, eventId: limited.eventId, ticketCount: 1 }], // over the limit: eve may book 0 more
      [{ userId: fay!, eventId: limited.eventId, ticketCount: 2 }, fayKey], // booked: fay holds 2
      [{ userId: fay!, eventId: limited.eventId, ticketCount: 2 }, fayKey], // its retry: replayed, counted once
      [{ userId: fay!, eventId: limited.eventId, ticketCount: 2 }], // over the limit: fay may book 1 more
      [{ userId: fay!, eventId: limited.eventId, ticketCount: 1 }], // booked: fay holds 3
    ],
    commitLateKey,
  );
  const answers = await Promise.all(gathered);

  const after = await batchSizes();
  assert.deepEqual({ batches: after.batches - before.batches, requests: after.requests - before.requests }, { batches: 2, requests: 1 + 15 }, 'the held batch, then all fifteen in one');
  assert.deepEqual(answers.map((a) => a.status), [201, 409, 404, 404, 201, 422, 201, 409, 201, 201, 409, 201, 201, 409, 201]);
  const [first, soldOut, noEvent, noCustomer, retry, reused, second, soldOutAgain, lateRetry, eveBooked, eveOver, fayBooked, fayRetry, fayOver, fayLast] = await Promise.all(
    answers.map((a) => a.json() as Promise<Record<string, unknown>>),
  );
  assert.deepEqual({ ...first, bookingId: 'x' }, { bookingId: 'x', userId: ann, eventId, ticketCount: 2, totalPrice: 20, status: 'PENDING' });
  assert.equal(answers[0]!.headers.get('idempotent-replayed'), null);
  assert.match(soldOut!.detail as string, /has 3 tickets left/);
  assert.match(noEvent!.detail as string, /Event 2147483000 does not exist/);
  assert.match(noCustomer!.detail as string, /Customer 2147483001 does not exist/);
  assert.deepEqual(retry, first);
  assert.equal(answers[4]!.headers.get('idempotent-replayed'), 'true');
  assert.equal(reused!.type, 'urn:boxoffice:problem:idempotency-key-reused');
  assert.deepEqual({ ...second, bookingId: 'x' }, { bookingId: 'x', userId: bob, eventId, ticketCount: 3, totalPrice: 30, status: 'PENDING' });
  assert.match(soldOutAgain!.detail as string, /has 0 tickets left/);
  assert.equal(lateRetry!.bookingId, lateBookingId);
  assert.equal(answers[8]!.headers.get('idempotent-replayed'), 'true');
  assert.equal(eveBooked!.ticketCount, 2);
  assert.deepEqual(
    { type: eveOver!.type, limit: eveOver!.limit, mayStillBook: eveOver!.mayStillBook },
    { type: 'urn:boxoffice:problem:ticket-limit-reached', limit: 3, mayStillBook: 0 },
  );
  assert.match(eveOver!.detail as string, /at most 3 tickets per customer; you may book 0 more/);
  assert.deepEqual(fayRetry, fayBooked);
  assert.deepEqual({ limit: fayOver!.limit, mayStillBook: fayOver!.mayStillBook }, { limit: 3, mayStillBook: 1 });
  assert.equal(fayLast!.ticketCount, 1);

  assert.deepEqual(await eventRows(eventId), { left: 0, bookings: 2, sold: 5, outbox: 2 });
  assert.deepEqual(await eventRows(other.eventId), { left: 10, bookings: 1, sold: 1, outbox: 0 }, 'the replayed key took no tickets');
  assert.deepEqual(await eventRows(limited.eventId), { left: 4, bookings: 2 + 3, sold: 3 + 5, outbox: 3 }, 'the refused took nothing (sold counts the failed booking)');
});

/** Runs `work` with a second book instance, its own process, beside the in-process one. */
async function withSecondInstance(work: (secondUrl: string) => Promise<void>): Promise<void> {
  const port = await freePort();
  const second = spawn(process.execPath, ['--import', 'tsx', 'shared/run.ts', 'book'], {
    env: { ...process.env, PORT: String(port), OIDC_ISSUER: issuer.issuer, KAFKA_BROKERS: '', LOG_LEVEL: 'warn', MAX_INFLIGHT: '10000' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  try {
    const secondUrl = `http://127.0.0.1:${port}`;
    await untilReady(secondUrl);
    await work(secondUrl);
  } finally {
    second.kill('SIGTERM');
    await once(second, 'exit');
  }
}

test('two book instances hammering one small event sell exactly its capacity, never more', async () => {
  const capacity = 40;
  const { eventId } = await createEvent({ capacity });
  const customers = await Promise.all(Array.from({ length: 10 }, () => createCustomer()));
  await withSecondInstance(async (secondUrl) => {
    await Promise.all(customers.map((userId) => tokens.set(userId, issuer.asCustomer(userId)).get(userId)));
    const answers = await Promise.all(
      Array.from({ length: 300 }, (_, i) => post({ userId: customers[i % customers.length]!, eventId, ticketCount: 1 }, {}, i % 2 ? secondUrl : fn.url)),
    );

    const statuses = answers.map((a) => a.status);
    assert.deepEqual(new Set(statuses), new Set([201, 409]), 'every answer is 201 or 409');
    assert.equal(statuses.filter((s) => s === 201).length, capacity);
    assert.deepEqual(await eventRows(eventId), { left: 0, bookings: capacity, sold: capacity, outbox: capacity });
  });
});

test('two book instances hammered by the same customers never let one hold more than the per-customer maximum', async () => {
  const max = 5;
  const { eventId } = await createEvent({ capacity: 1000 });
  await pool.query('UPDATE events SET max_tickets_per_customer = $2 WHERE event_id = $1', [eventId, max]);
  const customers = await Promise.all(Array.from({ length: 4 }, () => createCustomer()));
  await withSecondInstance(async (secondUrl) => {
    await Promise.all(customers.map((userId) => tokens.set(userId, issuer.asCustomer(userId)).get(userId)));
    const answers = await Promise.all(
      Array.from({ length: 240 }, (_, i) => post({ userId: customers[i % customers.length]!, eventId, ticketCount: 1 }, {}, i % 2 ? secondUrl : fn.url)),
    );

    const refusals = await Promise.all(answers.filter((a) => a.status !== 201).map((a) => a.json() as Promise<{ status: number; type: string; mayStillBook: number }>));
    assert.deepEqual(new Set(refusals.map((p) => `${p.status} ${p.type} ${p.mayStillBook}`)), new Set(['409 urn:boxoffice:problem:ticket-limit-reached 0']));
    const { rows } = await pool.query<{ customer_id: number; held: number }>(
      'SELECT customer_id, sum(ticket_count)::int AS held FROM bookings WHERE event_id = $1 GROUP BY customer_id ORDER BY customer_id',
      [eventId],
    );
    assert.deepEqual(rows.map((r) => r.held), customers.map(() => max), 'each customer holds exactly the maximum');
    assert.equal(answers.length - refusals.length, customers.length * max);
    assert.deepEqual(await eventRows(eventId), { left: 1000 - customers.length * max, bookings: customers.length * max, sold: customers.length * max, outbox: customers.length * max });
  });
});

test('a booking racing a batch of another instance counts what that batch booked for the customer', async () => {
  const { eventId } = await createEvent({ capacity: 100 });
  await pool.query('UPDATE events SET max_tickets_per_customer = 3 WHERE event_id = $1', [eventId]);
  const userId = await createCustomer();
  // Another instance's batch: it holds the event's lock and has booked 2 for the customer, not yet committed.
  const other = await pool.connect();
  try {
    await other.query('BEGIN');
    await other.query('SELECT 1 FROM events WHERE event_id = $1 FOR UPDATE', [eventId]);
    await other.query("INSERT INTO bookings (booking_id, customer_id, event_id, ticket_count, total_price) VALUES (gen_random_uuid(), $1, $2, 2, 20)", [userId, eventId]);
    await other.query('UPDATE events SET left_capacity = left_capacity - 2 WHERE event_id = $1', [eventId]);
    const { rows } = await other.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    let answered = false;
    const answer = post({ userId, eventId, ticketCount: 2 }).finally(() => (answered = true));
    await until('the booking to wait for the lock, or answer', async () => {
      const blocked = await pool.query('SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [rows[0]!.pid]);
      return blocked.rows.length > 0 || answered ? true : undefined;
    });
    await other.query('COMMIT');
    const res = await answer;
    assert.equal(res.status, 409);
    assert.equal(((await res.json()) as { mayStillBook: number }).mayStillBook, 1);
  } finally {
    other.release();
  }
  assert.deepEqual(await eventRows(eventId), { left: 98, bookings: 1, sold: 2, outbox: 0 });
});

test('a batch whose transaction dies mid-way answers every caller 503 and reserves nothing', async () => {
  const { eventId } = await createEvent({ capacity: 10 });
  const elsewhere = await createEvent({ capacity: 10 });
  const [ann, bob, cat] = await Promise.all([createCustomer(), createCustomer(), createCustomer()]);
  // Another transaction holds bob's key uncommitted: the batch's insert of the
  // bookings waits on it, after the event is locked and ann's row written.
  const rival = await pool.connect();
  await rival.query('BEGIN');
  await rival.query(
    `INSERT INTO bookings (booking_id, customer_id, event_id, ticket_count, total_price, idempotency_key, request_hash)
     VALUES (gen_random_uuid(), $1, $2, 1, 10, 'rival', 'x')`,
    [bob, elsewhere.eventId],
  );
  try {
    const answers = await inOneBatch([
      [{ userId: ann!, eventId, ticketCount: 2 }],
      [{ userId: bob!, eventId, ticketCount: 1 }, { 'idempotency-key': 'rival' }],
      [{ userId: cat!, eventId, ticketCount: 1 }],
    ]);
    const pid = await until('the batch to wait for the rival key', () => waitingOnLock('INSERT INTO bookings'));
    await pool.query('SELECT pg_terminate_backend($1)', [pid]);

    const problems = await Promise.all(answers.map(async (a) => ({ status: (await a).status, type: ((await (await a).json()) as { type: string }).type })));
    assert.deepEqual(problems, Array(3).fill({ status: 503, type: 'urn:boxoffice:problem:database-unavailable' }));
  } finally {
    await rival.query('ROLLBACK');
    rival.release();
  }
  assert.deepEqual(await eventRows(eventId), { left: 10, bookings: 0, sold: 0, outbox: 0 });
});
