import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { DELIVERER_ROLE, deliverersAuthenticated } from '../shared/auth.js';
import { ConfigError, secret } from '../shared/config.js';
import { DELIVERER_CLIENT_ID } from '../shared/service-token.js';
import type { ServiceClient } from './dev-issuer.js';

/** The realm `scripts/keycloak/start.sh` and the compose Keycloak import. */
export const realmFile = 'keycloak/boxoffice-realm.json';

/**
 * The secret the realm file gives `clientId` when Keycloak's environment
 * sets none: the default of its `${DELIVERER_CLIENT_SECRET:<default>}`
 * placeholder, a development value.
 */
export function devRealmSecret(clientId: string): string {
  const realm = JSON.parse(readFileSync(realmFile, 'utf8')) as { clients?: { clientId?: string; secret?: string }[] };
  const written = realm.clients?.find((client) => client.clientId === clientId)?.secret;
  if (!written) throw new ConfigError(`${realmFile} has no client ${clientId} with a secret: set DELIVERER_CLIENT_SECRET`);
  return /^\$\{[^:}]+:(.*)\}$/.exec(written)?.[1] ?? written;
}

/**
 * Wires the deliverers (the relay without Kafka, the trigger) for `npm
 * start`, in process.env, so its checks and its children see the same: with
 * the dev issuer (on `devIssuerPort`), its address and a fresh secret,
 * returned as the client the dev issuer must serve; with OIDC_ISSUER, the
 * secret set, else the dev realm's. Nothing with CONSUME_ORDER_AUTH=off.
 */
export function wireDeliverer(devIssuerPort: number | undefined, say: (line: string) => void): ServiceClient | undefined {
  // The dev issuer's address is known before it starts: the deliverers' settings are checked before that.
  if (devIssuerPort !== undefined) process.env.OIDC_ISSUER = `http://127.0.0.1:${devIssuerPort}`;
  if (!deliverersAuthenticated()) {
    say('CONSUME_ORDER_AUTH=off: consume-order accepts deliveries from anyone who reaches it, and the relay and the trigger send no token');
    return undefined;
  }
  const clientId = process.env.DELIVERER_CLIENT_ID || DELIVERER_CLIENT_ID;
  let clientSecret = secret('DELIVERER_CLIENT_SECRET');
  if (!clientSecret) {
    clientSecret = devIssuerPort === undefined ? devRealmSecret(clientId) : randomBytes(24).toString('base64url');
    process.env.DELIVERER_CLIENT_SECRET = clientSecret;
    if (devIssuerPort === undefined) say(`DELIVERER_CLIENT_SECRET is not set: the relay and the trigger use the dev realm's secret of ${clientId} (${realmFile})`);
  }
  return devIssuerPort === undefined ? undefined : { clientId, secret: clientSecret, roles: [DELIVERER_ROLE] };
}
