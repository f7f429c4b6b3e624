import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import book from '../functions/book/index.js';
import createEvent from '../functions/create-event/index.js';
import joinQueue from '../functions/join-queue/index.js';
import queuePosition from '../functions/queue-position/index.js';
import { pool } from '../shared/db.js';
import { registry } from '../shared/metrics.js';
import { createVenue, metricValue, serve, uniqueName, useTestIssuer, type RunningFunction, type TestIssuer } from '../shared/test-support/index.js';
import { createCustomers, inWaves, startSaleNow, usePassKey } from '../shared/test-support/waiting-room.js';
import { admitTick } from './admitter.js';

// The scripted on-sale of the waiting room's issue, end to end through the
// functions, with the admitter's clock simulated (one tick a second of the
// sale) so that it runs in seconds: an operator creates an event of 100
// tickets admitting 60 buyers a minute; 1,000 customers join before the
// start; admitted buyers book with their pass as soon as they have it.

const fns: Record<string, RunningFunction> = {};
let issuer: TestIssuer;
before(async () => {
  usePassKey();
  issuer = await useTestIssuer();
  for (const [name, definition] of Object.entries({ book, createEvent, joinQueue, queuePosition })) fns[name] = await serve(definition, { maxInflight: 1000 });
});
after(async () => {
  await Promise.all(Object.values(fns).map((fn) => fn.stop()));
  await issuer.stop();
});

/** One token per customer, signed once. */
const tokens = new Map<number, Promise<Record<string, string>>>();
const as = (customerId: number) => tokens.get(customerId) ?? tokens.set(customerId, issuer.asCustomer(customerId)).get(customerId)!;

async function metric(name: string): Promise<number> {
  return metricValue(await registry.metrics(), name, {}) ?? 0;
}

test('a scripted on-sale (100 tickets, 60 buyers a minute, 1,000 customers in the room before the start) sells exactly 100 tickets, answers no admitted buyer with a 503, and its metrics show the admission rate', { timeout: 240_000 }, async () => {
  const venue = await createVenue({ totalCapacity: 500 });
  const created = await fetch(`${fns.createEvent!.url}/api/v1/inventory/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(await issuer.asAdmin()) },
    body: JSON.stringify({
      event: uniqueName('On-sale'),
      venueId: venue.venueId,
      capacity: 100,
      ticketPrice: 35.5,
      maxTicketsPerCustomer: 4,
      onSale: { startsAt: new Date(Date.now() + 3_600_000).toISOString(), admitPerMinute: 60, maxActive: 200, passMinutes: 10 },
    }),
  });
  assert.equal(created.status, 201, await created.clone().text());
  const { eventId } = (await created.json()) as { eventId: number };

  const customers = await createCustomers(1_000);
  const joined = await inWaves(customers, 25, async (customerId) => (await fetch(`${fns.joinQueue!.url}/api/v1/queue/${eventId}`, { method: 'POST', headers: await as(customerId) })).status);
  assert.deepEqual(new Set(joined), new Set([201]));

  const before = { admitted: await metric('boxoffice_queue_admitted_total'), waits: await metric('boxoffice_queue_wait_seconds_count') };
  const start = await startSaleNow(eventId);
  const statuses = new Map<number, number>();
  let sold = 0;
  let admitted = 0;
  let second = 0;
  const admittedBy: number[] = [];
  while (sold < 100) {
    second += 1;
    assert.ok(second <= 600, `not sold out after ${second} s of the sale (${sold} sold)`);
    const tick = await admitTick({ now: new Date(start.getTime() + second * 1_000), tickMs: 1_000, events: [eventId] });
    admitted += tick.admitted;
    admittedBy.push(admitted);
    assert.equal(tick.waiting, 1_000 - admitted, 'the waiting gauge counts those still in the room');
    // Each admitted buyer reads their pass and books 1 to 4 tickets; told fewer are left, they take what is left.
    const { rows } = await pool.query<{ customer_id: number }>('SELECT customer_id FROM queue_entries WHERE event_id = $1 AND admitted_at = $2', [eventId, tick.now]);
    await Promise.all(
      rows.map(async ({ customer_id: userId }) => {
        const place = (await (await fetch(`${fns.queuePosition!.url}/api/v1/queue/${eventId}`, { headers: await as(userId) })).json()) as { status: string; pass?: string };
        assert.equal(place.status, 'ADMITTED');
        const book = async (ticketCount: number): Promise<void> => {
          const res = await fetch(`${fns.book!.url}/api/v1/booking`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'queue-pass': place.pass!, ...(await as(userId)) },
            body: JSON.stringify({ userId, eventId, ticketCount }),
          });
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          if (res.status === 201) sold += ticketCount;
          const left = res.status === 409 ? Number(/has (\d+) tickets left/.exec(((await res.json()) as { detail: string }).detail)?.[1]) : 0;
          if (left > 0) await book(left);
        };
        await book((userId % 4) + 1);
      }),
    );
    // Someone still waiting tries to book without a pass.
    const waiting = await pool.query<{ customer_id: number }>('SELECT customer_id FROM queue_entries WHERE event_id = $1 AND admitted_at IS NULL LIMIT 1', [eventId]);
    const sneak = waiting.rows[0]!.customer_id;
    const refused = await fetch(`${fns.book!.url}/api/v1/booking`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(await as(sneak)) },
      body: JSON.stringify({ userId: sneak, eventId, ticketCount: 1 }),
    });
    assert.equal(refused.status, 403);
  }

  // Sold out: the admitter lets no one else in.
  for (let extra = 1; extra <= 5; extra++) assert.equal((await admitTick({ now: new Date(start.getTime() + (second + extra) * 1_000), tickMs: 1_000, events: [eventId] })).admitted, 0);

  const { rows } = await pool.query<{ left: number; booked: number }>(
    `SELECT left_capacity AS "left", (SELECT sum(ticket_count)::int FROM bookings WHERE event_id = $1 AND status <> 'FAILED') AS booked FROM events WHERE event_id = $1`,
    [eventId],
  );
  assert.deepEqual(rows[0], { left: 0, booked: 100 }, 'exactly 100 tickets sold');
  assert.equal(sold, 100);
  assert.equal(statuses.get(503) ?? 0, 0, `answers to admitted buyers: ${JSON.stringify([...statuses])}`);
  assert.deepEqual(admittedBy, admittedBy.map((_, i) => i + 1), 'one buyer admitted each second: 60 a minute');
  assert.equal(await metric('boxoffice_queue_admitted_total') - before.admitted, admitted, 'the admitted counter counts every admission');
  assert.equal(await metric('boxoffice_queue_wait_seconds_count') - before.waits, admitted, 'and the wait histogram each one');
  assert.equal(await metric('boxoffice_queue_waiting'), 0, 'no one waits for a sale with no tickets left');
});
