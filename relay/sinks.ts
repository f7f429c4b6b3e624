import { deliverCloudEvent, DeliveryFailed } from '../shared/cloudevent-delivery.js';
import { createKafka, ensureTopics, type Producer } from '../shared/kafka.js';
import { log } from '../shared/log.js';
import { triggerDeliveries } from '../shared/metrics.js';
import type { ServiceToken } from '../shared/service-token.js';
import type { OutboxSink } from './relay.js';

/** Publishes to Kafka with an idempotent producer, keyed by booking id, acknowledged by all in-sync replicas. */
export async function kafkaSink(brokers: string[]): Promise<OutboxSink> {
  const kafka = createKafka('boxoffice-relay', brokers);
  await ensureTopics(kafka);
  // A short retry budget: the relay's own sweep retries anyway.
  const producer: Producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, retry: { retries: 3, initialRetryTime: 200 } });
  await producer.connect();
  return {
    name: 'kafka',
    async send(messages) {
      await producer.sendBatch({
        acks: -1,
        timeout: 4_000,
        topicMessages: [...new Set(messages.map((m) => m.topic))].map((topic) => ({
          topic,
          messages: messages
            .filter((m) => m.topic === topic)
            .map((m) => ({ key: m.key, value: m.payload, headers: { 'content-type': 'application/json' } })),
        })),
      });
    },
    close: () => producer.disconnect(),
  };
}

/**
 * Without Kafka (local runs), delivers each row straight to consume-order
 * over the same CloudEvent contract the trigger uses, with the deliverer's
 * `token` as the trigger sends it. A retryable failure
 * fails the send (the rows stay for the next sweep); a message the consumer
 * refuses for good is logged and counted as dead-lettered, as the trigger
 * would.
 */
export function directSink(url: string, token?: ServiceToken): OutboxSink {
  return {
    name: 'direct',
    async send(messages) {
      for (const m of messages) {
        try {
          await deliverCloudEvent(url, { id: `outbox-${m.outboxId}`, type: 'dev.boxoffice.booking.accepted', source: '/boxoffice/relay', subject: m.key, data: m.payload }, { token });
        } catch (error) {
          if (!(error instanceof DeliveryFailed) || error.retryable) throw error;
          triggerDeliveries.inc({ result: 'dead_lettered' });
          log.error({ err: error, outboxId: m.outboxId }, 'consume-order refused an outbox message for good');
        }
      }
    },
    close: async () => undefined,
  };
}

/** Kafka when there are brokers, else consume-order directly. */
export async function sinkFor(where: { brokers: string[]; consumeOrderUrl?: string; token?: ServiceToken }): Promise<OutboxSink> {
  if (where.brokers.length) return kafkaSink(where.brokers);
  log.info({ url: where.consumeOrderUrl }, 'KAFKA_BROKERS is not set: outbox events go straight to consume-order as CloudEvents');
  return directSink(where.consumeOrderUrl!, where.token);
}
