import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import book from '../functions/book/index.js';
import getVenue from '../functions/get-venue/index.js';
import { createVenue, serve, type RunningFunction } from '../shared/test-support/index.js';
import { createGateway, type Upstream } from './gateway.js';

let venueFunction: RunningFunction;
let bookFunction: RunningFunction;
let gateway: Server;
let base: string;

before(async () => {
  venueFunction = await serve(getVenue);
  bookFunction = await serve(book);
  ({ gateway, base } = await startGateway([
    { route: getVenue.route!, target: venueFunction.url },
    { route: book.route!, target: bookFunction.url },
    { route: { method: 'GET', path: '/api/v1/inventory/events' }, target: 'http://127.0.0.1:9' },
  ]));
});
after(async () => {
  gateway.close();
  await Promise.all([venueFunction.stop(), bookFunction.stop()]);
});

async function startGateway(upstreams: Upstream[]): Promise<{ gateway: Server; base: string }> {
  const server = createGateway(upstreams);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { gateway: server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** A stand-in function on a free loopback port, for what no real function does on purpose. */
async function startUpstream(handler: Parameters<typeof createServer>[1]): Promise<{ server: Server; url: string }> {
  const server = createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

const REQUEST_ID = /^[\w.:-]{1,128}$/;

test('a public path reaches its function and the answer comes back whole', async () => {
  const venue = await createVenue({ totalCapacity: 77 });
  const res = await fetch(`${base}/api/v1/inventory/venue/${venue.venueId}`, { headers: { 'x-request-id': 'through-the-gateway' } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('x-request-id'), 'through-the-gateway');
  assert.equal(((await res.json()) as { totalCapacity: number }).totalCapacity, 77);
});

test('functions sharing a path are picked by method, HEAD going to GET; a method none serves is a 405 naming those that do', async () => {
  const named = (name: string) => startUpstream((req, res) => res.end(`${name} ${req.method}`));
  const [reader, changer] = await Promise.all([named('reader'), named('changer')]);
  const { gateway: shared, base: sharedBase } = await startGateway([
    { route: { method: 'GET', path: '/api/v1/thing/:id' }, target: reader.url },
    { route: { method: 'PATCH', path: '/api/v1/thing/:id' }, target: changer.url },
  ]);
  try {
    const answer = async (method: string) => {
      const res = await fetch(`${sharedBase}/api/v1/thing/1`, { method });
      return { status: res.status, text: method === 'HEAD' ? '' : await res.text(), allow: res.headers.get('allow') };
    };
    assert.deepEqual(await answer('GET'), { status: 200, text: 'reader GET', allow: null });
    assert.deepEqual(await answer('PATCH'), { status: 200, text: 'changer PATCH', allow: null });
    assert.equal((await answer('HEAD')).status, 200);
    const refused = await fetch(`${sharedBase}/api/v1/thing/1`, { method: 'DELETE' });
    assert.equal(refused.status, 405);
    assert.equal(refused.headers.get('allow'), 'GET, PATCH, HEAD');
    assert.equal(refused.headers.get('content-type'), 'application/problem+json');
  } finally {
    shared.close();
    reader.server.close();
    changer.server.close();
  }
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
  assert.match(res.headers.get('x-request-id') ?? '', REQUEST_ID);
});

/**
 * POSTs `size` bytes in 64 KiB chunks, as fast as the connection takes them,
 * and stops sending once the answer comes, as a client should.
 */
function postBody(url: string, size: number): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = request(url, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': String(size) } }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', (error) => {
      if (!answered) reject(error);
    });
    const chunk = Buffer.alloc(64 * 1024, 'a');
    let sent = 0;
    const pump = (): void => {
      while (sent < size && !answered) {
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      if (!answered) req.end();
    };
    pump();
  });
}

test("a body too large for the function comes back as the function's 413 and Connection: close, every time", async () => {
  for (let attempt = 1; attempt <= 5; attempt++) {
    const answer = await postBody(`${base}/api/v1/booking`, 50 * 1024 * 1024);
    assert.equal(answer.status, 413, `attempt ${attempt}: ${answer.body}`);
    assert.equal(answer.headers.connection, 'close');
    assert.equal(answer.headers['content-type'], 'application/problem+json');
    assert.match(String(answer.headers['x-request-id']), REQUEST_ID);
    assert.equal((JSON.parse(answer.body) as { type: string }).type, 'urn:boxoffice:problem:body-too-large');
  }
});

test("the gateway's own answers carry the caller's request id if sensible, else a new one", async () => {
  for (const path of ['/api/v1/inventory/theatre/1', '/openapi.json', '/_/health']) {
    const mine = await fetch(`${base}${path}`, { headers: { 'x-request-id': 'caller-42' } });
    assert.equal(mine.headers.get('x-request-id'), 'caller-42', path);
    for (const sent of [undefined, 'not a sensible id', 'x'.repeat(129)]) {
      const res = await fetch(`${base}${path}`, { headers: sent === undefined ? {} : { 'x-request-id': sent } });
      const id = res.headers.get('x-request-id') ?? '';
      assert.match(id, REQUEST_ID, `${path} with ${sent}`);
      assert.notEqual(id, sent);
    }
  }
});

test('the function is given the request id the gateway answers with', async () => {
  // This stand-in answers without an id of its own, so the one the caller sees is the gateway's.
  const upstream = await startUpstream((req, res) => res.end(JSON.stringify({ received: req.headers['x-request-id'] })));
  const { gateway: own, base: ownBase } = await startGateway([{ route: { method: 'GET', path: '/api/v1/echo' }, target: upstream.url }]);
  try {
    for (const sent of [undefined, 'not a sensible id']) {
      const res = await fetch(`${ownBase}/api/v1/echo`, { headers: sent === undefined ? {} : { 'x-request-id': sent } });
      const { received } = (await res.json()) as { received?: string };
      assert.match(received ?? '', REQUEST_ID);
      assert.equal(res.headers.get('x-request-id'), received);
    }
  } finally {
    own.close();
    upstream.server.close();
  }
});

/** Sends raw HTTP/1.1 to `server` and returns what comes back until it closes. */
async function rawExchange(server: Server, text: string): Promise<{ status: number; head: string; body: string }> {
  const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
  socket.end(text);
  const chunks: Buffer[] = [];
  for await (const chunk of socket) chunks.push(chunk as Buffer);
  const [head = '', body = ''] = Buffer.concat(chunks).toString('latin1').split('\r\n\r\n');
  return { status: Number(head.split(' ')[1]), head: head.toLowerCase(), body };
}

test('a request for `*` or for an absolute URL is a 404 problem, never forwarded', async () => {
  const upstream = await startUpstream((_req, res) => res.end('forwarded'));
  // A route at the root has no segments, as `*` has none.
  const { gateway: own } = await startGateway([
    { route: { method: 'POST', path: '/' }, target: upstream.url },
    { route: { method: 'GET', path: '/api/v1/inventory/events' }, target: upstream.url },
  ]);
  try {
    for (const target of ['*', 'http://example.com/api/v1/inventory/events', `${upstream.url}/api/v1/inventory/events`]) {
      const method = target === '*' ? 'OPTIONS' : 'GET';
      const answer = await rawExchange(own, `${method} ${target} HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n`);
      assert.equal(answer.status, 404, `${method} ${target}: ${answer.body}`);
      assert.match(answer.head, /\r\ncontent-type: application\/problem\+json\r\n/);
      assert.match(answer.head, /\r\nx-request-id: [\w.:-]+\r\n/);
      assert.equal((JSON.parse(answer.body) as { type: string }).type, 'urn:boxoffice:problem:route-not-found');
    }
  } finally {
    own.close();
    upstream.server.close();
  }
});

test('an answer the function breaks off midway is broken off to the caller, not left hanging', { timeout: 30_000 }, async () => {
  const upstream = await startUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
    res.write('{"half":');
    setImmediate(() => res.destroy());
  });
  const { gateway: own, base: ownBase } = await startGateway([{ route: { method: 'GET', path: '/api/v1/half' }, target: upstream.url }]);
  try {
    const res = await fetch(`${ownBase}/api/v1/half`);
    assert.equal(res.status, 200);
    await assert.rejects(res.text());
  } finally {
    own.close();
    upstream.server.close();
  }
});

test('a caller that goes away mid-body is gone for the function too', { timeout: 30_000 }, async () => {
  let arrived!: () => void;
  let gone!: () => void;
  const requestArrived = new Promise<void>((resolve) => (arrived = resolve));
  const requestGone = new Promise<void>((resolve) => (gone = resolve));
  const upstream = await startUpstream((req) => {
    req.on('close', gone);
    arrived();
  });
  const { gateway: own } = await startGateway([{ route: { method: 'POST', path: '/api/v1/slow' }, target: upstream.url }]);
  try {
    const socket = connect((own.address() as AddressInfo).port, '127.0.0.1');
    socket.write('POST /api/v1/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{"part":');
    await requestArrived;
    socket.destroy();
    await requestGone;
  } finally {
    own.close();
    upstream.server.close();
  }
});
