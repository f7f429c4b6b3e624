import { deliverersAuthenticated } from './auth.js';
import { ConfigError, integerSetting, secret } from './config.js';

/** The realm's client for the deliverers (keycloak/boxoffice-realm.json). */
export const DELIVERER_CLIENT_ID = 'boxoffice-deliverer';

export interface ClientCredentials {
  /** The issuer whose discovery document names the token endpoint. */
  issuer?: string;
  /** The token endpoint itself, where the issuer's own address is not reachable from here (compose). */
  tokenUrl?: string;
  clientId: string;
  clientSecret: string;
  /** Longest wait for the discovery document or a token. */
  timeoutMs?: number;
}

/** A service account's bearer token, as a deliverer sends it. */
export interface ServiceToken {
  /** `Bearer <token>`: fetched with the client credentials grant, then the same until shortly before it expires. */
  authorization(): Promise<string>;
  /** The target refused `authorization`: the next call fetches a fresh token. */
  refused(authorization: string): void;
}

/** No token could be had: the issuer is unreachable, or refuses the client. */
export class TokenUnavailable extends Error {
  override name = 'TokenUnavailable';
}

/**
 * The token of a confidential client, by the client credentials grant (RFC
 * 6749 §4.4) at the token endpoint the issuer's discovery document names,
 * authenticated with HTTP Basic (client_secret_basic, what Keycloak and the
 * dev issuer take). Concurrent callers share one request; a token is reused
 * until a tenth of its life (at most 30 s) is left, so a delivery never
 * carries one about to expire.
 */
export function serviceToken(credentials: ClientCredentials): ServiceToken {
  const timeoutMs = credentials.timeoutMs ?? 5_000;
  let endpoint = credentials.tokenUrl;
  let current: { authorization: string; renewAt: number } | undefined;
  let fetching: Promise<string> | undefined;

  const ask = async (url: string, init: RequestInit = {}): Promise<{ status: number; body: Record<string, unknown> }> => {
    let res: Response;
    try {
      res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
    } catch (error) {
      const reason = (error as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : ((error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message);
      throw new TokenUnavailable(`${url} cannot be reached (${reason})`);
    }
    const body = (await res.json().catch(() => ({}))) as unknown;
    return { status: res.status, body: body && typeof body === 'object' ? (body as Record<string, unknown>) : {} };
  };

  const tokenEndpoint = async (): Promise<string> => {
    if (endpoint) return endpoint;
    const url = `${credentials.issuer!.replace(/\/$/, '')}/.well-known/openid-configuration`;
    const { status, body } = await ask(url);
    if (status !== 200 || typeof body.token_endpoint !== 'string') throw new TokenUnavailable(`${url} names no token_endpoint (it answered ${status})`);
    return (endpoint = body.token_endpoint);
  };

  const fetchToken = async (): Promise<string> => {
    const url = await tokenEndpoint();
    const askedAt = Date.now();
    // RFC 6749 §2.3.1: both are form-encoded before they are joined.
    const basic = Buffer.from(`${formEncode(credentials.clientId)}:${formEncode(credentials.clientSecret)}`).toString('base64');
    const { status, body } = await ask(url, {
      method: 'POST',
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: 'grant_type=client_credentials',
    });
    if (status !== 200 || typeof body.access_token !== 'string') {
      const said = [body.error, body.error_description].filter((part) => typeof part === 'string').join(': ');
      throw new TokenUnavailable(`${url} gave client ${credentials.clientId} no token (it answered ${status}${said ? ` ${said}` : ''})`);
    }
    const lifeMs = (typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 60) * 1000;
    const authorization = `Bearer ${body.access_token}`;
    current = { authorization, renewAt: askedAt + lifeMs - Math.min(30_000, lifeMs / 10) };
    return authorization;
  };

  return {
    authorization() {
      if (current && Date.now() < current.renewAt) return Promise.resolve(current.authorization);
      fetching ??= fetchToken().finally(() => (fetching = undefined));
      return fetching;
    },
    refused(authorization) {
      if (current?.authorization === authorization) current = undefined;
    },
  };
}

function formEncode(text: string): string {
  return new URLSearchParams({ _: text }).toString().slice(2);
}

/**
 * The deliverer's token, from its settings: the client DELIVERER_CLIENT_ID
 * (default boxoffice-deliverer) with the secret DELIVERER_CLIENT_SECRET (or
 * the file DELIVERER_CLIENT_SECRET_FILE names), at the token endpoint of
 * OIDC_ISSUER, or DELIVERER_TOKEN_URL. Undefined when CONSUME_ORDER_AUTH=off:
 * then consume-order checks no token and none is sent. A missing setting is
 * a ConfigError, so a deliverer that could never deliver stops at start-up.
 */
export function delivererToken(): ServiceToken | undefined {
  if (!deliverersAuthenticated()) return undefined;
  const clientId = process.env.DELIVERER_CLIENT_ID || DELIVERER_CLIENT_ID;
  const clientSecret = secret('DELIVERER_CLIENT_SECRET');
  if (!clientSecret) {
    throw new ConfigError(
      `DELIVERER_CLIENT_SECRET (or DELIVERER_CLIENT_SECRET_FILE) is required: the secret of the client ${clientId}, whose token consume-order accepts (or CONSUME_ORDER_AUTH=off where consume-order checks none)`,
    );
  }
  const tokenUrl = process.env.DELIVERER_TOKEN_URL || undefined;
  if (tokenUrl && (!URL.canParse(tokenUrl) || !/^https?:$/.test(new URL(tokenUrl).protocol))) throw new ConfigError(`DELIVERER_TOKEN_URL must be an http(s) URL, got "${tokenUrl}"`);
  const issuer = process.env.OIDC_ISSUER || undefined;
  if (!tokenUrl && !issuer) throw new ConfigError('OIDC_ISSUER (or DELIVERER_TOKEN_URL) is required: where the deliverer gets its token');
  return serviceToken({ issuer, tokenUrl, clientId, clientSecret, timeoutMs: integerSetting('OIDC_TIMEOUT_MS', 5_000, 1) });
}
