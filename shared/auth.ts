import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload } from 'jose';
import type { IncomingHttpHeaders } from 'node:http';
import { problems } from './errors.js';

/** Who is calling, as their token says. */
export interface Principal {
  subject: string;
  /** The customer the token acts for; absent on tokens of staff. */
  customerId?: number;
  roles: string[];
}

/** The caller of a public route. */
export const anonymous: Principal = Object.freeze({ subject: 'anonymous', roles: [] });

interface Verifier {
  issuer: string;
  audience: string;
  keys: ReturnType<typeof createRemoteJWKSet>;
}

let verifier: Promise<Verifier> | undefined;

/**
 * The token issuer, read on first use: OIDC_ISSUER (Keycloak's realm URL, or
 * the dev issuer `npm start` runs), OIDC_AUDIENCE (default boxoffice-api)
 * and, optionally, OIDC_JWKS_URL; without it the JWKS address comes from the
 * issuer's discovery document. jose caches the keys and fetches them again
 * when a token names a key id it does not know.
 */
function currentVerifier(): Promise<Verifier> {
  verifier ??= (async () => {
    const issuer = process.env.OIDC_ISSUER;
    if (!issuer) throw problems.authUnavailable('no token issuer is configured (OIDC_ISSUER)');
    const jwksUrl = process.env.OIDC_JWKS_URL || (await discoverJwks(issuer));
    return { issuer, audience: process.env.OIDC_AUDIENCE || 'boxoffice-api', keys: createRemoteJWKSet(new URL(jwksUrl)) };
  })();
  // A failed discovery is tried again by the next request.
  verifier.catch(() => (verifier = undefined));
  return verifier;
}

async function discoverJwks(issuer: string): Promise<string> {
  try {
    const res = await fetch(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(5_000) });
    const document = (await res.json()) as { jwks_uri?: string };
    if (!res.ok || typeof document.jwks_uri !== 'string') throw new Error(`discovery answered ${res.status}`);
    return document.jwks_uri;
  } catch (error) {
    throw problems.authUnavailable(`the token issuer cannot be reached: ${(error as Error).message}`);
  }
}

/**
 * The caller of a request bearing `Authorization: Bearer <JWT>`: signature
 * against the issuer's keys (asymmetric algorithms only, so `none` and HMAC
 * are refused), issuer, audience or authorized party, expiry and not-before
 * with 30 s of clock skew. Anything else is a 401.
 */
export async function authenticate(headers: IncomingHttpHeaders): Promise<Principal> {
  const match = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/.exec(headers.authorization ?? '');
  if (!match) throw problems.unauthenticated(headers.authorization ? 'the Authorization header is not a bearer token' : undefined);
  const { issuer, audience, keys } = await currentVerifier();
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(match[1]!, keys, {
      issuer,
      algorithms: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'],
      clockTolerance: 30,
      requiredClaims: ['exp', 'sub'],
    }));
  } catch (error) {
    if (error instanceof errors.JOSEError) throw problems.invalidToken(describe(error));
    throw error;
  }
  const audiences = typeof payload.aud === 'string' ? [payload.aud] : (payload.aud ?? []);
  if (!audiences.includes(audience) && payload.azp !== audience) throw problems.invalidToken(`the token is not meant for ${audience}`);
  return { subject: payload.sub!, customerId: customerIdOf(payload), roles: rolesOf(payload) };
}

function describe(error: InstanceType<typeof errors.JOSEError>): string {
  if (error instanceof errors.JWTExpired) return 'the token has expired';
  if (error instanceof errors.JWTClaimValidationFailed) return `the token's ${error.claim} claim is not acceptable`;
  if (error instanceof errors.JWKSNoMatchingKey) return 'the token is signed with a key the issuer does not publish';
  if (error instanceof errors.JOSEAlgNotAllowed) return 'the token is signed with an algorithm that is not allowed';
  if (error instanceof errors.JWSSignatureVerificationFailed) return 'the token signature is not valid';
  return 'the token is malformed';
}

function customerIdOf(payload: JWTPayload): number | undefined {
  const claim = payload.customer_id;
  const id = typeof claim === 'string' ? Number(claim) : claim;
  return typeof id === 'number' && Number.isSafeInteger(id) && id > 0 ? id : undefined;
}

/** Realm roles, where Keycloak puts them (realm_access.roles) or a plain `roles` claim. */
function rolesOf(payload: JWTPayload): string[] {
  const realm = (payload.realm_access as { roles?: unknown } | undefined)?.roles;
  const roles = Array.isArray(realm) ? realm : Array.isArray(payload.roles) ? payload.roles : [];
  return roles.filter((role): role is string => typeof role === 'string');
}

/**
 * Throws 403 unless `principal` may act for customer `customerId`: the
 * customer linked to their token with the `customer` role, or anyone with
 * the `admin` role.
 */
export function mayActFor(principal: Principal, customerId: number): void {
  if (principal.roles.includes('admin')) return;
  if (principal.roles.includes('customer') && principal.customerId === customerId) return;
  throw problems.forbidden(`this token may not act for customer ${customerId}`);
}
