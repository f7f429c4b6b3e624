import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import { createHash, createPublicKey, randomBytes, randomUUID, timingSafeEqual, type JsonWebKey } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname } from 'node:path';

/** The demo users, the same as the Keycloak realm's, linked to the demo customers. */
export const demoUsers: Record<string, { customerId?: number; roles: string[] }> = {
  alice: { customerId: 1, roles: ['customer'] },
  bob: { customerId: 2, roles: ['customer'] },
  carol: { customerId: 3, roles: ['customer'] },
  'admin-ana': { roles: ['admin'] },
};

/** Where `npm start` keeps the dev issuer's key (so tokens outlive a restart), and the address it serves at, for `npm run token`. */
export const devIssuer = {
  keyFile: '.data/dev-issuer/key.json',
  urlFile: '.data/dev-issuer/url',
};

export interface SigningKey {
  kid: string;
  privateJwk: JWK;
}

/** A fresh RS256 key; kept in `file` (and read from it next time) when one is named. */
export async function signingKey(file?: string): Promise<SigningKey> {
  if (file && existsSync(file)) return JSON.parse(await readFile(file, 'utf8')) as SigningKey;
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const privateJwk = await exportJWK(privateKey);
  const key = { kid: await calculateJwkThumbprint(privateJwk), privateJwk };
  if (file) {
    await mkdir(dirname(file), { recursive: true });
    try {
      await writeFile(file, JSON.stringify(key), { mode: 0o600, flag: 'wx' });
    } catch (error) {
      // Another start made the key first: use that one, so every token verifies.
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return signingKey(file);
      throw error;
    }
  }
  return key;
}

export interface TokenClaims {
  subject: string;
  customerId?: number;
  roles: string[];
  issuer: string;
  audience?: string;
  /** Seconds from now; negative for a token that has already expired. */
  expiresIn?: number;
  /** More claims, for tests of what verification must ignore. */
  extra?: Record<string, unknown>;
}

/** A token shaped like Keycloak's: realm roles in realm_access, the customer in customer_id. */
export async function signToken(key: SigningKey, claims: TokenClaims): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({
    realm_access: { roles: claims.roles },
    ...(claims.customerId === undefined ? {} : { customer_id: claims.customerId }),
    preferred_username: claims.subject,
    azp: 'boxoffice-cli',
    ...claims.extra,
  })
    .setProtectedHeader({ alg: 'RS256', kid: key.kid, typ: 'JWT' })
    .setIssuer(claims.issuer)
    .setSubject(claims.subject)
    .setAudience(claims.audience ?? 'boxoffice-api')
    .setIssuedAt(now)
    .setExpirationTime(now + (claims.expiresIn ?? 3600))
    .sign(await importJWK(key.privateJwk, 'RS256'));
}

export interface DevIssuer {
  issuer: string;
  stop(): Promise<void>;
}

/** A confidential client whose service account gets tokens by the client credentials grant, as in Keycloak. */
export interface ServiceClient {
  clientId: string;
  secret: string;
  /** Realm roles of its service account. */
  roles: string[];
  /** Lifetime of its tokens in seconds (Keycloak's realm: 300). */
  tokenLifetime?: number;
}

/** The public client of the pages (the storefront and the operator view), as in the Keycloak realm. */
export const webClientId = 'boxoffice-web';

/**
 * The local token issuer of `npm start` and the tests: an OIDC discovery
 * document and a JWKS with one RS256 key, on 127.0.0.1. Functions verify its
 * tokens through the same code path as Keycloak's. Its token endpoint
 * serves the client credentials grant to `clients` (the deliverers), and the
 * authorization code grant with PKCE to the pages' public client, whose
 * users sign in at /authorize by picking a demo user (development only: no
 * passwords). The pages call it from their own origin, so it answers CORS.
 * With `urlFile`, its address is written there while it runs, for `npm run
 * token` to find.
 */
