import pRetry from 'p-retry';
import { ConfigError } from '../shared/config.js';
import { databaseIsUp, pool } from '../shared/db.js';
import { log } from '../shared/log.js';
import { labelRegistry } from '../shared/metrics.js';
import { serveProbes } from '../shared/probes.js';
import { exitOnStopSignal } from '../shared/stop-on-signal.js';
import { topics } from '../shared/topics.js';
import { measureOldestPending, prunePublished, redriveStuckBookings } from './redrive.js';
import { startRelay, type Relay } from './relay.js';
import { relaySettings } from './settings.js';
import { sinkFor } from './sinks.js';
import { listenForOutbox } from './wakeup.js';

/**
 * The relay's process (and container): publishes the outbox to Kafka (or,
 * without KAFKA_BROKERS, straight to consume-order), woken by LISTEN/NOTIFY
 * and sweeping on a timer; re-drives bookings PENDING too long. Any number
 * may run. Serves /_/health, /_/ready and /metrics on PORT; stops cleanly on
 * SIGTERM.
 */
try {
  const settings = relaySettings();
  const { brokers, consumeOrderUrl, token } = settings;
  labelRegistry('relay');
  log.setBindings({ function: 'relay' });

  let relay: Relay | undefined;
  const wakeup = listenForOutbox(() => relay?.nudge());
  const server = await serveProbes(settings.port, async () => {
    if (!relay) return 'not connected to its sink yet';
    if (!(await databaseIsUp())) return 'database unreachable';
    if (!wakeup.listening()) return 'not listening for outbox notifications';
    return undefined;
  });

  // Kafka may be down at start: keep trying; bookings wait in the outbox meanwhile.
  const stopping = new AbortController();
  const sink = pRetry(() => sinkFor({ brokers, consumeOrderUrl, token }), {
    retries: Infinity,
    maxTimeout: 30_000,
    signal: stopping.signal,
    onFailedAttempt: ({ error }) => log.warn({ err: error }, 'relay cannot reach its sink yet; bookings wait in the outbox'),
  }).then((connected) => {
    relay = startRelay(connected, settings);
    log.info({ sink: connected.name }, 'relay publishing');
  });

  const checkStuckBookings = () =>
    redriveStuckBookings(topics.booking, settings.redriveAfterMs)
      .then((count) => count && log.warn({ count }, 'bookings PENDING too long: their messages are published again'))
      .then(() => measureOldestPending())
      .then(() => prunePublished(settings.outboxRetentionMs))
      .catch((error: unknown) => log.warn({ err: error }, 'stuck bookings not checked'));
  void checkStuckBookings();
  const reconcile = setInterval(checkStuckBookings, Math.min(settings.redriveAfterMs / 2, 10_000));

  exitOnStopSignal('relay', () => {
    clearInterval(reconcile);
    stopping.abort();
    server.close();
    return sink
      .catch(() => undefined)
      .then(() => relay?.stop())
      .then(() => wakeup.stop())
      .then(() => pool.end());
  });
} catch (error) {
  console.error(error instanceof ConfigError ? `boxoffice relay: ${error.message}` : error);
  process.exit(1);
}
