import { Validator } from '@seriousme/openapi-schema-validator';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import book from '../functions/book/index.js';
import { loadDefinitions } from './functions.js';
import { createGateway } from './gateway.js';
import { openApiDocument } from './openapi.js';

interface Operation {
  operationId: string;
  security?: object[];
  requestBody?: { content: { 'application/json': { schema: object } } };
  parameters?: { name: string; in: string; required: boolean }[];
}
type Document = { openapi: string; paths: Record<string, Record<string, Operation>> };

const definitions = await loadDefinitions();
const document = openApiDocument(definitions) as Document;

test('the OpenAPI document is valid OpenAPI 3.1', async () => {
  const result = await new Validator().validate(document as never);
  assert.equal(result.valid, true, JSON.stringify(result.errors));
  assert.equal(document.openapi, '3.1.0');
});

test('every public route is in it, with the schemas its function validates with', () => {
  for (const fn of definitions.filter((d) => d.route?.path.startsWith('/api/'))) {
    const operation = document.paths[fn.route!.path.replace(/:(\w+)/g, '{$1}')]?.[fn.route!.method.toLowerCase()];
    assert.ok(operation, `${fn.name} is documented`);
    assert.equal(operation.operationId, fn.name);
    assert.equal(operation.security !== undefined, fn.access === 'token', `${fn.name} documents its token rule`);
  }
  const booking = document.paths['/api/v1/booking']?.post;
  assert.equal(booking?.requestBody?.content['application/json'].schema, book.schemas?.body);
  assert.deepEqual(booking?.parameters?.map((p) => [p.name, p.in, p.required]), [['idempotency-key', 'header', false], ['queue-pass', 'header', false]]);
  const event = document.paths['/api/v1/inventory/event/{eventId}']?.get;
  assert.deepEqual(event?.parameters?.map((p) => [p.name, p.in, p.required]), [['eventId', 'path', true]]);
});

test('the gateway serves it at /openapi.json', async () => {
  const gateway = createGateway([], document);
  gateway.listen(0, '127.0.0.1');
  await once(gateway, 'listening');
  try {
    const res = await fetch(`http://127.0.0.1:${(gateway.address() as AddressInfo).port}/openapi.json`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), JSON.parse(JSON.stringify(document)));
  } finally {
    gateway.close();
  }
});