export async function startDevIssuer(key: SigningKey, port = 0, options: { urlFile?: string; clients?: ServiceClient[] } = {}): Promise<DevIssuer> {
  const publicJwk = createPublicKey({ key: key.privateJwk as JsonWebKey, format: 'jwk' }).export({ format: 'jwk' });
  const codes = new Map<string, IssuedCode>();
  let issuer = '';
  const server = createServer((req, res) => {
    res.setHeader('Content-Type', 'application/json');
    res.setHeader('Access-Control-Allow-Origin', '*');
    const path = (req.url ?? '').split('?')[0];
    if (path === '/.well-known/openid-configuration') {
      return void res.end(
        JSON.stringify({
          issuer,
          jwks_uri: `${issuer}/jwks`,
          authorization_endpoint: `${issuer}/authorize`,
          token_endpoint: `${issuer}/token`,
          response_types_supported: ['code'],
          subject_types_supported: ['public'],
          id_token_signing_alg_values_supported: ['RS256'],
          scopes_supported: ['openid', 'profile'],
          code_challenge_methods_supported: ['S256'],
          grant_types_supported: ['authorization_code', 'client_credentials'],
          token_endpoint_auth_methods_supported: ['none', 'client_secret_basic', 'client_secret_post'],
        }),
      );
    }
    if (path === '/jwks') return void res.end(JSON.stringify({ keys: [{ ...publicJwk, kid: key.kid, alg: 'RS256', use: 'sig' }] }));
    if (path === '/authorize') return void authorize(req, res, codes).catch(() => res.destroy());
    if (path === '/token') return void tokenEndpoint(req, res, key, issuer, options.clients ?? [], codes).catch(() => res.destroy());
    res.statusCode = 404;
    res.end('{}');
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  // It serves while something else keeps the process alive; it is never the reason to stay.
  server.unref();
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const { urlFile } = options;
  if (urlFile) {
    await mkdir(dirname(urlFile), { recursive: true });
    await writeFile(urlFile, `${issuer}\n`);
  }
  return {
    issuer,
    stop: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      // Another npm start of this checkout may have written its own address since.
      if (urlFile && (await readFile(urlFile, 'utf8').catch(() => '')).trim() === issuer) await unlink(urlFile).catch(() => undefined);
    },
  };
}

/** An authorization code, good once, for a minute, for the client, redirect and PKCE challenge it was asked with. */
interface IssuedCode {
  username: string;
  clientId: string;
  redirectUri: string;
  challenge: string;
  nonce?: string;
  expiresAt: number;
}

interface AuthorizationRequest {
  clientId: string;
  redirectUri: string;
  state: string;
  challenge: string;
  nonce?: string;
}

/**
 * The authorization request (RFC 6749 §4.1.1 with PKCE, RFC 7636), checked
 * before anything is shown or redirected: the pages' client, a loopback
 * redirect (the dev issuer sends no one's code elsewhere), an S256 challenge.
 */
function authorizationRequest(params: URLSearchParams): AuthorizationRequest | string {
  const [clientId, redirectUri, state, challenge] = ['client_id', 'redirect_uri', 'state', 'code_challenge'].map((name) => params.get(name) ?? '') as [string, string, string, string];
  if (clientId !== webClientId) return `unknown client "${clientId}": the dev issuer signs in ${webClientId} only`;
  let redirect: URL;
  try {
    redirect = new URL(redirectUri);
  } catch {
    return 'redirect_uri must be an absolute URL';
  }
  if (redirect.protocol !== 'http:' || !['localhost', '127.0.0.1'].includes(redirect.hostname) || redirect.hash) return 'redirect_uri must be a loopback http URL without a fragment';
  if (params.get('response_type') !== 'code') return 'response_type must be code';
  if (params.get('code_challenge_method') !== 'S256' || !/^[\w-]{43}$/.test(challenge)) return 'a PKCE code_challenge with code_challenge_method S256 is required';
  const nonce = params.get('nonce') ?? undefined;
  return { clientId, redirectUri, state, challenge, ...(nonce ? { nonce } : {}) };
}

/** GET shows the dev sign-in page (pick a demo user); POST signs that user in and redirects back with a code. */
async function authorize(req: IncomingMessage, res: ServerResponse, codes: Map<string, IssuedCode>): Promise<void> {
  const params = req.method === 'POST' ? new URLSearchParams(await readBody(req)) : new URL(req.url ?? '', 'http://dev-issuer').searchParams;
  const request = authorizationRequest(params);
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  if (typeof request === 'string') {
    res.statusCode = 400;
    return void res.end(page('Sign-in refused', `<p role="alert">${escapeHtml(request)}</p>`));
  }
  if (req.method === 'POST') {
    const username = params.get('username') ?? '';
    if (!Object.hasOwn(demoUsers, username)) {
      res.statusCode = 400;
      return void res.end(page('Sign-in refused', `<p role="alert">Unknown demo user ${escapeHtml(username)}</p>`));
    }
    for (const [code, issued] of codes) if (issued.expiresAt < Date.now()) codes.delete(code);
    const code = randomBytes(32).toString('base64url');
    codes.set(code, { username, clientId: request.clientId, redirectUri: request.redirectUri, challenge: request.challenge, nonce: request.nonce, expiresAt: Date.now() + 60_000 });
    const back = new URL(request.redirectUri);
    back.searchParams.set('code', code);
    if (request.state) back.searchParams.set('state', request.state);
    res.writeHead(303, { Location: back.toString() });
    return void res.end();
  }
  if (req.method !== 'GET') {
    res.writeHead(405, { Allow: 'GET, POST' });
    return void res.end();
  }
  const hidden = [...params].map(([name, value]) => `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`).join('');
  const buttons = Object.entries(demoUsers)
    .map(([name, user]) => `<li><button type="submit" name="username" value="${escapeHtml(name)}">${escapeHtml(name)}</button> ${user.customerId ? `customer ${user.customerId}` : user.roles.join(', ')}</li>`)
    .join('');
  res.end(page('Sign in (development issuer)', `<p><strong>Development only:</strong> no passwords. Pick a demo user to sign in as.</p><form method="post" action="/authorize">${hidden}<ul>${buttons}</ul></form>`));
}

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${title}</title><style>body{font:1rem/1.5 system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem}ul{list-style:none;padding:0}li{margin:.5rem 0}button{font:inherit;min-width:8rem;padding:.5rem 1rem}button:focus{outline:3px solid #1a5fb4;outline-offset:2px}</style></head><body><main><h1>${title}</h1>${body}</main></body></html>`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function readBody(req: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of req) {
    text += (chunk as Buffer).toString('utf8');
    if (text.length > 4096) throw new Error('the request is too large');
  }
  return text;
}

