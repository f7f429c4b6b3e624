import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';

// These tests kill every connection of their database, so they run in a
// database of their own: other test files may be using the shared one at the
// same moment. The pool reads DATABASE_URL and the timeouts on import, hence
// the settings first and the dynamic imports after.
const serverUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const name = `boxoffice_test_faults_${randomBytes(4).toString('hex')}`;
const databaseUrl = Object.assign(new URL(serverUrl), { pathname: `/${name}` }).toString();
process.env.DATABASE_URL = databaseUrl;
process.env.DATABASE_STATEMENT_TIMEOUT_MS = '1000';
process.env.DATABASE_LOCK_TIMEOUT_MS = '300';
process.env.DATABASE_QUERY_TIMEOUT_MS = '2000';

const { dropDatabase, ensureDatabase } = await import('../scripts/local-postgres.js');
const { migrateDatabase } = await import('./migrations.js');
const { pool, transaction } = await import('./db.js');
const { asProblem } = await import('./errors.js');
const { createCustomer, createEvent, eventually, serve, useTestIssuer } = await import('./test-support/index.js');
const { default: getEvent } = await import('../functions/get-event/index.js');
const { default: book } = await import('../functions/book/index.js');

type RunningFunction = Awaited<ReturnType<typeof serve>>;
type Tally = Map<number | 'no answer', number>;

let killer: pg.Client;
let getEventFn: RunningFunction;
let bookFn: RunningFunction;
let issuer: Awaited<ReturnType<typeof useTestIssuer>>;

before(async () => {
  await ensureDatabase(serverUrl, name);
  // Two starts at once, as two containers would: postgres-migrations' advisory lock serialises them.
  await Promise.all([migrateDatabase(databaseUrl), migrateDatabase(databaseUrl)]);
  killer = new pg.Client({ connectionString: databaseUrl });
  killer.on('error', () => undefined);
  await killer.connect();
  issuer = await useTestIssuer();
  getEventFn = await serve(getEvent, { maxInflight: 1000 });
  bookFn = await serve(book, { maxInflight: 1000 });
});

after(async () => {
  await getEventFn?.stop();
  await bookFn?.stop();
  await issuer?.stop();
  await killer?.end();
  await pool.end();
  await dropDatabase(serverUrl, name);
});

/** Terminates every other session of this database, as an administrator (57P01); waits until they are gone. */
async function terminateAll(): Promise<number> {
  const { rows } = await killer.query<{ killed: number }>(
    `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 2000))::int AS killed
       FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`,
  );
  return rows[0]!.killed;
}

interface Buyer {
  userId: number;
  eventId: number;
  auth: Record<string, string>;
}

/** A customer with a token, and an event with room for every booking of these tests. */
async function buyer(): Promise<Buyer> {
  const userId = await createCustomer();
  const { eventId } = await createEvent({ capacity: 100_000 });
  return { userId, eventId, auth: await issuer.asCustomer(userId) };
}

/**
 * Sends `count` requests, 16 at a time, half of them reading an event and
 * half booking it; tallies the answers by status. A 503 must say when to retry.
 */
async function traffic(count: number, tally: Tally, { userId, eventId, auth }: Buyer): Promise<void> {
  let sent = 0;
  const one = async (i: number) => {
    const res = await (i % 2
      ? fetch(`${getEventFn.url}/api/v1/inventory/event/${eventId}`)
      : fetch(`${bookFn.url}/api/v1/booking`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...auth },
          body: JSON.stringify({ userId, eventId, ticketCount: 1 }),
        })
    ).catch(() => undefined);
    const status = res?.status ?? 'no answer';
    tally.set(status, (tally.get(status) ?? 0) + 1);
    if (status === 503) {
      assert.ok(res!.headers.get('retry-after'), '503 without Retry-After');
      assert.equal(((await res!.json()) as { type: string }).type, 'urn:boxoffice:problem:database-unavailable');
    } else {
      await res?.arrayBuffer();
    }
  };
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (sent < count) await one(sent++);
    }),
  );
}

const acceptable = (status: number | 'no answer') => typeof status === 'number' && ((status >= 200 && status < 500) || status === 503);

test('two starts migrating one fresh database at once apply each migration exactly once', async () => {
  const files = readdirSync(new URL('../migrations', import.meta.url)).filter((file) => file.endsWith('.sql'));
  // Besides the project's files, postgres-migrations records its own migration 0 (its table).
  const { rows } = await pool.query<{ id: number }>('SELECT id FROM migrations WHERE id > 0 ORDER BY id');
  assert.deepEqual(rows.map((row) => row.id), files.map((file) => Number.parseInt(file, 10)).sort((a, b) => a - b));
});

