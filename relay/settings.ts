import { ConfigError, integerSetting } from '../shared/config.js';
import { kafkaBrokers, kafkaClientSettings, topicSettings } from '../shared/kafka.js';
import { delivererToken, type ServiceToken } from '../shared/service-token.js';

export interface RelaySettings {
  port: number;
  sweepMs: number;
  batch: number;
  leaseMs: number;
  sendTimeoutMs: number;
  redriveAfterMs: number;
  outboxRetentionMs: number;
  brokers: string[];
  consumeOrderUrl: string | undefined;
  /** The deliverers' token when the relay delivers straight to consume-order (and CONSUME_ORDER_AUTH is on). */
  token: ServiceToken | undefined;
}

/**
 * Every setting of the relay process, read and checked once at start-up
 * (npm start checks them before it starts anything): a bad one is a
 * ConfigError there. The Kafka client and topic settings are checked too.
 */
export function relaySettings(): RelaySettings {
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
  if (brokers.length) {
    kafkaClientSettings();
    topicSettings();
  }
  const consumeOrderUrl = process.env.CONSUME_ORDER_URL;
  if (!brokers.length && !consumeOrderUrl) throw new ConfigError('set KAFKA_BROKERS, or CONSUME_ORDER_URL to deliver straight to consume-order');
  // Delivering straight to consume-order, the relay is its deliverer and needs the deliverer's token.
  const token = brokers.length ? undefined : delivererToken();
  return { ...settings, brokers, consumeOrderUrl, token };
}
