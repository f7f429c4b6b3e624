import { randomUUID } from 'node:crypto';

// Short, printable ids only: they go into logs and answers as they came.
const REQUEST_ID = /^[\w.:-]{1,128}$/;

/** The caller's X-Request-Id when it is a sensible one, else a new one. */
export function acceptRequestId(header: string | string[] | undefined): string {
  return typeof header === 'string' && REQUEST_ID.test(header) ? header : randomUUID();
}
