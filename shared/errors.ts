import type { ServerResponse } from 'node:http';
import { databaseFault, type DatabaseFault } from './db-faults.js';

/** One validation failure, pointing at the offending part of the request. */
export interface InvalidParam {
  /** Where the problem is, e.g. `body/ticketCount` or `path/eventId`. */
  name: string;
  reason: string;
}

/**
 * An error a caller can act on: a status, a stable problem type and a human
 * title. Every error a function answers with is one of these; anything else
 * becomes a 500 that hides its details.
 */
export class Problem extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly title: string,
    readonly detail?: string,
    readonly extra: { invalidParams?: InvalidParam[]; headers?: Record<string, string>; members?: Record<string, unknown> } = {},
  ) {
    super(detail ?? title);
    this.name = 'Problem';
  }
}

/** The catalogue: every problem the API can answer with, defined once. */
export const problems = {
  validation: (invalidParams: InvalidParam[]) =>
    new Problem(400, 'validation-failed', 'Request is not valid', invalidParams.map((p) => `${p.name} ${p.reason}`).join('; '), { invalidParams }),
  malformedJson: (detail: string) => new Problem(400, 'malformed-json', 'Request body is not valid JSON', detail),
  notFound: (what: string) => new Problem(404, 'not-found', 'Not found', what),
  routeNotFound: (path: string) => new Problem(404, 'route-not-found', 'No such route', `Nothing is served at ${path}`),
  methodNotAllowed: (method: string, allowed: string[]) =>
    new Problem(405, 'method-not-allowed', 'Method not allowed', `${method} is not allowed here; use ${allowed.join(', ')}`, {
      headers: { Allow: allowed.join(', ') },
    }),
  unauthenticated: (detail?: string) =>
    new Problem(401, 'unauthenticated', 'Authentication required', detail ?? 'Send a bearer token in the Authorization header', {
      headers: { 'WWW-Authenticate': detail ? `Bearer realm="boxoffice", error="invalid_request"` : 'Bearer realm="boxoffice"' },
    }),
  invalidToken: (detail: string) =>
    new Problem(401, 'invalid-token', 'Token not accepted', detail, {
      headers: { 'WWW-Authenticate': `Bearer realm="boxoffice", error="invalid_token", error_description="${detail}"` },
    }),
  forbidden: (detail: string) => new Problem(403, 'forbidden', 'Not allowed', detail),
  authUnavailable: (detail: string) =>
    new Problem(503, 'auth-unavailable', 'Cannot check tokens right now', detail, { headers: { 'Retry-After': '5' } }),
  notEnoughTickets: (eventId: number, left: number) =>
    new Problem(409, 'not-enough-tickets', 'Not enough tickets left', `Event ${eventId} has ${left} tickets left`),
  // The figures as members too (RFC 9457 extensions), so a client need not read them out of the detail.
  ticketLimitReached: (eventId: number, limit: number, mayStillBook: number) =>
    new Problem(
      409,
      'ticket-limit-reached',
      'Per-customer ticket limit reached',
      `Event ${eventId} allows at most ${limit} tickets per customer; you may book ${mayStillBook} more`,
      { members: { limit, mayStillBook } },
    ),
  bookingFailed: (bookingId: string) =>
    new Problem(409, 'booking-failed', 'Booking failed', `Booking ${bookingId} failed: it holds no tickets and has no order, so there is nothing to cancel`),
  saleStarted: (detail: string) => new Problem(409, 'sale-started', 'The sale has started', detail),
  capacityExceedsVenue: (detail: string) => new Problem(409, 'capacity-exceeds-venue', 'More tickets than the venue holds', detail),
  noWaitingRoom: (eventId: number) => new Problem(404, 'no-waiting-room', 'No waiting room', `Event ${eventId} sells without a waiting room: book it directly`),
  queuePassRequired: (eventId: number) =>
    new Problem(
      403,
      'queue-pass-required',
      'A waiting-room pass is required',
      `Event ${eventId} sells through its waiting room: join it (POST /api/v1/queue/${eventId}) and, once admitted, send your pass in a Queue-Pass header`,
    ),
  // `reason` as a member too, so a client can tell a used pass from an expired one without reading the detail.
  queuePassInvalid: (reason: string, detail: string) => new Problem(403, 'queue-pass-invalid', 'Waiting-room pass not accepted', detail, { members: { reason } }),
  queuePassUnavailable: (detail: string) =>
    new Problem(503, 'queue-pass-unavailable', 'Waiting-room passes cannot be issued or checked right now', detail, { headers: { 'Retry-After': '5' } }),
  idempotencyKeyReused: () =>
    new Problem(422, 'idempotency-key-reused', 'Idempotency-Key already used', 'This Idempotency-Key was used with a different request body'),
  notACloudEvent: (detail: string) => new Problem(400, 'not-a-cloudevent', 'Request is not a CloudEvent', detail),
  bookingMismatch: (bookingId: string, detail: string) =>
    new Problem(422, 'booking-mismatch', 'Message disagrees with its booking', `Booking ${bookingId}: ${detail}; the booking is left as it is`),
  unknownBooking: (bookingId: string) =>
    new Problem(422, 'unknown-booking', 'Booking does not exist', `No booking ${bookingId}; the message can never become an order`),
  bodyTooLarge: (limit: number) => new Problem(413, 'body-too-large', 'Request body too large', `The body may be at most ${limit} bytes`),
  unsupportedMediaType: (type: string) =>
    new Problem(415, 'unsupported-media-type', 'Unsupported media type', `Send application/json, not ${type || 'no content type'}`),
  // RFC 9110 §15.5.16: Accept-Encoding says which codings would have been taken.
  unsupportedContentEncoding: (coding: string) =>
    new Problem(415, 'unsupported-content-encoding', 'Unsupported content encoding', `Content-Encoding ${coding} is not accepted; send the body unencoded`, {
      headers: { 'Accept-Encoding': 'identity' },
    }),
  unsupportedCharset: (charset: string) =>
    new Problem(415, 'unsupported-charset', 'Unsupported charset', `Send JSON in UTF-8, not charset=${charset}`),
  requestTimeout: (limitMs: number) =>
    new Problem(408, 'request-timeout', 'Request took too long to arrive', `The request must arrive in full within ${limitMs} ms`, {
      headers: { Connection: 'close' },
    }),
  malformedRequest: (detail: string) => new Problem(400, 'malformed-request', 'Request is not valid HTTP', detail, { headers: { Connection: 'close' } }),
  headersTooLarge: () =>
    new Problem(431, 'headers-too-large', 'Request headers too large', 'The request headers are larger than the server accepts', {
      headers: { Connection: 'close' },
    }),
  overloaded: (retryAfterSeconds: number) =>
    new Problem(503, 'overloaded', 'Service is busy', 'Too many requests in flight; retry shortly', {
      headers: { 'Retry-After': String(retryAfterSeconds) },
    }),
  notReady: (detail: string) => new Problem(503, 'not-ready', 'Service is not ready', detail, { headers: { 'Retry-After': '1' } }),
  databaseUnavailable: (detail: string) =>
    new Problem(503, 'database-unavailable', 'Database unavailable', detail, { headers: { 'Retry-After': '2' } }),
  // A function restarting or scaled to zero is an outage the client waits out: 503, not 502.
  upstreamUnavailable: (detail: string) =>
    new Problem(503, 'upstream-unavailable', 'Upstream function unavailable', detail, { headers: { 'Retry-After': '1' } }),
  internal: () => new Problem(500, 'internal', 'Internal error', 'Something went wrong on our side; it has been logged'),
} as const;

