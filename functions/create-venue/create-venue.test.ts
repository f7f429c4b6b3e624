import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { pool } from '../../shared/db.js';
import { serve, uniqueName, useTestIssuer, type RunningFunction, type TestIssuer } from '../../shared/test-support/index.js';
import getVenue from '../get-venue/index.js';
import createVenue from './index.js';

let fn: RunningFunction;
let reader: RunningFunction;
let issuer: TestIssuer;
before(async () => {
  issuer = await useTestIssuer();
  [fn, reader] = await Promise.all([serve(createVenue), serve(getVenue)]);
});
after(async () => {
  await Promise.all([fn.stop(), reader.stop()]);
  await issuer.stop();
});

async function post(body: unknown, auth?: Record<string, string>): Promise<Response> {
  return fetch(`${fn.url}/api/v1/inventory/venues`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(auth ?? (await issuer.asAdmin())) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

async function venuesNamed(name: string): Promise<number> {
  const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM venues WHERE name = $1', [name]);
  return rows[0]!.n;
}

test('an admin creates a venue: 201, its Location, and the venue as get-venue shows it', async () => {
  const venueName = uniqueName('Hall');
  const res = await post({ venueName, address: '5 Dock Road', totalCapacity: 800 });

  assert.equal(res.status, 201);
  const created = (await res.json()) as { venueId: number };
  assert.deepEqual(created, { venueId: created.venueId, venueName, totalCapacity: 800, address: '5 Dock Road' });
  assert.equal(res.headers.get('location'), `/api/v1/inventory/venue/${created.venueId}`);
  const read = await fetch(`${reader.url}${res.headers.get('location')}`);
  assert.deepEqual(await read.json(), created);
});

test('a customer may not create a venue (403), nor anyone without a token (401), and nothing is written', async () => {
  const venueName = uniqueName('Hall');
  const body = { venueName, address: '5 Dock Road', totalCapacity: 800 };
  const asCustomer = await post(body, await issuer.asCustomer(1));
  assert.equal(asCustomer.status, 403);
  assert.match(((await asCustomer.json()) as { detail: string }).detail, /the realm role admin/);
  assert.equal((await post(body, {})).status, 401);
  assert.equal(await venuesNamed(venueName), 0);
});

const invalid: [string, Record<string, unknown>, string[]][] = [
  ['no fields', {}, ['body/address', 'body/totalCapacity', 'body/venueName']],
  ['a blank name', { venueName: '  ', address: 'x', totalCapacity: 1 }, ['body/venueName']],
  ['a NUL in the address', { venueName: 'n', address: 'a\u0000b', totalCapacity: 1 }, ['body/address']],
  ['a name too long', { venueName: 'n'.repeat(201), address: 'x', totalCapacity: 1 }, ['body/venueName']],
  ['no seats', { venueName: 'n', address: 'x', totalCapacity: 0 }, ['body/totalCapacity']],
  ['seats beyond 32 bits', { venueName: 'n', address: 'x', totalCapacity: 2147483648 }, ['body/totalCapacity']],
  ['an extra field', { venueName: 'n', address: 'x', totalCapacity: 1, venueId: 7 }, ['body/venueId']],
];
for (const [what, body, names] of invalid) {
  test(`a venue with ${what} is a 400 problem naming each fault, and writes nothing`, async () => {
    const venueName = uniqueName('Hall');
    const res = await post({ ...body, ...(typeof body.venueName === 'string' && body.venueName.trim() === 'n' ? { venueName } : {}) });
    assert.equal(res.status, 400);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    const problem = (await res.json()) as { invalidParams: { name: string }[] };
    assert.deepEqual([...new Set(problem.invalidParams.map((p) => p.name))].sort(), names);
    assert.equal(await venuesNamed(venueName), 0);
  });
}

test('seats written as 1.0 are a 400 naming the field', async () => {
  const res = await post(`{"venueName":"${uniqueName('Hall')}","address":"x","totalCapacity":100.0}`);
  assert.equal(res.status, 400);
  assert.deepEqual(((await res.json()) as { invalidParams: { name: string }[] }).invalidParams.map((p) => p.name), ['body/totalCapacity']);
});