/** The token endpoint: the client credentials grant for the deliverers, the authorization code grant (with PKCE) for the pages. */
async function tokenEndpoint(req: IncomingMessage, res: ServerResponse, key: SigningKey, issuer: string, clients: ServiceClient[], codes: Map<string, IssuedCode>): Promise<void> {
  const refuse = (status: number, error: string, description: string) => {
    res.statusCode = status;
    if (status === 401) res.setHeader('WWW-Authenticate', 'Basic realm="dev-issuer"');
    res.end(JSON.stringify({ error, error_description: description }));
  };
  if (req.method !== 'POST') return refuse(405, 'invalid_request', 'POST the token request');
  const text = await readBody(req).catch(() => undefined);
  if (text === undefined) return refuse(400, 'invalid_request', 'the request is too large');
  const form = new URLSearchParams(text);
  if (form.get('grant_type') === 'authorization_code') return codeGrant(form, res, key, issuer, codes, refuse);
  return clientCredentialsGrant(req, form, res, key, issuer, clients, refuse);
}

type Refuse = (status: number, error: string, description: string) => void;

/**
 * The authorization code grant (RFC 6749 §4.1.3): the code is spent on the
 * first try, right or wrong, and answers only the client and redirect it was
 * issued for, with the verifier whose S256 digest is its challenge (RFC 7636 §4.6).
 */
async function codeGrant(form: URLSearchParams, res: ServerResponse, key: SigningKey, issuer: string, codes: Map<string, IssuedCode>, refuse: Refuse): Promise<void> {
  const code = form.get('code') ?? '';
  const issued = codes.get(code);
  codes.delete(code);
  const verifier = form.get('code_verifier') ?? '';
  if (!issued || issued.expiresAt < Date.now()) return refuse(400, 'invalid_grant', 'the code is unknown, used or expired');
  if (form.get('client_id') !== issued.clientId || form.get('redirect_uri') !== issued.redirectUri) return refuse(400, 'invalid_grant', 'the code was issued to another client or redirect_uri');
  if (!/^[\w.~-]{43,128}$/.test(verifier) || createHash('sha256').update(verifier).digest('base64url') !== issued.challenge) return refuse(400, 'invalid_grant', 'the code_verifier does not match the code_challenge');
  const user = demoUsers[issued.username]!;
  const lifetime = 3600;
  const claims = { subject: issued.username, customerId: user.customerId, roles: user.roles, issuer, expiresIn: lifetime };
  const accessToken = await signToken(key, { ...claims, extra: { azp: issued.clientId, jti: randomUUID() } });
  const idToken = await signToken(key, { ...claims, audience: issued.clientId, extra: { azp: issued.clientId, ...(issued.nonce ? { nonce: issued.nonce } : {}) } });
  res.setHeader('Cache-Control', 'no-store');
  res.end(JSON.stringify({ access_token: accessToken, id_token: idToken, token_type: 'Bearer', expires_in: lifetime, scope: 'openid profile' }));
}