const PROBLEM_TYPE_PREFIX = 'urn:boxoffice:problem:';

const DATABASE_FAULT_DETAIL: Record<DatabaseFault, string> = {
  unreachable: 'The database cannot be reached right now; retry shortly',
  timeout: 'The database did not answer in time; retry shortly',
  conflict: 'The request collided with concurrent work in the database; retry it',
};

/**
 * Anything thrown, as the Problem a caller should see: a database that is
 * down, slow or contended is a 503 to retry; anything else unknown is a 500.
 */
export function asProblem(error: unknown): Problem {
  if (error instanceof Problem) return error;
  const fault = databaseFault(error);
  return fault ? problems.databaseUnavailable(DATABASE_FAULT_DETAIL[fault]) : problems.internal();
}

/** The single place where errors become `application/problem+json` (RFC 9457): its text. */
export function problemText(problem: Problem, instance?: string): string {
  return JSON.stringify({
    type: PROBLEM_TYPE_PREFIX + problem.code,
    title: problem.title,
    status: problem.status,
    ...(problem.detail === undefined ? {} : { detail: problem.detail }),
    ...(instance === undefined ? {} : { instance }),
    ...(problem.extra.invalidParams ? { invalidParams: problem.extra.invalidParams } : {}),
    ...problem.extra.members,
  });
}

/** Answers with the problem `error` is (see `asProblem`), unless an answer has begun. */
export function sendProblem(res: ServerResponse, error: unknown, instance?: string): Problem {
  const problem = asProblem(error);
  if (!res.headersSent) {
    for (const [name, value] of Object.entries(problem.extra.headers ?? {})) res.setHeader(name, value);
    res.statusCode = problem.status;
    res.setHeader('Content-Type', 'application/problem+json');
    res.end(problemText(problem, instance));
  }
  return problem;
}
