import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, beforeEach, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { signingKey, signToken, startDevIssuer } from '../scripts/dev-issuer.js';

// Identity provider faults against the real verification code, through a
// served function: a token that cannot be checked because the issuer is down
// is a 503 with Retry-After (the client keeps its token), never a 401 or a
// 500; known keys keep working for a bounded time.
// The settings are read when shared/auth.ts loads, so they are set before it is.
const keysMaxAgeMs = 1_000;
const keysStaleMaxMs = 4_000;
process.env.OIDC_TIMEOUT_MS = '500';
process.env.OIDC_KEYS_MAX_AGE_MS = String(keysMaxAgeMs);
process.env.OIDC_KEYS_STALE_MAX_MS = String(keysStaleMaxMs);
const { forgetIssuerForTests } = await import('./auth.js');
const { createCustomer, serve, useTestIssuer } = await import('./test-support/index.js');
const { default: listOrders } = await import('../functions/list-orders/index.js');

let orders: Awaited<ReturnType<typeof serve>>;
let customerId: number;
before(async () => {
  orders = await serve(listOrders);
  customerId = await createCustomer();
});
after(() => orders.stop());
// Each scenario starts as a freshly started container does: no issuer, no keys.
beforeEach(() => forgetIssuerForTests());

/** The statuses `count` requests for the customer's orders get with `authorization`. */
async function statusesOf(authorization: string, count = 3): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < count; i += 1) {
    const res = await fetch(`${orders.url}/api/v1/orders`, { headers: { authorization } });
    await res.arrayBuffer();
    statuses.push(res.status);
  }
  return statuses;
}

async function assertAuthUnavailable(authorization: string): Promise<void> {
  const res = await fetch(`${orders.url}/api/v1/orders`, { headers: { authorization } });
  assert.equal(res.status, 503);
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
  assert.ok(Number(res.headers.get('retry-after')) > 0, 'a 503 says when to try again');
  assert.equal(((await res.json()) as { type: string }).type, 'urn:boxoffice:problem:auth-unavailable');
}

/** A customer's token from `issuer`, signed with a key of its own (no issuer here could publish it anyway). */
async function tokenFrom(issuer: string): Promise<string> {
  return `Bearer ${await signToken(await signingKey(), { subject: 'customer', customerId, roles: ['customer'], issuer })}`;
}

async function listening<T extends Server | HttpServer>(server: T): Promise<{ url: string; server: T }> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

/** Nothing listens at `url`: a new connection (not a pooled one) is refused. */
async function assertRefused(url: string): Promise<void> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  const [error] = (await once(socket, 'error').finally(() => socket.destroy())) as [NodeJS.ErrnoException];
  assert.equal(error.code, 'ECONNREFUSED');
}

/** An address where nothing listens any more. */
async function closedPort(): Promise<string> {
  const { url, server } = await listening(createTcpServer());
  await new Promise((resolve) => server.close(resolve));
  await assertRefused(url);
  return url;
}

