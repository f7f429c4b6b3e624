import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import joinQueue from '../functions/join-queue/index.js';
import { pool } from '../shared/db.js';
import { createCustomers, createOnSaleEvent, inWaves, startSaleNow, usePassKey } from '../shared/test-support/waiting-room.js';
import { serve, useTestIssuer, type RunningFunction, type TestIssuer } from '../shared/test-support/index.js';
import { useTurns } from '../shared/waiting-room.js';
import { admitTick } from './admitter.js';

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

async function join(eventId: number, customerId: number): Promise<void> {
  const res = await fetch(`${fn.url}/api/v1/queue/${eventId}`, { method: 'POST', headers: await issuer.asCustomer(customerId) });
  assert.equal(res.status, 201, await res.text());
}

/** Passes admitted, unused and unexpired at `now`, counted apart from the admitter's own query. */
async function activeAt(eventId: number, now: Date): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM queue_entries WHERE event_id = $1 AND admitted_at <= $2 AND expires_at > $2 AND used_at IS NULL',
    [eventId, now],
  );
  return rows[0]!.n;
}

/** Customers in the order they were admitted (those of one tick in line order). */
async function admissionOrder(eventId: number): Promise<number[]> {
  const { rows } = await pool.query<{ customer_id: number }>(
    'SELECT customer_id FROM queue_entries WHERE event_id = $1 AND admitted_at IS NOT NULL ORDER BY admitted_at, line_key, customer_id',
    [eventId],
  );
  return rows.map((r) => r.customer_id);
}

const at = (start: Date, seconds: number) => new Date(start.getTime() + seconds * 1_000);

test('1,000 customers joining an on-sale are admitted at the configured rate, never more active than the limit, early joiners in a shuffled order and later ones in arrival order', { timeout: 240_000 }, async () => {
  // 300 a minute (5 a one-second tick), 100 passes active at most, each for a minute.
  const eventId = await createOnSaleEvent({ capacity: 1_000, admitPerMinute: 300, maxActive: 100, passMinutes: 1 });
  const customers = await createCustomers(1_000);
  const early = customers.slice(0, 600);
  const late = customers.slice(600);
  await inWaves(early, 25, (customerId) => join(eventId, customerId));
  const start = await startSaleNow(eventId);
  // One after another, so that their arrival order is known.
  for (const customerId of late) await join(eventId, customerId);

  let admitted = 0;
  let expired = 0;
  const perTick: number[] = [];
  for (let second = 1; admitted < 1_000; second++) {
    // The limit holds it to 100 a minute once the first passes are out: ten minutes and a little.
    assert.ok(second <= 700, `all 1,000 admitted within 700 s of the sale (${admitted} were)`);
    const now = at(start, second);
    const activeBefore = await activeAt(eventId, now);
    const tick = await admitTick({ now, tickMs: 1_000, events: [eventId] });
    admitted += tick.admitted;
    expired += tick.expired;
    perTick.push(tick.admitted);
    assert.ok(admitted <= 5 * second, `${admitted} admitted after ${second} s: more than 300 a minute allows`);
    const active = await activeAt(eventId, now);
    assert.ok(active <= 100, `${active} passes active at ${second} s: more than the limit of 100`);
    assert.equal(tick.admitted, Math.min(5, 100 - activeBefore, 1_000 - (admitted - tick.admitted)), `at ${second} s, as many as the rate and the free slots allow`);
    assert.equal(tick.active, active);
  }
  // The rate alone for the first 20 s (100 slots), then one pass expiring frees a slot for each admission.
  assert.deepEqual(perTick.slice(0, 20), Array(20).fill(5));
  assert.ok(perTick.slice(20, 60).every((n) => n === 0), 'the room is full until the first passes expire, a minute in');
  assert.equal(expired, (await pool.query('SELECT 1 FROM queue_entries WHERE event_id = $1 AND expiry_counted', [eventId])).rowCount);
  assert.ok(expired >= 800, `${expired} expired passes counted`);

  const order = await admissionOrder(eventId);
  assert.deepEqual([...order.slice(0, 600)].sort((a, b) => a - b), early, 'everyone who came before the start is admitted before anyone after it');
  assert.deepEqual(order.slice(600), late, 'those who came after the start are admitted first come, first served');
  const { rows } = await pool.query<{ customer_id: number }>('SELECT customer_id FROM queue_entries WHERE event_id = $1 AND line_key < 0 ORDER BY joined_at, customer_id', [eventId]);
  const arrival = rows.map((r) => r.customer_id);
  assert.notDeepEqual(order.slice(0, 600), arrival, 'early joiners are not admitted in the order they came');
  // A shuffle: about half of neighbours in admission order rise in joining order (299.5 ± 7 for a uniform permutation of 600).
  const rank = new Map(arrival.map((customerId, i) => [customerId, i]));
  const rises = order.slice(0, 599).filter((customerId, i) => rank.get(order[i + 1]!)! > rank.get(customerId)!).length;
  assert.ok(rises > 200 && rises < 400, `${rises} of 599 neighbours in joining order: not a shuffle`);
});

