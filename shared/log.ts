import { pino } from 'pino';
import { config } from './config.js';

// pino: structured JSON lines, and the logger the Node ecosystem trusts for
// exactly this. Lines are written asynchronously in batches of 4 KB (under
// load, one write for dozens of requests) and at least every 100 ms, so a
// quiet process's lines are never held back for long. pino flushes what is
// left when the process exits; a planned exit calls `flushLog()` first.
export const log = pino(
  {
    level: config.logLevel,
    timestamp: pino.stdTimeFunctions.isoTime,
  },
  pino.destination({ dest: process.stdout.fd, sync: false, minLength: 4096, periodicFlush: 100 }),
);

/** Resolves once every line logged so far is written (or writing it failed). */
export function flushLog(): Promise<void> {
  return new Promise((resolve) => log.flush(() => resolve()));
}
