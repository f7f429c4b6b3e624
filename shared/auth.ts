import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  errors,
  jwtVerify,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import type { IncomingHttpHeaders } from 'node:http';
import { ConfigError, integerSetting } from './config.js';
import { problems } from './errors.js';
import { log } from './log.js';

/** Who is calling, as their token says. */
export interface Principal {
  subject: string;
  /** The customer the token acts for; absent on tokens of staff. */
  customerId?: number;
  roles: string[];
}

/** The caller of a public route. */
export const anonymous: Principal = Object.freeze({ subject: 'anonymous', roles: [] });

/** How the issuer is called, read at start-up so a bad value stops the function there. */
const settings = {
  /** Longest wait for the discovery document or the key set. */
  timeoutMs: integerSetting('OIDC_TIMEOUT_MS', 5_000, 1),
  /** Age at which the keys are fetched again (jose's cacheMaxAge). */
  keysMaxAgeMs: integerSetting('OIDC_KEYS_MAX_AGE_MS', 10 * 60_000, 0),
  /** How long after their last successful fetch the keys are still trusted while the issuer cannot be reached. */
  keysStaleMaxMs: integerSetting('OIDC_KEYS_STALE_MAX_MS', 60 * 60_000, 0),
};

interface Verifier {
  issuer: string;
  audience: string;
  keys: JWTVerifyGetKey;
  /** True while the last fetch of the key set failed: the issuer was not asked about a key id the keys lack. */
  issuerUnreachable(): boolean;
}

let verifier: Promise<Verifier> | undefined;

/**
 * The token issuer, read on first use: OIDC_ISSUER (Keycloak's realm URL, or
 * the dev issuer `npm start` runs), OIDC_AUDIENCE (default boxoffice-api)
 * and, optionally, OIDC_JWKS_URL; without it the JWKS address comes from the
 * issuer's discovery document, fetched once. jose caches the keys and fetches
 * them again when they are older than OIDC_KEYS_MAX_AGE_MS or a token names a
 * key id it does not know.
 */
function currentVerifier(): Promise<Verifier> {
  verifier ??= (async () => {
    const issuer = process.env.OIDC_ISSUER;
    if (!issuer) throw problems.authUnavailable('no token issuer is configured (OIDC_ISSUER)');
    const jwksUrl = process.env.OIDC_JWKS_URL || (await discoverJwks(issuer));
    if (!URL.canParse(jwksUrl)) throw problems.authUnavailable(`the token issuer's key set address is not a URL: ${jwksUrl}`);
    return { issuer, audience: process.env.OIDC_AUDIENCE || 'boxoffice-api', ...issuerKeys(new URL(jwksUrl)) };
  })();
  // A failed discovery is tried again by the next request.
  verifier.catch(() => (verifier = undefined));
  return verifier;
}

/** Tests only: the next request starts as a new container does, with no issuer or keys remembered. */
export function forgetIssuerForTests(): void {
  verifier = undefined;
}

async function discoverJwks(issuer: string): Promise<string> {
  const url = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
  let document: { jwks_uri?: unknown };
  try {
    document = (await fetchIssuerJson(url, { signal: AbortSignal.timeout(settings.timeoutMs) })) as typeof document;
  } catch (error) {
    log.warn({ url, reason: reasonOf(error) }, 'token issuer discovery failed');
    throw problems.authUnavailable(`the token issuer cannot be reached (${reasonOf(error)})`);
  }
  if (typeof document?.jwks_uri !== 'string') throw problems.authUnavailable("the token issuer's discovery document names no jwks_uri");
  return document.jwks_uri;
}

/**
 * jose's remote key set, with stale-if-error at its fetch: when a refresh
 * fails (no connection, timeout, an answer that is not a key set), the last
 * keys fetched are handed back to jose as if fetched again, for up to
 * OIDC_KEYS_STALE_MAX_MS after they really were. jose then waits its max
 * age before trying again, so an outage costs one slow request per max age,
 * not one per request. Without usable keys a failed fetch is a 503 Problem,
 * which jose passes through unchanged.
 */
