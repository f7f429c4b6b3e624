import pRetry from 'p-retry';
import { ConfigError, integerSetting } from '../shared/config.js';
import { databaseIsUp, pool } from '../shared/db.js';
import { kafkaBrokers, kafkaClientSettings, topicSettings, topics } from '../shared/kafka.js';
import { log } from '../shared/log.js';
import { labelRegistry } from '../shared/metrics.js';
import { serveProbes } from '../shared/probes.js';
import { delivererToken } from '../shared/service-token.js';
import { measureOldestPending, prunePublished, redriveStuckBookings } from './redrive.js';
import { startRelay, type Relay } from './relay.js';
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
  const settings = {
    port: integerSetting('PORT', 8080),
    sweepMs: integerSetting('RELAY_SWEEP_MS', 2_000, 10),
    batch: integerSetting('RELAY_BATCH', 100, 1),
    leaseMs: integerSetting('RELAY_LEASE_MS', 15_000, 100),
    sendTimeoutMs: integerSetting('RELAY_SEND_TIMEOUT_MS', 5_000, 10),
    redriveAfterMs: integerSetting('PENDING_REDRIVE_AFTER_MS', 60_000, 100),
    outboxRetentionMs: integerSetting('OUTBOX_RETENTION_MS', 24 * 3_600_000, 0),
  };
  if (settings.sendTimeoutMs >= settings.leaseMs) throw new ConfigError('RELAY_SEND_TIMEOUT_MS must be shorter than RELAY_LEASE_MS');
  const brokers = kafkaBrokers();
  // Kafka's settings are checked now, not when the first connection is tried.
  if (brokers.length) {
    kafkaClientSettings();
    topicSettings();
  }
  const consumeOrderUrl = process.env.CONSUME_ORDER_URL;
  if (!brokers.length && !consumeOrderUrl) throw new ConfigError('set KAFKA_BROKERS, or CONSUME_ORDER_URL to deliver straight to consume-order');
  // Delivering straight to consume-order, the relay is its deliverer and needs the deliverer's token.
  const token = brokers.length ? undefined : delivererToken();
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

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      log.info({ signal }, 'relay stopping');
      clearInterval(reconcile);
      stopping.abort();
      server.close();
      sink
        .catch(() => undefined)
        .then(() => relay?.stop())
        .then(() => wakeup.stop())
        .then(() => pool.end())
        .then(
          () => process.exit(0),
          (error: unknown) => {
            log.error({ err: error }, 'relay stop failed');
            process.exit(1);
          },
        );
    });
  }
} catch (error) {
  console.error(error instanceof ConfigError ? `boxoffice relay: ${error.message}` : error);
  process.exit(1);
}