/**
 * The token endpoint's client credentials grant (RFC 6749 §4.4), as Keycloak
 * answers it: the client authenticates with HTTP Basic or in the form, and
 * gets a token of its service account (`service-account-<client>`, its
 * realm roles, `azp` the client).
 */
async function clientCredentialsGrant(req: IncomingMessage, form: URLSearchParams, res: ServerResponse, key: SigningKey, issuer: string, clients: ServiceClient[], refuse: Refuse): Promise<void> {
  let [clientId, secret] = [form.get('client_id'), form.get('client_secret')];
  const basic = /^Basic (.+)$/i.exec(req.headers.authorization ?? '');
  if (basic) {
    const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    // RFC 6749 §2.3.1: both parts are form-encoded.
    const formDecode = (part: string) => new URLSearchParams(`_=${part}`).get('_') ?? '';
    [clientId, secret] = colon < 0 ? [null, null] : [formDecode(decoded.slice(0, colon)), formDecode(decoded.slice(colon + 1))];
  }
  const client = clients.find((c) => c.clientId === clientId);
  const digest = (text: string) => createHash('sha256').update(text).digest();
  if (!client || secret === null || !timingSafeEqual(digest(secret), digest(client.secret))) return refuse(401, 'invalid_client', 'Invalid client or Invalid client credentials');
  if (form.get('grant_type') !== 'client_credentials') return refuse(400, 'unsupported_grant_type', 'only authorization_code and client_credentials are served here');
  const lifetime = client.tokenLifetime ?? 300;
  const token = await signToken(key, {
    subject: `service-account-${client.clientId}`,
    roles: client.roles,
    issuer,
    expiresIn: lifetime,
    extra: { azp: client.clientId, jti: randomUUID() },
  });
  res.setHeader('Cache-Control', 'no-store');
  res.end(JSON.stringify({ access_token: token, token_type: 'Bearer', expires_in: lifetime }));
}

/**
 * The address of the dev issuer that signs with `key`: DEV_ISSUER_PORT's
 * when set, else the one a running `npm start` wrote to `urlFile`. Throws a
 * one-line reason when none is running there, or it signs with another key.
 */
export async function runningDevIssuer(key: SigningKey, urlFile: string): Promise<string> {
  const port = process.env.DEV_ISSUER_PORT;
  let issuer: string;
  let from: string;
  if (port) {
    if (!/^\d{1,5}$/.test(port) || Number(port) > 65_535) throw new Error(`DEV_ISSUER_PORT must be a port number, got "${port}"`);
    [issuer, from] = [`http://127.0.0.1:${port}`, 'DEV_ISSUER_PORT'];
  } else {
    [issuer, from] = [(await readFile(urlFile, 'utf8').catch(() => '')).trim(), urlFile];
    if (!issuer) throw new Error(`no dev issuer is running (npm start writes its address to ${urlFile}): start npm start, or set OIDC_ISSUER`);
  }
  const jwks = (await fetch(`${issuer}/jwks`, { signal: AbortSignal.timeout(3_000) }).then(
    (res) => (res.ok ? res.json() : undefined),
    () => undefined,
  )) as { keys?: { kid?: string }[] } | undefined;
  if (!jwks) throw new Error(`the dev issuer at ${issuer} (from ${from}) does not answer: is npm start running?`);
  if (!jwks.keys?.some((jwk) => jwk.kid === key.kid)) throw new Error(`the issuer at ${issuer} (from ${from}) does not sign with the key in .data/dev-issuer: is it another checkout's npm start?`);
  return issuer;
}
