import { SignJWT, errors, jwtVerify } from 'jose';
import { ConfigError, secret } from './config.js';
import { problems } from './errors.js';

/** The request header a buyer sends their waiting-room pass in (book). */
export const QUEUE_PASS_HEADER = 'queue-pass';

/** Who signs passes; a pass names it, so no other token of ours passes for one. */
const ISSUER = 'boxoffice-waiting-room';

/** HS256 wants a key at least as long as its hash (RFC 7518 §3.2). */
const MIN_KEY_LENGTH = 32;

/** Why a pass does not let its bearer book. */
export type PassFault = 'not-genuine' | 'expired' | 'other-customer' | 'other-event' | 'used' | 'not-admitted';

/** What a request's Queue-Pass header says, before the database is asked whether the turn is still open. */
export type PassReading = { kind: 'none' } | { kind: 'genuine' } | { kind: 'refused'; fault: PassFault; detail: string };

/** Why each fault refuses a pass, as the problem's detail says it. */
export const passFaultDetail: Record<Exclude<PassFault, 'other-customer' | 'other-event'>, string> = {
  'not-genuine': 'The pass was not issued by the waiting room (malformed, or a bad signature)',
  expired: 'The pass has expired: the turn it gave is over',
  used: 'The pass was used by a booking already: one pass, one booking',
  'not-admitted': 'The pass names no admitted place in the waiting room',
};

let cached: { text: string; key: Uint8Array } | undefined;

/**
 * The key that signs and checks passes: QUEUE_PASS_KEY (or the file
 * QUEUE_PASS_KEY_FILE names), shared by join-queue, queue-position and book;
 * undefined when unset. Read on use, like the token issuer, so a function
 * that never meets a waiting room needs none; npm start checks it first.
 */
export function queuePassKey(): Uint8Array | undefined {
  const text = secret('QUEUE_PASS_KEY');
  if (text === undefined) return undefined;
  if (cached?.text !== text) {
    if (text.length < MIN_KEY_LENGTH) throw new ConfigError(`QUEUE_PASS_KEY must be a random secret of at least ${MIN_KEY_LENGTH} characters, got ${text.length}`);
    cached = { text, key: new TextEncoder().encode(text) };
  }
  return cached.key;
}

/** The key, or a 503: passes can be neither issued nor checked without it. */
function usableKey(): Uint8Array {
  let key: Uint8Array | undefined;
  try {
    key = queuePassKey();
  } catch (error) {
    if (error instanceof ConfigError) throw problems.queuePassUnavailable(error.message);
    throw error;
  }
  if (!key) throw problems.queuePassUnavailable('no key to sign waiting-room passes with is configured (QUEUE_PASS_KEY)');
  return key;
}

/**
 * A pass for an admitted customer: a JWT (HS256) bound to the customer
 * (`sub`) and the event (`eventId`), expiring with the turn. It is signed
 * again from the database's row on every read, so nothing but the key is
 * kept besides the row.
 */
export function issuePass(turn: { customerId: number; eventId: number; expiresAt: Date }): Promise<string> {
  return new SignJWT({ eventId: turn.eventId })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(ISSUER)
    .setSubject(String(turn.customerId))
    .setIssuedAt()
    // Whole seconds, rounded down: the pass never outlives the turn.
    .setExpirationTime(Math.floor(turn.expiresAt.getTime() / 1000))
    .sign(usableKey());
}

/**
 * Reads a Queue-Pass header for a booking by `customerId` of `eventId`:
 * none, genuine (signed by the waiting room, unexpired, for this customer
 * and this event), or refused with the reason. Whether its turn is still
 * open (admitted, unused) is the database's to say, in the booking's
 * transaction.
 */
export async function readPass(token: string | undefined, customerId: number, eventId: number): Promise<PassReading> {
  if (token === undefined) return { kind: 'none' };
  let claims: { sub?: string; eventId?: unknown };
  try {
    ({ payload: claims } = await jwtVerify(token, usableKey(), { algorithms: ['HS256'], issuer: ISSUER, requiredClaims: ['sub', 'exp', 'eventId'] }));
  } catch (error) {
    if (error instanceof errors.JWTExpired) return refused('expired');
    if (error instanceof errors.JOSEError) return refused('not-genuine');
    throw error;
  }
  if (claims.sub !== String(customerId)) return { kind: 'refused', fault: 'other-customer', detail: `The pass belongs to another customer, not customer ${customerId}` };
  if (claims.eventId !== eventId) return { kind: 'refused', fault: 'other-event', detail: `The pass is for event ${String(claims.eventId)}, not event ${eventId}` };
  return { kind: 'genuine' };
}

function refused(fault: keyof typeof passFaultDetail): PassReading {
  return { kind: 'refused', fault, detail: passFaultDetail[fault] };
}