test('connections terminated during a burst of reads and bookings answer 2xx, 4xx or 503, never 500, and the pool recovers by itself', async (t) => {
  const target = await buyer();
  const during: Tally = new Map();
  let killed = 0;
  // Terminations that only hit idle connections prove nothing: go on until some hit a request.
  const hit = () => [...during.keys()].some((status) => status !== 200 && status !== 201);
  for (let round = 0; round < 20 && !hit(); round += 1) {
    const burst = traffic(200, during, target);
    for (let i = 0; i < 5; i += 1) {
      await sleep(15);
      killed += await terminateAll();
    }
    await burst;
  }
  t.diagnostic(`connections terminated: ${killed}; answers during: ${JSON.stringify([...during])}`);
  assert.ok(during.get(503), 'no request was hit by a termination');
  assert.deepEqual([...during.keys()].filter((status) => !acceptable(status)), []);

  await sleep(200);
  const afterwards: Tally = new Map();
  await traffic(100, afterwards, target);
  t.diagnostic(`answers afterwards: ${JSON.stringify([...afterwards])}`);
  assert.deepEqual([...afterwards.keys()].filter((status) => typeof status !== 'number' || status >= 300), []);
});

test('a connection terminated while its client is checked out inside a transaction fails that transaction as a 503 and crashes nothing', async () => {
  // From an empty pool, so that the client is made here, outside any request:
  // functions-framework runs each request in a `domain`, which would catch the
  // error of a client made during a request and hide a missing listener.
  await terminateAll();
  await eventually('the pool to drop its dead clients', async () => (pool.totalCount === 0 ? true : undefined));
  const outcome = await transaction(async (client) => {
    await client.query('SELECT 1');
    await terminateAll();
    // The server's 57P01 reaches the client while no query of its own is in flight.
    await sleep(100);
    await client.query('SELECT 1');
  }).then(
    () => 'committed',
    (error: unknown) => error,
  );

  const problem = asProblem(outcome);
  assert.equal(problem.status, 503);
  assert.equal(problem.code, 'database-unavailable');
  assert.ok(problem.extra.headers?.['Retry-After']);
  const { rows } = await pool.query<{ one: number }>('SELECT 1 AS one');
  assert.deepEqual(rows, [{ one: 1 }]);
});

test('a statement running past DATABASE_STATEMENT_TIMEOUT_MS is cancelled by the server and maps to 503', async () => {
  const error = await pool.query('SELECT pg_sleep(5)').then(
    () => undefined,
    (caught: unknown) => caught as { code?: string },
  );
  assert.equal(error?.code, '57014');
  assert.equal(asProblem(error).status, 503);
});

test('a statement waiting past DATABASE_LOCK_TIMEOUT_MS for a row lock is cancelled and maps to 503, changing nothing', async () => {
  const { eventId } = await createEvent();
  const holder = await pool.connect();
  try {
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM events WHERE event_id = $1 FOR UPDATE', [eventId]);
    const error = await transaction((client) => client.query('UPDATE events SET left_capacity = left_capacity - 1 WHERE event_id = $1', [eventId])).then(
      () => undefined,
      (caught: unknown) => caught as { code?: string },
    );
    assert.equal(error?.code, '55P03');
    assert.equal(asProblem(error).status, 503);
  } finally {
    await holder.query('ROLLBACK');
    holder.release();
  }
  const { rows } = await pool.query<{ left: number }>('SELECT left_capacity AS left FROM events WHERE event_id = $1', [eventId]);
  assert.deepEqual(rows, [{ left: 100 }]);
});

test('a transaction whose query outlives DATABASE_QUERY_TIMEOUT_MS answers 503 and its connection is never handed out again', async () => {
  const error = await transaction(async (client) => {
    // Lifted for this transaction only, so that the client-side timeout, not the server's, ends the wait.
    await client.query('SET LOCAL statement_timeout = 0');
    await client.query('SELECT pg_sleep(3)');
  }).then(
    () => undefined,
    (caught: unknown) => caught as Error,
  );
  assert.equal(error?.message, 'Query read timeout');
  assert.equal(asProblem(error).status, 503);
  // A reused client would still be inside that transaction, its statement_timeout still 0.
  const { rows } = await pool.query<{ statement_timeout: string }>('SHOW statement_timeout');
  assert.deepEqual(rows, [{ statement_timeout: '1s' }]);
});
