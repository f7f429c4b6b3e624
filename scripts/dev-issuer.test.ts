import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { decodeJwt } from 'jose';
import { createHash } from 'node:crypto';
import { signingKey, startDevIssuer, webClientId, type DevIssuer } from './dev-issuer.js';

// The dev issuer's token endpoint answers the client credentials grant as
// Keycloak's does, so a deliverer written against one works with the other.
const client = { clientId: 'a-deliverer', secret: 'a secret:with odd characters', roles: ['order-deliverer'] };
let issuer: DevIssuer;
before(async () => (issuer = await startDevIssuer(await signingKey(), 0, { clients: [client] })));
after(() => issuer.stop());

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${form({ _: id }).slice(2)}:${form({ _: secret }).slice(2)}`).toString('base64')}`;
const tokenRequest = (body: string, authorization?: string) =>
  fetch(`${issuer.issuer}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...(authorization ? { authorization } : {}) }, body });

test('its discovery document names its endpoints and the grants it serves, to pages of any origin', async () => {
  const res = await fetch(`${issuer.issuer}/.well-known/openid-configuration`);
  assert.equal(res.headers.get('access-control-allow-origin'), '*');
  const discovery = (await res.json()) as Record<string, unknown>;
  assert.equal(discovery.token_endpoint, `${issuer.issuer}/token`);
  assert.equal(discovery.authorization_endpoint, `${issuer.issuer}/authorize`);
  assert.deepEqual(discovery.grant_types_supported, ['authorization_code', 'client_credentials']);
  assert.deepEqual(discovery.code_challenge_methods_supported, ['S256']);
});

/** Signs `username` in at /authorize as the pages do; answers the code from the redirect. */
async function authorizationCode(username: string, challenge: string, redirectUri = 'http://localhost:8080/'): Promise<string> {
  const fields = { response_type: 'code', client_id: webClientId, redirect_uri: redirectUri, state: 'st', code_challenge: challenge, code_challenge_method: 'S256', username };
  const res = await fetch(`${issuer.issuer}/authorize`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form(fields) });
  assert.equal(res.status, 303);
  const back = new URL(res.headers.get('location') ?? '');
  assert.equal(`${back.origin}${back.pathname}`, redirectUri);
  assert.equal(back.searchParams.get('state'), 'st');
  return back.searchParams.get('code') ?? '';
}

const verifier = 'a-verifier-of-the-pages-43-characters-or-more-1234';
const challenge = createHash('sha256').update(verifier).digest('base64url');

test('the pages\' client signs a demo user in with a code that, with the PKCE verifier, buys their token once', async () => {
  const page = await fetch(`${issuer.issuer}/authorize?${form({ response_type: 'code', client_id: webClientId, redirect_uri: 'http://localhost:8080/', state: 's', code_challenge: challenge, code_challenge_method: 'S256' })}`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /Development only.*value="alice"/s);
  const code = await authorizationCode('alice', challenge);
  const exchange = () => tokenRequest(form({ grant_type: 'authorization_code', code, client_id: webClientId, redirect_uri: 'http://localhost:8080/', code_verifier: verifier }));
  const res = await exchange();
  assert.equal(res.status, 200);
  const body = (await res.json()) as { access_token: string; id_token: string };
  const access = decodeJwt(body.access_token);
  assert.deepEqual([access.sub, access.customer_id, access.aud, access.azp], ['alice', 1, 'boxoffice-api', webClientId]);
  assert.equal(decodeJwt(body.id_token).aud, webClientId);
  const again = await exchange();
  assert.equal(again.status, 400, 'a code is good once');
});

test('a code is refused without the verifier of its challenge, or for another redirect', async () => {
  const wrongVerifier = await tokenRequest(form({ grant_type: 'authorization_code', code: await authorizationCode('bob', challenge), client_id: webClientId, redirect_uri: 'http://localhost:8080/', code_verifier: `${verifier}x` }));
  assert.equal(wrongVerifier.status, 400);
  assert.equal(((await wrongVerifier.json()) as { error: string }).error, 'invalid_grant');
  const otherRedirect = await tokenRequest(form({ grant_type: 'authorization_code', code: await authorizationCode('bob', challenge), client_id: webClientId, redirect_uri: 'http://localhost:8080/other', code_verifier: verifier }));
  assert.equal(otherRedirect.status, 400);
});

test('an authorization request without an S256 challenge, or to a redirect off this machine, is refused and redirects nowhere', async () => {
  for (const fields of <Record<string, string>[]>[
    { redirect_uri: 'http://localhost:8080/', code_challenge: challenge, code_challenge_method: 'plain' },
    { redirect_uri: 'http://localhost:8080/' },
    { redirect_uri: 'https://attacker.example/', code_challenge: challenge, code_challenge_method: 'S256' },
  ]) {
    const res = await fetch(`${issuer.issuer}/authorize?${form({ response_type: 'code', client_id: webClientId, state: 's', ...fields })}`, { redirect: 'manual' });
    assert.equal(res.status, 400, JSON.stringify(fields));
    assert.equal(res.headers.get('location'), null);
  }
});

test('a client authenticated with HTTP Basic (form-encoded parts) or in the form gets a token of its service account', async () => {
  for (const res of [
    await tokenRequest(form({ grant_type: 'client_credentials' }), basic(client.clientId, client.secret)),
    await tokenRequest(form({ grant_type: 'client_credentials', client_id: client.clientId, client_secret: client.secret })),
  ]) {
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const body = (await res.json()) as { access_token: string; token_type: string; expires_in: number };
    assert.deepEqual([body.token_type, body.expires_in], ['Bearer', 300]);
    const claims = JSON.parse(Buffer.from(body.access_token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
    assert.deepEqual([claims.sub, claims.azp, claims.realm_access], ['service-account-a-deliverer', 'a-deliverer', { roles: ['order-deliverer'] }]);
  }
});

test('a wrong secret, an unknown client or none is a 401 invalid_client; another grant a 400; a GET a 405', async () => {
  const refusals: [Response, number, string][] = [
    [await tokenRequest(form({ grant_type: 'client_credentials' }), basic(client.clientId, 'wrong')), 401, 'invalid_client'],
    [await tokenRequest(form({ grant_type: 'client_credentials' }), basic('stranger', client.secret)), 401, 'invalid_client'],
    [await tokenRequest(form({ grant_type: 'client_credentials' })), 401, 'invalid_client'],
    [await tokenRequest(form({ grant_type: 'password', username: 'alice', password: 'x' }), basic(client.clientId, client.secret)), 400, 'unsupported_grant_type'],
    [await fetch(`${issuer.issuer}/token`), 405, 'invalid_request'],
  ];
  for (const [res, status, error] of refusals) {
    assert.equal(res.status, status);
    assert.equal(((await res.json()) as { error: string }).error, error);
  }
});
