import { pino } from 'pino';
import { config } from './config.js';

// pino: structured JSON lines, fast enough to log every request, and the
// logger the Node ecosystem trusts for exactly this.
export const log = pino({
  level: config.logLevel,
  timestamp: pino.stdTimeFunctions.isoTime,
});
