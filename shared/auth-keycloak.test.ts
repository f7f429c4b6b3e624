import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, test, type TestContext } from 'node:test';
import book from '../functions/book/index.js';
import consumeOrder from '../functions/consume-order/index.js';
import { devRealmSecret, realmFile } from '../scripts/deliverer.js';
import { DELIVERER_ROLE } from './auth.js';
import { deliverCloudEvent } from './cloudevent-delivery.js';
import { pool } from './db.js';
import { DELIVERER_CLIENT_ID, serviceToken } from './service-token.js';
import { createCustomer, createEvent, serve, type RunningFunction } from './test-support/index.js';

// End to end against a real Keycloak with the project's realm: password-grant
// tokens of the demo users and the deliverers' client-credentials token,
// verified by the functions against Keycloak's JWKS.
const keycloak = process.env.KEYCLOAK_URL;
let booking: RunningFunction | undefined;
let orders: RunningFunction | undefined;

before(async () => {
  if (!keycloak) return;
  process.env.OIDC_ISSUER = `${keycloak}/realms/boxoffice`;
  booking = await serve(book);
  orders = await serve(consumeOrder);
});
after(async () => {
  await booking?.stop();
  await orders?.stop();
});

function keycloakOrSkip(t: TestContext): boolean {
  if (keycloak) return true;
  if (process.env.CI === 'true') assert.fail('KEYCLOAK_URL is not set: under CI=true this test must run against a real Keycloak');
  t.skip('SKIPPED: no Keycloak (KEYCLOAK_URL unset and scripts/keycloak/start.sh failed)');
  return false;
}

async function tokenOf(username: string): Promise<string> {
  const res = await fetch(`${keycloak}/realms/boxoffice/protocol/openid-connect/token`, {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'password', client_id: 'boxoffice-cli', username, password: `${username}-pass` }),
  });
  const body = (await res.json()) as { access_token?: string };
  assert.ok(body.access_token, `Keycloak gave ${username} no token (${res.status})`);
  return body.access_token;
}