function issuerKeys(url: URL): Pick<Verifier, 'keys' | 'issuerUnreachable'> {
  let lastGood: { jwks: JSONWebKeySet; fetchedAt: number } | undefined;
  let unreachable = false;
  const trusted = (): typeof lastGood => (lastGood && Date.now() - lastGood.fetchedAt <= settings.keysStaleMaxMs ? lastGood : undefined);

  const remote = createRemoteJWKSet(url, {
    timeoutDuration: settings.timeoutMs,
    cacheMaxAge: settings.keysMaxAgeMs,
    [customFetch]: async (href, init) => {
      try {
        const jwks = (await fetchIssuerJson(href, init)) as JSONWebKeySet;
        createLocalJWKSet(jwks); // throws unless it is a key set, which a broken proxy's JSON is not
        lastGood = { jwks, fetchedAt: Date.now() };
        unreachable = false;
        return Response.json(jwks);
      } catch (error) {
        unreachable = true;
        const stale = trusted();
        log.warn({ url: href, reason: reasonOf(error), keysFetchedAt: stale && new Date(stale.fetchedAt) }, stale ? 'token issuer unreachable: using its last keys' : 'token issuer unreachable');
        if (!stale) throw problems.authUnavailable(`the token issuer's keys cannot be fetched (${reasonOf(error)})`);
        return Response.json(stale.jwks);
      }
    },
  });

  return {
    keys: async (header, token) => {
      // Stale keys count as fresh to jose until its next refresh: hold them to their own bound here.
      if (unreachable && !trusted()) await remote.reload();
      return remote(header, token);
    },
    issuerUnreachable: () => unreachable,
  };
}

/** The issuer's JSON answer; any status but 200 (jose's key set fetch does not follow redirects) or a body that is not JSON throws. */
async function fetchIssuerJson(url: string, init: RequestInit): Promise<unknown> {
  const res = await fetch(url, init);
  if (res.status !== 200) {
    await res.body?.cancel();
    throw new Error(`it answered ${res.status}`);
  }
  return res.json().catch((error: Error) => {
    throw error.name === 'SyntaxError' ? new Error('its answer is not JSON') : error;
  });
}

function reasonOf(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown } }).cause;
  if (typeof cause?.code === 'string') return cause.code;
  if ((error as Error).name === 'TimeoutError') return 'timed out';
  return (error as Error).message;
}

/**
 * The caller of a request bearing `Authorization: Bearer <JWT>`: signature
 * against the issuer's keys (asymmetric algorithms only, so `none` and HMAC
 * are refused), issuer, audience or authorized party, expiry and not-before
 * with 30 s of clock skew. Anything else is a 401, except a token that
 * cannot be checked because the issuer cannot be reached: that is a 503
 * with Retry-After, so the client keeps its token and tries again.
 */
export async function authenticate(headers: IncomingHttpHeaders): Promise<Principal> {
  // RFC 7235: the scheme name is case-insensitive.
  const match = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i.exec(headers.authorization ?? '');
  if (!match) throw problems.unauthenticated(headers.authorization ? 'the Authorization header is not a bearer token' : undefined);
  const { issuer, audience, keys, issuerUnreachable } = await currentVerifier();
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(match[1]!, keys, {
      issuer,
      algorithms: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'],
      clockTolerance: 30,
      requiredClaims: ['exp', 'sub'],
    }));
  } catch (error) {
    if (error instanceof errors.JWKSNoMatchingKey && issuerUnreachable()) {
      throw problems.authUnavailable('the token names a key the token issuer could not be asked about');
    }
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

/**
 * Realm roles, only where Keycloak puts them (realm_access.roles): a plain
 * `roles` claim may be set by anything that maps user attributes into the
 * token, so it grants nothing.
 */
function rolesOf(payload: JWTPayload): string[] {
  const roles = (payload.realm_access as { roles?: unknown } | undefined)?.roles;
  return Array.isArray(roles) ? roles.filter((role): role is string => typeof role === 'string') : [];
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

/**
 * The realm role of the deliverers' service account (the client
 * boxoffice-deliverer in keycloak/boxoffice-realm.json): the only callers
 * consume-order accepts.
 */
export const DELIVERER_ROLE = 'order-deliverer';

/**
 * Whether consume-order checks its deliverers (CONSUME_ORDER_AUTH `on`, the
 * default) and they send a token. `off` is for a deployment whose deliverer
 * cannot send one (Knative's KafkaSource, OpenFaaS's kafka-connector), where
 * nothing else can reach consume-order: off, anyone who reaches it can
 * confirm any booking's order.
 */
export function deliverersAuthenticated(): boolean {
  const value = process.env.CONSUME_ORDER_AUTH || 'on';
  if (value !== 'on' && value !== 'off') throw new ConfigError(`CONSUME_ORDER_AUTH must be on or off, got "${value}"`);
  return value === 'on';
}

/** Throws 403 unless the token carries the realm role `role`. */
export function requireRole(principal: Principal, role: string): void {
  if (!principal.roles.includes(role)) throw problems.forbidden(`only a token with the realm role ${role} may call this`);
}

/** Throws 403 unless `principal` has the `admin` role: operator work (the catalogue's writes). */
export function requireAdmin(principal: Principal): void {
  requireRole(principal, 'admin');
}