/** Accepts connections and never answers; counts them. */
async function silentServer(): Promise<{ url: string; connections: () => number; stop: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  let connections = 0;
  const { url, server } = await listening(createTcpServer((socket) => {
    connections += 1;
    sockets.add(socket);
  }));
  return {
    url,
    connections: () => connections,
    stop: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Answers every request with `answer`, as a broken proxy in front of the issuer might; counts them. */
async function answeringServer(answer: { status: number; contentType: string; body: string }): Promise<{ url: string; requests: () => number; stop: () => Promise<void> }> {
  let requests = 0;
  const { url, server } = await listening(createHttpServer((_req, res) => {
    requests += 1;
    res.writeHead(answer.status, { 'content-type': answer.contentType }).end(answer.body);
  }));
  return { url, requests: () => requests, stop: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** An issuer whose discovery document works and names `jwksUri` as its key set. */
async function discoveryPointingAt(jwksUri: string): Promise<{ url: string; stop: () => Promise<void> }> {
  let issuer = '';
  const { url, server } = await listening(createHttpServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer, jwks_uri: jwksUri }));
  }));
  issuer = url;
  return { url, stop: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** OIDC_ISSUER such that the broken `address` is met at the discovery document, or at the key set. */
async function issuerBrokenAt(where: 'discovery' | 'key set', address: string): Promise<{ issuer: string; stop: () => Promise<void> }> {
  if (where === 'discovery') return { issuer: address, stop: async () => undefined };
  const discovery = await discoveryPointingAt(`${address}/jwks`);
  return { issuer: discovery.url, stop: discovery.stop };
}

test('with the issuer stopped, valid tokens keep working on the cached keys past their max age; bad tokens are still 401', async () => {
  const issuer = await useTestIssuer();
  const valid = (await issuer.asCustomer(customerId)).authorization!;
  assert.deepEqual(await statusesOf(valid), [200, 200, 200]);

  await issuer.stop();
  await assertRefused(issuer.issuer);
  // Twice past the max age: each time jose refreshes, the refresh fails, and the cached keys are used.
  const whileDown: number[] = [];
  for (let round = 0; round < 2; round += 1) {
    await sleep(keysMaxAgeMs + 100);
    whileDown.push(...(await statusesOf(valid)));
  }
  assert.deepEqual(whileDown, [200, 200, 200, 200, 200, 200]);

  const [header, payload] = valid.slice('Bearer '.length).split('.');
  const bad = [
    `Bearer ${await issuer.sign({ customerId, roles: ['customer'], expiresIn: -120 })}`,
    `Bearer ${await issuer.sign({ customerId, roles: ['customer'], issuer: 'http://127.0.0.1:1/realms/other' })}`,
    `Bearer ${header}.${payload}.${Buffer.from('forged').toString('base64url')}`,
    'Bearer not.a.jwt',
  ];
  const badStatuses: number[] = [];
  for (const token of bad) badStatuses.push(...(await statusesOf(token, 1)));
  assert.deepEqual(badStatuses, [401, 401, 401, 401]);

  // A key id the cached keys lack may be one the issuer has added since: it cannot be asked, so 503.
  await assertAuthUnavailable(`Bearer ${await issuer.sign({ customerId, roles: ['customer'] }, await signingKey())}`);
});

test('keys are trusted up to OIDC_KEYS_STALE_MAX_MS after their last fetch, not beyond, though jose still counts them fresh', async () => {
  const issuer = await useTestIssuer();
  const valid = (await issuer.asCustomer(customerId)).authorization!;
  assert.deepEqual(await statusesOf(valid, 1), [200]);
  const fetchedBy = Date.now();

  await issuer.stop();
  // Shortly before the bound a refresh fails and the cached keys go back to jose as if fetched again.
  await sleep(fetchedBy + keysStaleMaxMs - 500 - Date.now());
  assert.deepEqual(await statusesOf(valid, 1), [200]);
  // Shortly after it, well within jose's max age of that hand-back, they are no longer trusted.
  await sleep(fetchedBy + keysStaleMaxMs + 50 - Date.now());
  for (let i = 0; i < 3; i += 1) await assertAuthUnavailable(valid);
});

for (const where of ['discovery', 'key set'] as const) {
  test(`with no keys yet and the issuer's port closed at its ${where}, a token gets 503 with Retry-After, not 401`, async () => {
    const broken = await issuerBrokenAt(where, await closedPort());
    process.env.OIDC_ISSUER = broken.issuer;
    try {
      const token = await tokenFrom(broken.issuer);
      for (let i = 0; i < 3; i += 1) await assertAuthUnavailable(token);
    } finally {
      await broken.stop();
    }
  });

  test(`an issuer that accepts connections and never answers at its ${where} gets 503 after the timeout, not 401`, async () => {
    const silent = await silentServer();
    const broken = await issuerBrokenAt(where, silent.url);
    process.env.OIDC_ISSUER = broken.issuer;
    try {
      const token = await tokenFrom(broken.issuer);
      for (let i = 0; i < 2; i += 1) await assertAuthUnavailable(token);
      assert.ok(silent.connections() >= 1, 'the silent issuer was asked');
    } finally {
      await Promise.all([broken.stop(), silent.stop()]);
    }
  });

  const answers = [
    { what: '503', status: 503, contentType: 'text/plain', body: 'Service Unavailable' },
    { what: 'a proxy error page', status: 502, contentType: 'text/html', body: '<html><body>Bad Gateway</body></html>' },
    { what: 'HTML with 200', status: 200, contentType: 'text/html', body: '<html><body>Please log in</body></html>' },
    { what: 'JSON that is not a key set', status: 200, contentType: 'application/json', body: '{"error":"maintenance"}' },
  ];
  for (const answer of answers) {
    test(`an issuer answering ${answer.what} at its ${where} gets 503, not 401`, async () => {
      const server = await answeringServer(answer);
      const broken = await issuerBrokenAt(where, server.url);
      process.env.OIDC_ISSUER = broken.issuer;
      try {
        const token = await tokenFrom(broken.issuer);
        for (let i = 0; i < 2; i += 1) await assertAuthUnavailable(token);
        assert.ok(server.requests() >= 1, 'the broken issuer was asked');
      } finally {
        await Promise.all([broken.stop(), server.stop()]);
      }
    });
  }
}

test('once the issuer answers again, tokens are accepted without a restart', async () => {
  const key = await signingKey();
  const real = await startDevIssuer(key);
  let healthy = false;
  const { url, server } = await listening(createHttpServer((req, res) => {
    if (!healthy && req.url === '/jwks') return void res.writeHead(503).end();
    // The real issuer's discovery and keys, with this address as the issuer.
    void fetch(`${real.issuer}${req.url}`).then(async (answer) => {
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end((await answer.text()).replaceAll(real.issuer, url));
    });
  }));
  process.env.OIDC_ISSUER = url;
  try {
    const token = `Bearer ${await signToken(key, { subject: 'customer', customerId, roles: ['customer'], issuer: url })}`;
    await assertAuthUnavailable(token);
    healthy = true;
    assert.deepEqual(await statusesOf(token), [200, 200, 200]);
  } finally {
    await new Promise((resolve) => server.close(resolve));
    await real.stop();
  }
});
