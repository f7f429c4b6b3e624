import { config, ConfigError } from '../shared/config.js';
import { log } from '../shared/log.js';
import { labelRegistry } from '../shared/metrics.js';
import { serveProbes } from '../shared/probes.js';
import { targetReadiness } from './readiness.js';
import { triggerSettings } from './settings.js';
import { startTrigger, type Trigger } from './trigger.js';

/**
 * The trigger's process (and container): consumes `booking` as group
 * `order-service` and delivers to CONSUME_ORDER_URL. It serves on PORT
 * /_/health (alive), /_/ready (the consumer is in its group and the target
 * is ready) and /metrics. A consumer that crashed for good ends the process
 * (exit 1) for its supervisor to restart; SIGTERM leaves the group and
 * exits 0.
 */
let settings;
try {
  settings = triggerSettings();
} catch (error) {
  console.error(error instanceof ConfigError ? `boxoffice trigger: ${error.message}` : error);
  process.exit(1);
}
labelRegistry('trigger');
log.setBindings({ function: 'trigger' });
if (!settings.token) log.warn('CONSUME_ORDER_AUTH=off: deliveries carry no token; consume-order must not check one');

let trigger: Trigger | undefined;
let stopping = false;
const targetReady = targetReadiness(settings.target);

const ready = async (): Promise<string | undefined> => {
  if (stopping) return 'the trigger is shutting down';
  if (!trigger?.joined()) return 'the consumer has not joined its group yet';
  return targetReady();
};

const server = await serveProbes(settings.port, ready);

/** Stops serving, leaves the group (a restart consumes at once), and exits; bounded by DRAIN_TIMEOUT_MS. */
async function shutdown(code: number): Promise<never> {
  stopping = true;
  setTimeout(() => {
    log.error('trigger did not stop in time; exiting anyway');
    process.exit(code || 1);
  }, config.drainTimeoutMs).unref();
  server.close();
  try {
    await trigger?.stop();
  } catch (error) {
    log.error({ err: error }, 'trigger did not stop cleanly');
    code ||= 1;
  }
  process.exit(code);
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => void shutdown(0));

try {
  trigger = await startTrigger({
    brokers: settings.brokers,
    topic: settings.topic,
    groupId: settings.groupId,
    deadLetterTopic: settings.deadLetterTopic,
    target: settings.target,
    token: settings.token,
    retryDelayMs: settings.retryBaseMs,
    retryMaxMs: settings.retryMaxMs,
    deliveryTimeoutMs: settings.deliveryTimeoutMs,
    concurrency: settings.concurrency,
    sessionTimeoutMs: settings.sessionTimeoutMs,
    onCrash: () => void shutdown(1),
  });
  log.info({ target: settings.target, topic: settings.topic, groupId: settings.groupId }, 'trigger consuming');
} catch (error) {
  log.fatal({ err: error }, 'trigger could not start');
  await shutdown(1);
}
