import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import getVenue from '../functions/get-venue/index.js';
import { createVenue, serve, type RunningFunction } from '../shared/test-support/index.js';
import { createGateway } from './gateway.js';

let venueFunction: RunningFunction;
let gateway: Server;
let base: string;

before(async () => {
  venueFunction = await serve(getVenue);
  gateway = createGateway([
    { route: getVenue.route!, target: venueFunction.url },
    { route: { method: 'GET', path: '/api/v1/inventory/events' }, target: 'http://127.0.0.1:9' },
  ]);
  gateway.listen(0, '127.0.0.1');
  await once(gateway, 'listening');
  base = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
});
after(async () => {
  gateway.close();
  await venueFunction.stop();
});

test('a public path reaches its function and the answer comes back whole', async () => {
  const venue = await createVenue({ totalCapacity: 77 });
  const res = await fetch(`${base}/api/v1/inventory/venue/${venue.venueId}`, { headers: { 'x-request-id': 'through-the-gateway' } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('x-request-id'), 'through-the-gateway');
  assert.equal(((await res.json()) as { totalCapacity: number }).totalCapacity, 77);
});

test('the function, not the gateway, answers a wrong method', async () => {
  const res = await fetch(`${base}/api/v1/inventory/venue/1`, { method: 'PUT' });
  assert.equal(res.status, 405);
  assert.equal(res.headers.get('allow'), 'GET');
});

test('an unknown path is a 404 problem', async () => {
  const res = await fetch(`${base}/api/v1/inventory/theatre/1`);
  assert.equal(res.status, 404);
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
});

test('a function that does not answer is a 503 problem to retry after a moment', async () => {
  const res = await fetch(`${base}/api/v1/inventory/events`);
  assert.equal(res.status, 503);
  assert.equal(res.headers.get('retry-after'), '1');
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
});
