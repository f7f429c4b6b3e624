import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { signingKey, startDevIssuer, type DevIssuer } from '../scripts/dev-issuer.js';
import { freePort } from '../scripts/functions.js';
import { authenticate, DELIVERER_ROLE, forgetIssuerForTests } from './auth.js';
import { deliverCloudEvent, DeliveryFailed } from './cloudevent-delivery.js';
import { ConfigError } from './config.js';
import { DELIVERER_CLIENT_ID, delivererToken, serviceToken, TokenUnavailable } from './service-token.js';

// The deliverer's side of consume-order's check: a service account's token
// by the client credentials grant, from a real issuer (the dev issuer, the
// same code path as Keycloak's), cached, renewed, and sent with deliveries.

const client = { clientId: DELIVERER_CLIENT_ID, secret: randomBytes(16).toString('hex'), roles: [DELIVERER_ROLE] };
/** The same client, with tokens that live one second. */
const brief = { clientId: 'brief-deliverer', secret: randomBytes(16).toString('hex'), roles: [DELIVERER_ROLE], tokenLifetime: 1 };
let issuer: DevIssuer;
before(async () => {
  issuer = await startDevIssuer(await signingKey(), 0, { clients: [client, brief] });
  process.env.OIDC_ISSUER = issuer.issuer;
  forgetIssuerForTests();
});
after(() => issuer.stop());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const claimsOf = (authorization: string) => JSON.parse(Buffer.from(authorization.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;

test("a deliverer's token comes by the client credentials grant from the token endpoint the discovery document names, is the service account's, and passes the same check as user tokens", async () => {
  const token = serviceToken({ issuer: issuer.issuer, clientId: client.clientId, clientSecret: client.secret });
  const authorization = await token.authorization();
  assert.match(authorization, /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/);
  const claims = claimsOf(authorization);
  assert.deepEqual([claims.sub, claims.azp, claims.aud, claims.realm_access], [`service-account-${client.clientId}`, client.clientId, 'boxoffice-api', { roles: [DELIVERER_ROLE] }]);
  const principal = await authenticate({ authorization });
  assert.deepEqual(principal.roles, [DELIVERER_ROLE]);
});

test('concurrent callers share one token, which is reused until shortly before it expires, then renewed; a refused one is replaced at once', async () => {
  const token = serviceToken({ issuer: issuer.issuer, clientId: brief.clientId, clientSecret: brief.secret });
  const first = await Promise.all(Array.from({ length: 5 }, () => token.authorization()));
  assert.equal(new Set(first).size, 1, 'one token for concurrent callers');
  assert.equal(await token.authorization(), first[0], 'reused while fresh');
  // A one-second token is renewed a tenth of its life before it expires.
  await sleep(950);
  const renewed = await token.authorization();
  assert.notEqual(renewed, first[0]);

  token.refused(first[0]!); // an old one refused again changes nothing
  assert.equal(await token.authorization(), renewed);
  token.refused(renewed);
  assert.notEqual(await token.authorization(), renewed);
});

test('a wrong secret, an unknown client or an issuer that cannot be reached is a TokenUnavailable naming why', async () => {
  const refusedWith = async (credentials: Parameters<typeof serviceToken>[0], pattern: RegExp) => {
    const error = await serviceToken(credentials).authorization().then(() => assert.fail('a token was given'), (e: unknown) => e);
    assert.ok(error instanceof TokenUnavailable, String(error));
    assert.match(error.message, pattern);
  };
  await refusedWith({ issuer: issuer.issuer, clientId: client.clientId, clientSecret: 'wrong' }, /gave client boxoffice-deliverer no token \(it answered 401 invalid_client/);
  await refusedWith({ issuer: issuer.issuer, clientId: 'someone', clientSecret: client.secret }, /answered 401 invalid_client/);
  await refusedWith({ issuer: `http://127.0.0.1:${await freePort()}`, clientId: client.clientId, clientSecret: client.secret }, /cannot be reached \(ECONNREFUSED\)/);
});

/** A delivery target that records each request's Authorization and answers `status(authorization)`. */
async function target(t: TestContext, status: (authorization: string | undefined) => number) {
  const seen: (string | undefined)[] = [];
  const server = createServer((req, res) => {
    const authorization = (req.headers as IncomingHttpHeaders).authorization;
    seen.push(authorization);
    res.statusCode = status(authorization);
    req.resume().on('end', () => res.end('{}'));
  }).listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => new Promise((resolve) => server.close(resolve)));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

const event = { id: 'e-1', type: 'dev.knative.kafka.event', source: '/test', subject: 'k', data: '{}' };

test('a delivery carries the token; a target that refuses it (401) gets one fresh token, once; a 401 or 403 that stays is retryable, never a dead letter', async (t) => {
  const token = serviceToken({ issuer: issuer.issuer, clientId: client.clientId, clientSecret: client.secret });
  const stale = await token.authorization();
  const accepting = await target(t, (authorization) => (authorization === stale ? 401 : 200));
  await deliverCloudEvent(accepting.url, event, { token });
  assert.equal(accepting.seen.length, 2);
  assert.equal(accepting.seen[0], stale);
  assert.match(accepting.seen[1]!, /^Bearer /);
  assert.notEqual(accepting.seen[1], stale);

  for (const status of [401, 403]) {
    const refusing = await target(t, () => status);
    const error = await deliverCloudEvent(refusing.url, event, { token }).then(() => assert.fail('delivered'), (e: unknown) => e);
    assert.ok(error instanceof DeliveryFailed && error.retryable, `${status} is retryable: ${String(error)}`);
    assert.equal(refusing.seen.length, status === 401 ? 2 : 1, `${status}: ${status === 401 ? 'one fresh token' : 'no new token'}`);
  }
});

test('without a token (the issuer refuses the client) a delivery is a retryable failure and the target is not called', async (t) => {
  const never = await target(t, () => 200);
  const token = serviceToken({ issuer: issuer.issuer, clientId: client.clientId, clientSecret: 'wrong' });
  const error = await deliverCloudEvent(never.url, event, { token }).then(() => assert.fail('delivered'), (e: unknown) => e);
  assert.ok(error instanceof DeliveryFailed && error.retryable, String(error));
  assert.match(error.message, /no deliverer token/);
  assert.equal(never.seen.length, 0);
});

test("the deliverer's settings: the secret from DELIVERER_CLIENT_SECRET or its _FILE, none needed with CONSUME_ORDER_AUTH=off, a clear ConfigError when one is missing or wrong", async (t) => {
  const names = ['CONSUME_ORDER_AUTH', 'DELIVERER_CLIENT_ID', 'DELIVERER_CLIENT_SECRET', 'DELIVERER_CLIENT_SECRET_FILE', 'DELIVERER_TOKEN_URL', 'OIDC_ISSUER'];
  const saved = Object.fromEntries(names.map((name) => [name, process.env[name]]));
  t.after(() => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });
  const using = (settings: Record<string, string>) => {
    for (const name of names) delete process.env[name];
    Object.assign(process.env, settings);
  };
  const folder = mkdtempSync(join(tmpdir(), 'deliverer-'));
  t.after(() => rmSync(folder, { recursive: true, force: true }));
  writeFileSync(join(folder, 'secret'), `${client.secret}\n`);

  using({ OIDC_ISSUER: issuer.issuer, DELIVERER_CLIENT_SECRET_FILE: join(folder, 'secret') });
  assert.deepEqual((await authenticate({ authorization: await delivererToken()!.authorization() })).roles, [DELIVERER_ROLE]);
  using({ DELIVERER_TOKEN_URL: `${issuer.issuer}/token`, DELIVERER_CLIENT_ID: brief.clientId, DELIVERER_CLIENT_SECRET: brief.secret });
  assert.equal(claimsOf(await delivererToken()!.authorization()).azp, brief.clientId);
  using({ CONSUME_ORDER_AUTH: 'off' });
  assert.equal(delivererToken(), undefined);

  const mistakes: [Record<string, string>, RegExp][] = [
    [{ OIDC_ISSUER: issuer.issuer }, /^DELIVERER_CLIENT_SECRET \(or DELIVERER_CLIENT_SECRET_FILE\) is required: the secret of the client boxoffice-deliverer/],
    [{ OIDC_ISSUER: issuer.issuer, DELIVERER_CLIENT_SECRET_FILE: join(folder, 'missing') }, /^DELIVERER_CLIENT_SECRET_FILE names .*missing, which cannot be read/],
    [{ DELIVERER_CLIENT_SECRET: 's' }, /^OIDC_ISSUER \(or DELIVERER_TOKEN_URL\) is required/],
    [{ DELIVERER_CLIENT_SECRET: 's', DELIVERER_TOKEN_URL: 'keycloak:8080/token' }, /^DELIVERER_TOKEN_URL must be an http\(s\) URL, got "keycloak:8080\/token"/],
    [{ CONSUME_ORDER_AUTH: 'false' }, /^CONSUME_ORDER_AUTH must be on or off, got "false"/],
  ];
  for (const [settings, message] of mistakes) {
    using(settings);
    assert.throws(() => delivererToken(), (error: Error) => error instanceof ConfigError && message.test(error.message), JSON.stringify(settings));
  }
});