test('a pass used by a booking frees its slot at once, and an expired one when it expires', async () => {
  const eventId = await createOnSaleEvent({ admitPerMinute: 60, maxActive: 3, passMinutes: 1 });
  const customers = await createCustomers(6);
  for (const customerId of customers) await join(eventId, customerId);
  const start = await startSaleNow(eventId);
  const tick = (second: number) => admitTick({ now: at(start, second), tickMs: 1_000, events: [eventId] });

  for (const second of [1, 2, 3]) assert.equal((await tick(second)).admitted, 1);
  assert.equal((await tick(4)).admitted, 0, 'three passes active: the room is full');
  const [first] = await admissionOrder(eventId);
  await useTurns(pool, [{ customerId: first!, eventId }]);
  assert.equal((await tick(5)).admitted, 1, 'the used pass freed its slot');
  assert.equal((await tick(6)).admitted, 0);
  const lapse = await tick(62);
  assert.deepEqual([lapse.expired, lapse.admitted], [1, 1], 'the pass admitted at 2 s expired at 62 s, and its slot was given');
  assert.equal((await tick(63)).expired, 1);
  assert.equal((await tick(64)).expired, 0, 'each expired pass is counted once');
});

test('admitters ticking at once admit a room as one: never more than its credit', async () => {
  const eventId = await createOnSaleEvent({ admitPerMinute: 60, maxActive: 1_000, passMinutes: 10 });
  const customers = await createCustomers(100);
  for (const customerId of customers) await join(eventId, customerId);
  const start = await startSaleNow(eventId);

  for (let second = 1; second <= 10; second++) {
    const ticks = await Promise.all([1, 2, 3, 4].map(() => admitTick({ now: at(start, second), tickMs: 1_000, events: [eventId] })));
    const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM queue_entries WHERE event_id = $1 AND admitted_at IS NOT NULL', [eventId]);
    assert.ok(rows[0]!.n <= second, `${rows[0]!.n} admitted after ${second} s by four admitters at once: more than 60 a minute allows (${ticks.map((t) => t.admitted).join('+')})`);
  }
});

test('node admitter/main.ts --once runs one tick on the database and exits 0, as a cron trigger runs it', { timeout: 60_000 }, async () => {
  const eventId = await createOnSaleEvent({ admitPerMinute: 60, passMinutes: 10 });
  const [customerId] = await createCustomers(1);
  await join(eventId, customerId!);
  await pool.query("UPDATE events SET on_sale_starts_at = now() - interval '10 seconds' WHERE event_id = $1", [eventId]);

  const child = spawn(process.execPath, ['--import', 'tsx', 'admitter/main.ts', '--once'], { env: { ...process.env, ADMITTER_TICK_MS: '60000' }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise((resolve) => child.on('exit', resolve));
  assert.equal(code, 0, stderr);
  const { rows } = await pool.query<{ admitted: boolean }>('SELECT admitted_at IS NOT NULL AS admitted FROM queue_entries WHERE event_id = $1', [eventId]);
  assert.deepEqual(rows, [{ admitted: true }]);
});
