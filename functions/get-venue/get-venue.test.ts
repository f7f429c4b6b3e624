import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createVenue, serve, type RunningFunction } from '../../shared/test-support/index.js';
import getVenue from './index.js';

let fn: RunningFunction;
before(async () => (fn = await serve(getVenue)));
after(() => fn.stop());

test('a venue reads with the original field names', async () => {
  const venue = await createVenue({ totalCapacity: 321 });
  const res = await fetch(`${fn.url}/api/v1/inventory/venue/${venue.venueId}`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { venueId: venue.venueId, venueName: venue.name, totalCapacity: 321, address: '1 Test Street' });
});

test('an unknown venue is a 404 problem', async () => {
  const res = await fetch(`${fn.url}/api/v1/inventory/venue/2147483001`);
  assert.equal(res.status, 404);
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
});

test('a malformed venue id is a 400 problem', async () => {
  const res = await fetch(`${fn.url}/api/v1/inventory/venue/first`);
  assert.equal(res.status, 400);
  const problem = (await res.json()) as { invalidParams: { name: string }[] };
  assert.equal(problem.invalidParams[0]?.name, 'path/venueId');
});

test('a POST to a venue is a 405 problem', async () => {
  const res = await fetch(`${fn.url}/api/v1/inventory/venue/1`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
  assert.equal(res.status, 405);
  assert.equal(res.headers.get('allow'), 'GET, HEAD');
});
