import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { signingKey, startDevIssuer, type DevIssuer } from './dev-issuer.js';

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

test('its discovery document names its token endpoint and the grant it serves', async () => {
  const discovery = (await (await fetch(`${issuer.issuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
  assert.equal(discovery.token_endpoint, `${issuer.issuer}/token`);
  assert.deepEqual(discovery.grant_types_supported, ['client_credentials']);
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
