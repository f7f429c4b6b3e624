import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import { createPublicKey, type JsonWebKey } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname } from 'node:path';

/** The demo users, the same as the Keycloak realm's, linked to the demo customers. */
export const demoUsers: Record<string, { customerId?: number; roles: string[] }> = {
  alice: { customerId: 1, roles: ['customer'] },
  bob: { customerId: 2, roles: ['customer'] },
  carol: { customerId: 3, roles: ['customer'] },
  'admin-ana': { roles: ['admin'] },
};

/** Where `npm start` keeps the dev issuer's key (so tokens outlive a restart) and serves it. */
export const devIssuer = {
  keyFile: '.data/dev-issuer/key.json',
  port: Number(process.env.DEV_ISSUER_PORT ?? 8079),
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

/**
 * The local token issuer of `npm start` and the tests: an OIDC discovery
 * document and a JWKS with one RS256 key, on 127.0.0.1. Functions verify its
 * tokens through the same code path as Keycloak's.
 */
export async function startDevIssuer(key: SigningKey, port = 0): Promise<DevIssuer> {
  const publicJwk = createPublicKey({ key: key.privateJwk as JsonWebKey, format: 'jwk' }).export({ format: 'jwk' });
  let issuer = '';
  const server = createServer((req, res) => {
    res.setHeader('Content-Type', 'application/json');
    if (req.url === '/.well-known/openid-configuration') return void res.end(JSON.stringify({ issuer, jwks_uri: `${issuer}/jwks` }));
    if (req.url === '/jwks') return void res.end(JSON.stringify({ keys: [{ ...publicJwk, kid: key.kid, alg: 'RS256', use: 'sig' }] }));
    res.statusCode = 404;
    res.end('{}');
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  // It serves while something else keeps the process alive; it is never the reason to stay.
  server.unref();
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { issuer, stop: () => new Promise((resolve) => server.close(() => resolve())) };
}
