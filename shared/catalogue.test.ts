import assert from 'node:assert/strict';
import { test } from 'node:test';
import { catalogueReads, recentAnswers } from './catalogue.js';
import { pool, type Queryable } from './db.js';
import { createEvent } from './test-support/index.js';

const maxAgeMs = 250;

/** A clock the test moves by hand. */
function manualClock() {
  const clock = { ms: 1_000, now: () => clock.ms };
  return clock;
}

/** The real pool, counting the queries that reach it; `fail` makes the next ones fail instead. */
function countingDb() {
  const db = {
    queries: 0,
    fail: undefined as Error | undefined,
    query: ((...args: Parameters<Queryable['query']>) => {
      db.queries += 1;
      if (db.fail) return Promise.reject(db.fail);
      return (pool.query as (...a: unknown[]) => unknown)(...args);
    }) as Queryable['query'],
  };
  return db;
}

async function setCapacity(eventId: number, left: number): Promise<void> {
  await pool.query('UPDATE events SET left_capacity = $2 WHERE event_id = $1', [eventId, left]);
}

test('a capacity change is read once the max age has passed, and not a moment later', async () => {
  const clock = manualClock();
  const db = countingDb();
  const catalogue = catalogueReads(db, { maxAgeMs, now: clock.now });
  const { eventId } = await createEvent({ capacity: 100 });

  assert.equal((await catalogue.findEvent(eventId))?.capacity, 100);
  await setCapacity(eventId, 90);
  clock.ms += maxAgeMs - 1;
  assert.equal((await catalogue.findEvent(eventId))?.capacity, 100, 'an answer younger than the max age is shared');
  assert.equal(db.queries, 1);
  clock.ms += 1;
  assert.equal((await catalogue.findEvent(eventId))?.capacity, 90, 'an answer as old as the max age is never served');
  assert.equal(db.queries, 2);
});

test('a page of events is read afresh once the max age has passed; other pages are their own', async () => {
  const clock = manualClock();
  const db = countingDb();
  const catalogue = catalogueReads(db, { maxAgeMs, now: clock.now });
  const { eventId } = await createEvent({ capacity: 100 });
  const page = { limit: 1, offset: 0 };
  // The page holding this event: its id in order among all events.
  const { rows } = await pool.query<{ position: number }>('SELECT count(*)::int AS position FROM events WHERE event_id < $1', [eventId]);
  const hers = { limit: 1, offset: rows[0]!.position };

  assert.equal((await catalogue.listEvents(hers))[0]?.capacity, 100);
  await catalogue.listEvents(page);
  assert.equal(db.queries, 2, 'each page is a query of its own');
  await setCapacity(eventId, 75);
  assert.equal((await catalogue.listEvents(hers))[0]?.capacity, 100);
  clock.ms += maxAgeMs;
  assert.equal((await catalogue.listEvents(hers))[0]?.capacity, 75);
  assert.equal(db.queries, 3);
});

test('concurrent reads of one event share one query; other events get their own', async () => {
  const db = countingDb();
  const catalogue = catalogueReads(db, { maxAgeMs, now: manualClock().now });
  const [first, second] = [await createEvent({ capacity: 5 }), await createEvent({ capacity: 6 })];

  const answers = await Promise.all([
    ...Array.from({ length: 20 }, () => catalogue.findEvent(first.eventId)),
    ...Array.from({ length: 20 }, () => catalogue.findEvent(second.eventId)),
  ]);

  assert.deepEqual(answers.map((event) => event?.capacity), [...Array<number>(20).fill(5), ...Array<number>(20).fill(6)]);
  assert.equal(db.queries, 2);
});

test('a query still in flight when the max age passes is not joined: a later read asks again', async () => {
  const clock = manualClock();
  const recent = recentAnswers<string, string>({ maxAgeMs, maxEntries: 10, now: clock.now });
  let release!: (value: string) => void;
  const slow = recent.get('key', () => new Promise((resolve) => (release = resolve)));

  const joined = recent.get('key', () => Promise.resolve('joined a new load too early'));
  clock.ms += maxAgeMs;
  const later = recent.get('key', () => Promise.resolve('fresh'));
  release('first');

  assert.equal(await slow, 'first');
  assert.equal(await joined, 'first');
  assert.equal(await later, 'fresh');
});

test('unknown event ids are answered (and shared) without growing the cache past its bound', async () => {
  const clock = manualClock();
  const db = countingDb();
  const catalogue = catalogueReads(db, { maxAgeMs, maxEvents: 3, now: clock.now });
  const unknown = [2147483001, 2147483002, 2147483003, 2147483004];

  for (const id of unknown) assert.equal(await catalogue.findEvent(id), undefined);
  assert.equal(await catalogue.findEvent(unknown[3]!), undefined);
  assert.equal(db.queries, 4, 'a not-found answer is shared like any other');
  assert.equal(await catalogue.findEvent(unknown[0]!), undefined);
  assert.equal(db.queries, 5, 'the oldest answer made room for the fourth');

  const recent = recentAnswers<number, number>({ maxAgeMs, maxEntries: 100, now: clock.now });
  for (let key = 0; key < 10_000; key += 1) await recent.get(key, async () => key);
  assert.equal(recent.size, 100);
});

test('expired answers are dropped as new ones come, so the cache does not keep what it may not serve', async () => {
  const clock = manualClock();
  const recent = recentAnswers<number, number>({ maxAgeMs, maxEntries: 100, now: clock.now });
  for (let key = 0; key < 50; key += 1) await recent.get(key, async () => key);
  clock.ms += maxAgeMs;
  await recent.get(50, async () => 50);
  assert.equal(recent.size, 1);
});

test('a failed query reaches its callers and is not kept: the next read asks the database again', async () => {
  const db = countingDb();
  const catalogue = catalogueReads(db, { maxAgeMs, now: manualClock().now });
  const { eventId } = await createEvent({ capacity: 12 });
  const outage = Object.assign(new Error('connection terminated'), { code: '57P01' });

  db.fail = outage;
  const failed = await Promise.allSettled([catalogue.findEvent(eventId), catalogue.findEvent(eventId)]);
  assert.deepEqual(failed, [{ status: 'rejected', reason: outage }, { status: 'rejected', reason: outage }]);
  assert.equal(db.queries, 1, 'callers waiting together share the failure too');

  db.fail = undefined;
  assert.equal((await catalogue.findEvent(eventId))?.capacity, 12);
  assert.equal(db.queries, 2);
});
