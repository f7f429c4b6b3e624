import { demoUsers, devIssuer, runningDevIssuer, signingKey, signToken } from './dev-issuer.js';

// `npm run token -- <username>`: prints an access token for a demo user.
// With OIDC_ISSUER set (Keycloak), it asks Keycloak with the password grant
// (password `<username>-pass`, or TOKEN_PASSWORD); otherwise it signs one
// with the dev issuer's key, for the dev issuer `npm start` runs (found
// through the address it writes, or DEV_ISSUER_PORT).
const username = process.argv[2];
if (!username) {
  console.error(`usage: npm run token -- <username>   (demo users: ${Object.keys(demoUsers).join(', ')})`);
  process.exit(2);
}

function fail(line: string): never {
  console.error(`boxoffice: ${line}`);
  process.exit(1);
}

const issuer = process.env.OIDC_ISSUER;
if (issuer) {
  const res = await fetch(`${issuer}/protocol/openid-connect/token`, {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'password', client_id: 'boxoffice-cli', username, password: process.env.TOKEN_PASSWORD ?? `${username}-pass` }),
    signal: AbortSignal.timeout(10_000),
  }).catch((error: unknown) => fail(`cannot reach ${issuer} (OIDC_ISSUER): ${(error as Error).message}`));
  const body = (await res.json().catch(() => ({}))) as { access_token?: string; error_description?: string };
  if (!body.access_token) fail(`${issuer} refused: ${body.error_description ?? res.status}`);
  console.log(body.access_token);
} else {
  const user = demoUsers[username];
  if (!user) fail(`${username} is not a demo user (${Object.keys(demoUsers).join(', ')})`);
  const key = await signingKey(devIssuer.keyFile);
  const running = await runningDevIssuer(key, devIssuer.urlFile).catch((error: unknown) => fail((error as Error).message));
  console.log(await signToken(key, { subject: username, ...user, issuer: running }));
}
