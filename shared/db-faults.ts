// Which errors mean "the database cannot serve this right now" (a 503 worth
// retrying) rather than a bug (a 500). Kept apart from db.ts, which opens the
// pool on import: errors.ts needs these rules without a pool.

/** Why the database could not serve a request. */
export type DatabaseFault = 'unreachable' | 'timeout' | 'conflict';

// SQLSTATEs after which the session is gone: the server shut it down, is
// starting or stopping, has no room, or the link failed (class 08).
const SESSION_ENDED = new Set(['57P01', '57P02', '57P03', '57P05', '25P03', '53300']);
// SQLSTATEs of one statement: the session survives them.
const STATEMENT_FAULTS = new Map<string, DatabaseFault>([
  ['57014', 'timeout'], // statement_timeout (or a cancel)
  ['55P03', 'timeout'], // lock_timeout
  ['40001', 'conflict'], // serialization failure
  ['40P01', 'conflict'], // deadlock
]);
// Errors of the socket under the client.
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
// pg and pg-pool raise these as plain Errors, without a code.
const LOST_CONNECTION = /^(timeout exceeded when trying to connect|Connection terminated|Client has encountered a connection error|Client was closed|Query read timeout)/;

interface ErrorFields {
  code?: unknown;
  message?: unknown;
  errors?: unknown;
}

/** True when the connection that raised `error` can never be used again. */
export function connectionUnusable(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code, message, errors } = error as ErrorFields;
  if (typeof code === 'string' && (SESSION_ENDED.has(code) || code.startsWith('08') || NETWORK_CODES.has(code))) return true;
  if (typeof message === 'string' && LOST_CONNECTION.test(message)) return true;
  // Connecting to a name with several addresses fails with one error per address.
  return Array.isArray(errors) && errors.length > 0 && errors.every(connectionUnusable);
}

/** What kept the database from serving, or undefined for any other error. */
export function databaseFault(error: unknown): DatabaseFault | undefined {
  if (connectionUnusable(error)) return (error as ErrorFields).message === 'Query read timeout' ? 'timeout' : 'unreachable';
  const code = (error as ErrorFields | null)?.code;
  return typeof code === 'string' ? STATEMENT_FAULTS.get(code) : undefined;
}

/** True when `error` means the database is down, overloaded or contended: worth a retry, not a bug. */
export function isDatabaseUnavailable(error: unknown): boolean {
  return databaseFault(error) !== undefined;
}
