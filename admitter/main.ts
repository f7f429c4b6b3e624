import { ConfigError } from '../shared/config.js';
import { databaseIsUp, pool } from '../shared/db.js';
import { log } from '../shared/log.js';
import { labelRegistry } from '../shared/metrics.js';
import { serveProbes } from '../shared/probes.js';
import { exitOnStopSignal } from '../shared/stop-on-signal.js';
import { admitTick, type Tick } from './admitter.js';
import { admitterSettings } from './settings.js';

/**
 * The admitter's process (and container): lets customers through the
 * waiting rooms at each event's rate, one tick every ADMITTER_TICK_MS,
 * serving /_/health, /_/ready and /metrics on PORT; any number may run.
 * With --once it runs one tick and exits (0, or 1 if the tick failed), for
 * a cron trigger; ADMITTER_TICK_MS then says how often the cron runs.
 */
try {
  const settings = admitterSettings();
  labelRegistry('admitter');
  log.setBindings({ function: 'admitter' });
  const report = (tick: Tick) => (tick.admitted || tick.expired) && log.info({ ...tick }, 'admitter tick');

  if (settings.once) {
    await admitTick({ tickMs: settings.tickMs }).then(report, (error: unknown) => {
      log.error({ err: error }, 'admitter tick failed');
      process.exitCode = 1;
    });
    await pool.end();
  } else {
    let timer: NodeJS.Timeout | undefined;
    let ticking: Promise<void> = Promise.resolve();
    let stopping = false;
    // The next tick is timed from the start of this one; a slow tick delays it, never doubles it.
    const tick = () => {
      const startedAt = Date.now();
      ticking = admitTick({ tickMs: settings.tickMs })
        .then(report, (error: unknown) => log.warn({ err: error }, 'admitter tick failed; the next one tries again'))
        .then(() => {
          if (!stopping) timer = setTimeout(tick, Math.max(0, settings.tickMs - (Date.now() - startedAt)));
        });
    };
    const server = await serveProbes(settings.port, async () => ((await databaseIsUp()) ? undefined : 'database unreachable'));
    tick();
    log.info({ tickMs: settings.tickMs }, 'admitter admitting');

    exitOnStopSignal('admitter', () => {
      stopping = true;
      clearTimeout(timer);
      server.close();
      return ticking.then(() => pool.end());
    });
  }
} catch (error) {
  console.error(error instanceof ConfigError ? `boxoffice admitter: ${error.message}` : error);
  process.exit(1);
}
