import { ConfigError, integerSetting } from '../shared/config.js';
import { kafkaBrokers, kafkaClientSettings, topicSettings } from '../shared/kafka.js';
import { topics } from '../shared/topics.js';
import { delivererToken, type ServiceToken } from '../shared/service-token.js';

export interface TriggerSettings {
  brokers: string[];
  target: string;
  /** Undefined only with CONSUME_ORDER_AUTH=off. */
  token: ServiceToken | undefined;
  topic: string;
  groupId: string;
  deadLetterTopic: string;
  port: number;
  retryBaseMs: number;
  retryMaxMs: number;
  deliveryTimeoutMs: number;
  concurrency: number;
  sessionTimeoutMs: number;
}

/**
 * Every setting of the trigger process, read and checked once at start-up:
 * a bad one is a ConfigError there, never a surprise (or a dead-lettered
 * stream) later. The Kafka client and topic settings are checked too.
 */
export function triggerSettings(): TriggerSettings {
  const brokers = kafkaBrokers();
  const target = process.env.CONSUME_ORDER_URL;
  if (!brokers.length) throw new ConfigError('KAFKA_BROKERS is required (comma-separated host:port)');
  if (!target) throw new ConfigError('CONSUME_ORDER_URL is required (where booking events are delivered)');
  if (!URL.canParse(target) || !/^https?:$/.test(new URL(target).protocol)) throw new ConfigError(`CONSUME_ORDER_URL must be an http(s) URL, got "${target}"`);
  kafkaClientSettings();
  topicSettings();
  const retryBaseMs = integerSetting('TRIGGER_RETRY_BASE_MS', 500, 1);
  const retryMaxMs = integerSetting('TRIGGER_RETRY_MAX_MS', 10_000, 1);
  if (retryMaxMs < retryBaseMs) throw new ConfigError(`TRIGGER_RETRY_MAX_MS (${retryMaxMs}) must not be below TRIGGER_RETRY_BASE_MS (${retryBaseMs})`);
  return {
    brokers,
    target,
    token: delivererToken(),
    topic: process.env.TRIGGER_TOPIC || topics.booking,
    groupId: process.env.TRIGGER_GROUP || 'order-service',
    deadLetterTopic: process.env.TRIGGER_DEAD_LETTER_TOPIC || topics.bookingDeadLetter,
    port: integerSetting('PORT', 8080, 0),
    retryBaseMs,
    retryMaxMs,
    deliveryTimeoutMs: integerSetting('TRIGGER_DELIVERY_TIMEOUT_MS', 10_000, 1),
    // Deliveries in flight per partition; consume-order is idempotent per booking, and one key is never in flight twice.
    concurrency: integerSetting('TRIGGER_CONCURRENCY', 16, 1),
    // The broker's own bounds (group.min/max.session.timeout.ms, 6 s to 30 min
    // by default) are checked when the consumer joins.
    sessionTimeoutMs: integerSetting('TRIGGER_SESSION_TIMEOUT_MS', 10_000, 1_000),
  };
}
