import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import puppeteer from 'puppeteer-core';
import { freePort } from '../../scripts/functions.js';
import { startNpmStart } from '../../shared/test-support/npm-start.js';

// The sign-in a deployment uses: the pages against a real Keycloak with the
// project's realm (its public client boxoffice-web, code flow with PKCE),
// not the dev issuer. The realm allows http://localhost:8080, where
// `npm start` and compose serve the pages; this test serves them on a port of
// its own, so it adds that origin to the client for its run, as an operator
// adds their own domain, and puts the client back after.
const chromium = '/usr/bin/chromium';
const keycloak = process.env.KEYCLOAK_URL;
const missing = !existsSync(chromium) ? `${chromium} is not installed (apt-get install chromium; .ci/run does)` : !keycloak ? 'no Keycloak (KEYCLOAK_URL unset and scripts/keycloak/start.sh failed)' : undefined;
if (missing && process.env.CI === 'true') throw new Error(`under CI=true nothing skips: ${missing}`);

interface ClientRepresentation {
  id: string;
  redirectUris: string[];
  webOrigins: string[];
}

/** The realm's boxoffice-web client, and a way to change it, through Keycloak's admin API. */
async function webClient(): Promise<{ client: ClientRepresentation; put(client: ClientRepresentation): Promise<void> }> {
  const token = await fetch(`${keycloak}/realms/master/protocol/openid-connect/token`, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'password',
      client_id: 'admin-cli',
      username: process.env.KC_BOOTSTRAP_ADMIN_USERNAME || 'admin',
      password: process.env.KC_BOOTSTRAP_ADMIN_PASSWORD || 'admin',
    }),
  });
  assert.equal(token.status, 200, `Keycloak's admin token: ${await token.clone().text()}`);
  const headers = { authorization: `Bearer ${((await token.json()) as { access_token: string }).access_token}`, 'content-type': 'application/json' };
  const clients = `${keycloak}/admin/realms/boxoffice/clients`;
  const [client] = (await (await fetch(`${clients}?clientId=boxoffice-web`, { headers })).json()) as ClientRepresentation[];
  assert.ok(client, 'the realm has the client boxoffice-web');
  return {
    client,
    async put(changed) {
      const res = await fetch(`${clients}/${client.id}`, { method: 'PUT', headers, body: JSON.stringify(changed) });
      assert.equal(res.status, 204, await res.text());
    },
  };
}

test('alice signs in at Keycloak through the realm\'s boxoffice-web client, and books with the token it gives the pages', { skip: missing, timeout: 240_000 }, async (t) => {
  const gatewayPort = await freePort();
  const gateway = `http://127.0.0.1:${gatewayPort}`;
  const { client, put } = await webClient();
  await put({ ...client, redirectUris: [...client.redirectUris, `${gateway}/*`], webOrigins: [...client.webOrigins, gateway] });
  t.after(() => put(client));
  const system = await startNpmStart('keycloak-sign-in', { OIDC_ISSUER: `${keycloak}/realms/boxoffice`, GATEWAY_PORT: String(gatewayPort) });
  t.after(() => system.stop());

  const browser = await puppeteer.launch({ executablePath: chromium, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  t.after(() => browser.close());
  const page = await browser.newPage();
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(String(error)));
  await page.goto(`${gateway}/#/event/2`);
  await page.waitForSelector('#account button');

  await Promise.all([page.waitForNavigation(), page.click('#account button')]);
  assert.equal(new URL(page.url()).origin, new URL(keycloak!).origin, 'the sign-in is at Keycloak');
  const authorize = new URL(page.url()).searchParams;
  assert.equal(authorize.get('client_id'), 'boxoffice-web');
  assert.equal(authorize.get('code_challenge_method'), 'S256');
  await page.waitForSelector('#username');
  await page.type('#username', 'alice');
  await page.type('#password', 'alice-pass');
  await Promise.all([page.waitForNavigation(), page.click('#kc-login')]);

  await page.waitForFunction(`/Signed in as alice/.test(document.querySelector('#account')?.textContent ?? '')`, { timeout: 30_000 });
  assert.equal(new URL(page.url()).origin, gateway, 'back at the storefront');
  assert.equal(new URL(page.url()).hash, '#/event/2', 'on the page the sign-in started from');
  await page.waitForSelector('#ticket-count');
  await page.click('form[aria-label="Book tickets"] button[type=submit]');
  await page.waitForFunction(`/CONFIRMED/.test(document.querySelector('[role=status]')?.textContent ?? '')`, { timeout: 60_000 });
  assert.match(await page.$eval('[role=status]', (e) => e.textContent ?? ''), /Booking CONFIRMED: 2 tickets, 39\.98/);
  assert.deepEqual(problems, [], 'no script errors');
});
