import { demoUsers, devIssuer, signingKey, signToken } from './dev-issuer.js';

// `npm run token -- <username>`: prints an access token for a demo user.
// With OIDC_ISSUER set (Keycloak), it asks Keycloak with the password grant
// (password `<username>-pass`, or TOKEN_PASSWORD); otherwise it signs one
// with the dev issuer's key, which `npm start` serves.
const username = process.argv[2];
if (!username) {
  console.error(`usage: npm run token -- <username>   (demo users: ${Object.keys(demoUsers).join(', ')})`);
  process.exit(2);
}

const issuer = process.env.OIDC_ISSUER;
if (issuer) {
  const res = await fetch(`${issuer}/protocol/openid-connect/token`, {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'password', client_id: 'boxoffice-cli', username, password: process.env.TOKEN_PASSWORD ?? `${username}-pass` }),
  });
  const body = (await res.json()) as { access_token?: string; error_description?: string };
  if (!body.access_token) {
    console.error(`boxoffice: ${issuer} refused: ${body.error_description ?? res.status}`);
    process.exit(1);
  }
  console.log(body.access_token);
} else {
  const user = demoUsers[username];
  if (!user) {
    console.error(`boxoffice: ${username} is not a demo user (${Object.keys(demoUsers).join(', ')})`);
    process.exit(1);
  }
  const key = await signingKey(devIssuer.keyFile);
  console.log(await signToken(key, { subject: username, ...user, issuer: `http://127.0.0.1:${devIssuer.port}` }));
}
