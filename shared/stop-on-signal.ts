import { log } from './log.js';

/**
 * A worker's end (the relay's, the admitter's): on SIGTERM or SIGINT, logs
 * `<name> stopping`, runs `stop` once, and exits 0, or 1 if `stop` failed.
 */
export function exitOnStopSignal(name: string, stop: () => Promise<unknown>): void {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      log.info({ signal }, `${name} stopping`);
      stop().then(
        () => process.exit(0),
        (error: unknown) => {
          log.error({ err: error }, `${name} stop failed`);
          process.exit(1);
        },
      );
    });
  }
}