async function bookAs(username: string, userId: number, eventId: number): Promise<Response> {
  return fetch(`${booking!.url}/api/v1/booking`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${await tokenOf(username)}` },
    body: JSON.stringify({ userId, eventId, ticketCount: 1 }),
  });
}

test('Keycloak tokens: alice books for herself, not for bob; admin-ana books for bob', async (t) => {
  if (!keycloakOrSkip(t)) return;
  const { eventId } = await createEvent({ capacity: 10 });

  // alice is linked to customer 1, bob to customer 2 (the demo data).
  assert.equal((await bookAs('alice', 1, eventId)).status, 201);
  const forBob = await bookAs('alice', 2, eventId);
  assert.equal(forBob.status, 403);
  assert.equal(forBob.headers.get('content-type'), 'application/problem+json');
  assert.equal((await bookAs('admin-ana', 2, eventId)).status, 201);

  const { rows } = await pool.query<{ customer_id: number }>('SELECT customer_id FROM bookings WHERE event_id = $1 ORDER BY created_at', [eventId]);
  assert.deepEqual(rows.map((r) => r.customer_id), [1, 2]);
});

test("Keycloak's deliverer: the service account of boxoffice-deliverer gets a token by the client credentials grant, and consume-order confirms its delivery; alice's token or none is refused", async (t) => {
  if (!keycloakOrSkip(t)) return;
  await ensureDelivererClient();
  const userId = await createCustomer();
  const { eventId } = await createEvent({ capacity: 10, ticketPrice: '12.50' });
  const bookingId = randomUUID();
  await pool.query('UPDATE events SET left_capacity = left_capacity - 1 WHERE event_id = $1', [eventId]);
  await pool.query('INSERT INTO bookings (booking_id, customer_id, event_id, ticket_count, total_price) VALUES ($1, $2, $3, 1, 12.50)', [bookingId, userId, eventId]);
  const event = { id: randomUUID(), type: 'dev.knative.kafka.event', source: '/test', subject: bookingId, data: JSON.stringify({ bookingId, userId, eventId, ticketCount: 1, totalPrice: 12.5 }) };
  const status = async () => (await pool.query<{ status: string }>('SELECT status FROM bookings WHERE booking_id = $1', [bookingId])).rows[0]!.status;

  const asAlice = { authorization: `Bearer ${await tokenOf('alice')}` };
  const post = (headers: Record<string, string>) =>
    fetch(orders!.url, { method: 'POST', headers: { ...headers, 'content-type': 'application/json', 'ce-specversion': '1.0', 'ce-id': event.id, 'ce-type': event.type, 'ce-source': event.source }, body: event.data });
  assert.equal((await post({})).status, 401);
  assert.equal((await post(asAlice)).status, 403);
  assert.equal(await status(), 'PENDING');

  const clientSecret = process.env.DELIVERER_CLIENT_SECRET || devRealmSecret(DELIVERER_CLIENT_ID);
  const token = serviceToken({ issuer: process.env.OIDC_ISSUER, clientId: DELIVERER_CLIENT_ID, clientSecret });
  const claims = JSON.parse(Buffer.from((await token.authorization()).split('.')[1]!, 'base64url').toString('utf8')) as { azp: string; realm_access: { roles: string[] } };
  assert.equal(claims.azp, DELIVERER_CLIENT_ID);
  assert.ok(claims.realm_access.roles.includes(DELIVERER_ROLE), JSON.stringify(claims));
  await deliverCloudEvent(orders!.url, event, { token });
  assert.equal(await status(), 'CONFIRMED');
});

/**
 * Keycloak imports the realm only when it starts without it: one started
 * before the realm file had the deliverers' client gets it here, through the
 * admin API, as the realm file writes it (role, client, service account).
 */
async function ensureDelivererClient(): Promise<void> {
  const login = await fetch(`${keycloak}/realms/master/protocol/openid-connect/token`, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'password',
      client_id: 'admin-cli',
      username: process.env.KC_BOOTSTRAP_ADMIN_USERNAME ?? 'admin',
      password: process.env.KC_BOOTSTRAP_ADMIN_PASSWORD ?? 'admin',
    }),
  });
  const { access_token: adminToken } = (await login.json()) as { access_token?: string };
  assert.ok(adminToken, `no admin token from Keycloak (${login.status}): set KC_BOOTSTRAP_ADMIN_USERNAME/PASSWORD, or restart it to import ${realmFile}`);
  const call = async (path: string, init: RequestInit = {}): Promise<unknown> => {
    const res = await fetch(`${keycloak}/admin/realms/boxoffice${path}`, { ...init, headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' } });
    assert.ok(res.ok, `Keycloak admin API ${init.method ?? 'GET'} ${path}: ${res.status} ${await res.clone().text()}`);
    return res.status === 200 ? res.json() : undefined;
  };
  const found = async () => ((await call(`/clients?clientId=${DELIVERER_CLIENT_ID}`)) as { id: string }[])[0];
  if (await found()) return;
  console.warn(`\n*** the running Keycloak predates the ${DELIVERER_CLIENT_ID} client: added through the admin API as ${realmFile} writes it ***\n`);
  const realm = JSON.parse(readFileSync(realmFile, 'utf8')) as { roles: { realm: { name: string }[] }; clients: { clientId: string }[] };
  await call('/roles', { method: 'POST', body: JSON.stringify(realm.roles.realm.find((role) => role.name === DELIVERER_ROLE)) });
  const client = realm.clients.find((c) => c.clientId === DELIVERER_CLIENT_ID);
  await call('/clients', { method: 'POST', body: JSON.stringify({ ...client, secret: process.env.DELIVERER_CLIENT_SECRET || devRealmSecret(DELIVERER_CLIENT_ID) }) });
  const { id: serviceAccount } = (await call(`/clients/${(await found())!.id}/service-account-user`)) as { id: string };
  await call(`/users/${serviceAccount}/role-mappings/realm`, { method: 'POST', body: JSON.stringify([await call(`/roles/${DELIVERER_ROLE}`)]) });
}
