import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { decodeJwt } from 'jose';
import { admitTick } from '../../admitter/admitter.js';
import { pool } from '../../shared/db.js';
import { createCustomer, createEvent, serve, useTestIssuer, type RunningFunction, type TestIssuer } from '../../shared/test-support/index.js';
import { createCustomers, createOnSaleEvent, startSaleNow, usePassKey } from '../../shared/test-support/waiting-room.js';
import { joinLine, useTurns } from '../../shared/waiting-room.js';
import queuePosition from './index.js';

let fn: RunningFunction;
let issuer: TestIssuer;
before(async () => {
  usePassKey();
  issuer = await useTestIssuer();
  fn = await serve(queuePosition);
});
after(async () => {
  await fn.stop();
  await issuer.stop();
});

interface Place {
  status: string;
  position: number | null;
  estimatedWaitSeconds: number;
  pass?: string;
  passExpiresAt?: string;
  turnEnded?: string;
}

async function placeOf(eventId: number, customerId: number): Promise<Place> {
  const res = await fetch(`${fn.url}/api/v1/queue/${eventId}`, { headers: await issuer.asCustomer(customerId) });
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()) as Place;
}

const at = (ms: number) => new Date(ms);

test('those who joined before the start hold the places 1 to n after it, each once, and move up as the admitter lets people in', async () => {
  const eventId = await createOnSaleEvent({ admitPerMinute: 120 });
  const customers = await createCustomers(6);
  for (const customerId of customers) await joinLine(pool, eventId, customerId);
  const start = await startSaleNow(eventId);

  const before = await Promise.all(customers.map((customerId) => placeOf(eventId, customerId)));
  assert.deepEqual(before.map((p) => p.position).sort(), [1, 2, 3, 4, 5, 6]);
  assert.ok(before.every((p) => p.status === 'WAITING' && p.estimatedWaitSeconds === Math.ceil((p.position! * 60) / 120)));

  // One second of the sale at 120 a minute admits the first two.
  await admitTick({ now: at(start.getTime() + 1_000), tickMs: 1_000, events: [eventId] });
  const after = await Promise.all(customers.map((customerId) => placeOf(eventId, customerId)));
  customers.forEach((_, i) => {
    const was = before[i]!.position!;
    if (was <= 2) assert.equal(after[i]!.status, 'ADMITTED');
    else assert.deepEqual([after[i]!.status, after[i]!.position], ['WAITING', was - 2]);
  });
});

test('an admitted customer gets a pass bound to them and the event, expiring with their turn; once used or expired, the turn has ended and no pass is given', async () => {
  const eventId = await createOnSaleEvent({ passMinutes: 5 });
  const [customerId, lapsing] = await createCustomers(2);
  await joinLine(pool, eventId, customerId!);
  const start = await startSaleNow(eventId);
  await admitTick({ now: at(start.getTime() + 1_000), tickMs: 1_000, events: [eventId] });

  const admitted = await placeOf(eventId, customerId!);
  assert.equal(admitted.status, 'ADMITTED');
  assert.equal(admitted.position, 0);
  assert.equal(admitted.passExpiresAt, new Date(start.getTime() + 1_000 + 5 * 60_000).toISOString());
  const claims = decodeJwt(admitted.pass!);
  assert.deepEqual([claims.sub, claims.eventId, claims.exp], [String(customerId), eventId, Math.floor(Date.parse(admitted.passExpiresAt!) / 1000)]);

  await useTurns(pool, [{ customerId: customerId!, eventId }]);
  const used = await placeOf(eventId, customerId!);
  assert.deepEqual([used.status, used.turnEnded, used.pass], ['ADMITTED', 'used', undefined]);

  // Another room whose sale started an hour ago: a pass admitted then expired long since.
  const past = await createOnSaleEvent({ passMinutes: 5 });
  await joinLine(pool, past, lapsing!);
  const { rows } = await pool.query<{ starts_at: Date }>("UPDATE events SET on_sale_starts_at = now() - interval '1 hour' WHERE event_id = $1 RETURNING on_sale_starts_at AS starts_at", [past]);
  await admitTick({ now: at(rows[0]!.starts_at.getTime() + 1_000), tickMs: 1_000, events: [past] });
  const expired = await placeOf(past, lapsing!);
  assert.deepEqual([expired.status, expired.turnEnded, expired.pass], ['ADMITTED', 'expired', undefined]);
});

test('a customer not in the line, or a line that does not exist, is a 404 problem saying which', async () => {
  const customerId = await createCustomer();
  const eventId = await createOnSaleEvent();
  const { eventId: plain } = await createEvent();

  const notJoined = await fetch(`${fn.url}/api/v1/queue/${eventId}`, { headers: await issuer.asCustomer(customerId) });
  assert.equal(notJoined.status, 404);
  assert.equal(((await notJoined.json()) as { detail: string }).detail, `Customer ${customerId} has not joined the waiting room of event ${eventId}: POST /api/v1/queue/${eventId} joins it`);
  const noRoom = await fetch(`${fn.url}/api/v1/queue/${plain}`, { headers: await issuer.asCustomer(customerId) });
  assert.equal(((await noRoom.json()) as { type: string }).type, 'urn:boxoffice:problem:no-waiting-room');
  const other = await fetch(`${fn.url}/api/v1/queue/${eventId}?userId=${customerId + 1}`, { headers: await issuer.asCustomer(customerId) });
  assert.equal(other.status, 403);
});
