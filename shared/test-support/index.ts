import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { signingKey, signToken, startDevIssuer, type SigningKey, type TokenClaims } from '../../scripts/dev-issuer.js';
import { DELIVERER_ROLE } from '../auth.js';
import { pool } from '../db.js';
import { createFunctionHost, type HostOptions } from '../host.js';
import type { FunctionDefinition } from '../http-function.js';
import { DELIVERER_CLIENT_ID, serviceToken, type ServiceToken } from '../service-token.js';

export interface RunningFunction {
  url: string;
  stop(): Promise<void>;
}

/**
 * Serves a function exactly as its container does, on a free loopback port,
 * by the server FUNCTION_SERVER names (lean unless set), so that a test file
 * run with FUNCTION_SERVER=framework tests the same function under the
 * unmodified functions-framework.
 */
export async function serve(definition: FunctionDefinition, options: Partial<HostOptions> = {}): Promise<RunningFunction> {
  const host = createFunctionHost(definition, options);
  host.server.listen(0, '127.0.0.1');
  await once(host.server, 'listening');
  const { port } = host.server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, stop: () => host.drain() };
}

let unique = 0;
/** A name no other test uses, so tests never see each other's rows. */
export function uniqueName(prefix: string): string {
  unique += 1;
  return `${prefix} ${process.pid}-${Date.now()}-${unique}`;
}

export async function createVenue(fields: { totalCapacity?: number } = {}): Promise<{ venueId: number; name: string }> {
  const name = uniqueName('Venue');
  const { rows } = await pool.query<{ venue_id: number }>(
    'INSERT INTO venues (name, address, total_capacity) VALUES ($1, $2, $3) RETURNING venue_id',
    [name, '1 Test Street', fields.totalCapacity ?? 1000],
  );
  return { venueId: rows[0]!.venue_id, name };
}

export async function createEvent(fields: { capacity?: number; ticketPrice?: string; venueId?: number } = {}): Promise<{ eventId: number; venueId: number; name: string }> {
  const venueId = fields.venueId ?? (await createVenue()).venueId;
  const name = uniqueName('Event');
  const capacity = fields.capacity ?? 100;
  const { rows } = await pool.query<{ event_id: number }>(
    `INSERT INTO events (name, venue_id, total_capacity, left_capacity, ticket_price)
     VALUES ($1, $2, $3, $3, $4) RETURNING event_id`,
    [name, venueId, capacity, fields.ticketPrice ?? '10.00'],
  );
  return { eventId: rows[0]!.event_id, venueId, name };
}

/** The value of `name` in Prometheus text whose labels include `labels`, in any order. */
export function metricValue(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) return Number(match[3]);
  }
  return undefined;
}

/**
 * The brokers of the real Kafka the test run started, or, when there is
 * none, a loud skip of the calling test (a failure under CI=true).
 */
export function kafkaOrSkip(t: { skip(message: string): void }): string[] | undefined {
  const brokers = (process.env.KAFKA_BROKERS ?? '').split(',').filter(Boolean);
  if (brokers.length) return brokers;
  if (process.env.CI === 'true') throw new Error('KAFKA_BROKERS is not set: under CI=true the Kafka tests must run against a real broker');
  t.skip('SKIPPED: no Kafka broker (KAFKA_BROKERS unset and scripts/kafka/start.sh failed)');
  return undefined;
}

export async function createCustomer(): Promise<number> {
  const { rows } = await pool.query<{ customer_id: number }>(
    "INSERT INTO customers (name, email) VALUES ('Test Customer', $1) RETURNING customer_id",
    [`${uniqueName('customer').replace(/\W+/g, '-')}@example.com`],
  );
  return rows[0]!.customer_id;
}

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export interface TestIssuer {
  issuer: string;
  /** `Authorization` headers of a customer's token, or an admin's. */
  asCustomer(customerId: number): Promise<Record<string, string>>;
  asAdmin(): Promise<Record<string, string>>;
  /** `Authorization` headers of the deliverers' service account, got by the client credentials grant as the trigger gets it. */
  asDeliverer(): Promise<Record<string, string>>;
  /** The deliverers' token, for a trigger or relay sink the test runs. */
  deliverer: ServiceToken;
  /** The settings of a deliverer process (trigger/main.ts, relay/main.ts) that trusts this issuer. */
  delivererEnv: Record<string, string>;
  /** A token with any claims changed, for the negative cases. */
  sign(claims: Partial<TokenClaims>, key?: SigningKey): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Starts a token issuer on loopback and points this process's token
 * verification at it (OIDC_ISSUER): the real verification code, fetching
 * the real JWKS, with tokens the test makes, and the deliverers' client
 * (a fresh secret) at its token endpoint.
 */
export async function useTestIssuer(): Promise<TestIssuer> {
  const key = await signingKey();
  const client = { clientId: DELIVERER_CLIENT_ID, secret: randomBytes(16).toString('hex'), roles: [DELIVERER_ROLE] };
  const { issuer, stop } = await startDevIssuer(key, 0, { clients: [client] });
  process.env.OIDC_ISSUER = issuer;
  const deliverer = serviceToken({ issuer, clientId: client.clientId, clientSecret: client.secret });
  const sign = (claims: Partial<TokenClaims>, signWith = key) => signToken(signWith, { subject: 'test-user', roles: [], issuer, ...claims });
  const bearer = async (claims: Partial<TokenClaims>) => ({ authorization: `Bearer ${await sign(claims)}` });
  return {
    issuer,
    asCustomer: (customerId) => bearer({ subject: `customer-${customerId}`, customerId, roles: ['customer'] }),
    asAdmin: () => bearer({ subject: 'admin', roles: ['admin'] }),
    asDeliverer: async () => ({ authorization: await deliverer.authorization() }),
    deliverer,
    delivererEnv: { OIDC_ISSUER: issuer, DELIVERER_CLIENT_ID: client.clientId, DELIVERER_CLIENT_SECRET: client.secret },
    sign,
    stop,
  };
}
