import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import { createHash, createPublicKey, randomUUID, timingSafeEqual, type JsonWebKey } from 'node:crypto';
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

/**
 * The local token issuer of `npm start` and the tests: an OIDC discovery
 * document and a JWKS with one RS256 key, on 127.0.0.1. Functions verify its
 * tokens through the same code path as Keycloak's. Its token endpoint
 * serves the client credentials grant to `clients` (the deliverers). With
 * `urlFile`, its address is written there while it runs, for `npm run
 * token` to find.
 */
export async function startDevIssuer(key: SigningKey, port = 0, options: { urlFile?: string; clients?: ServiceClient[] } = {}): Promise<DevIssuer> {
  const publicJwk = createPublicKey({ key: key.privateJwk as JsonWebKey, format: 'jwk' }).export({ format: 'jwk' });
  let issuer = '';
  const server = createServer((req, res) => {
    res.setHeader('Content-Type', 'application/json');
    if (req.url === '/.well-known/openid-configuration') {
      return void res.end(
        JSON.stringify({
          issuer,
          jwks_uri: `${issuer}/jwks`,
          token_endpoint: `${issuer}/token`,
          grant_types_supported: ['client_credentials'],
          token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
        }),
      );
    }
    if (req.url === '/jwks') return void res.end(JSON.stringify({ keys: [{ ...publicJwk, kid: key.kid, alg: 'RS256', use: 'sig' }] }));
    if (req.url === '/token') return void clientCredentialsGrant(req, res, key, issuer, options.clients ?? []).catch(() => res.destroy());
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

/**
 * The token endpoint's client credentials grant (RFC 6749 §4.4), as Keycloak
 * answers it: the client authenticates with HTTP Basic or in the form, and
 * gets a token of its service account (`service-account-<client>`, its
 * realm roles, `azp` the client).
 */
async function clientCredentialsGrant(req: IncomingMessage, res: ServerResponse, key: SigningKey, issuer: string, clients: ServiceClient[]): Promise<void> {
  const refuse = (status: number, error: string, description: string) => {
    res.statusCode = status;
    if (status === 401) res.setHeader('WWW-Authenticate', 'Basic realm="dev-issuer"');
    res.end(JSON.stringify({ error, error_description: description }));
  };
  if (req.method !== 'POST') return refuse(405, 'invalid_request', 'POST the token request');
  let text = '';
  for await (const chunk of req) {
    text += (chunk as Buffer).toString('utf8');
    if (text.length > 4096) return refuse(400, 'invalid_request', 'the request is too large');
  }
  const form = new URLSearchParams(text);
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
  if (form.get('grant_type') !== 'client_credentials') return refuse(400, 'unsupported_grant_type', 'only client_credentials is served here');
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
