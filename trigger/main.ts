import { createServer } from 'node:http';
import { ConfigError } from '../shared/config.js';
import { problems, sendProblem } from '../shared/errors.js';
import { kafkaBrokers, topics } from '../shared/kafka.js';
import { log } from '../shared/log.js';
import { labelRegistry, registry } from '../shared/metrics.js';
import { startTrigger } from './trigger.js';

/**
 * The trigger's process (and container): consumes `booking` as group
 * `order-service` and delivers to CONSUME_ORDER_URL. It serves /_/health
 * and /metrics on PORT and stops cleanly on SIGTERM.
 */
try {
  const brokers = kafkaBrokers();
  const target = process.env.CONSUME_ORDER_URL;
  if (!brokers.length) throw new ConfigError('KAFKA_BROKERS is required');
  if (!target) throw new ConfigError('CONSUME_ORDER_URL is required');
  labelRegistry('trigger');
  log.setBindings({ function: 'trigger' });

  const trigger = await startTrigger({
    brokers,
    topic: process.env.TRIGGER_TOPIC || topics.booking,
    groupId: process.env.TRIGGER_GROUP || 'order-service',
    deadLetterTopic: process.env.TRIGGER_DEAD_LETTER_TOPIC || topics.bookingDeadLetter,
    target,
    maxAttempts: Number(process.env.TRIGGER_MAX_ATTEMPTS || 5),
  });

  const server = createServer((req, res) => {
    if (req.url === '/metrics') {
      res.setHeader('Content-Type', registry.contentType);
      void registry.metrics().then((text) => res.end(text));
      return;
    }
    if (req.url === '/_/health' || req.url === '/_/ready') {
      res.setHeader('Content-Type', 'application/json');
      return void res.end('{"status":"ok"}');
    }
    sendProblem(res, problems.routeNotFound(req.url ?? '/'));
  }).listen(Number(process.env.PORT || 8080));
  log.info({ target }, 'trigger consuming');

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      server.close();
      trigger.stop().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  }
} catch (error) {
  console.error(error instanceof ConfigError ? `boxoffice trigger: ${error.message}` : error);
  process.exit(1);
}
