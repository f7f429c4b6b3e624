import pRetry from 'p-retry';
import { deliverCloudEvent, DeliveryFailed } from '../shared/cloudevent-delivery.js';
import type { Consumer, Producer } from '../shared/kafka.js';
import { createKafka, ensureTopics } from '../shared/kafka.js';
import { log } from '../shared/log.js';
import { triggerDeliveries, triggerLag } from '../shared/metrics.js';

export interface TriggerOptions {
  brokers: string[];
  topic: string;
  groupId: string;
  deadLetterTopic: string;
  /** The function to deliver to, e.g. consume-order's URL. */
  target: string;
  /** Deliveries of one message before it is dead-lettered. */
  maxAttempts?: number;
  /** First retry delay; each next one doubles, up to 30 s. */
  retryDelayMs?: number;
  /** How often the consumer lag is measured for /metrics. */
  lagEveryMs?: number;
}

export interface Trigger {
  stop(): Promise<void>;
}

/**
 * The Kafka trigger: a consumer group on `topic` that delivers each message
 * to `target` as a binary CloudEvent, the way Knative's KafkaSource does.
 * An offset is committed only after the function answered 2xx, or after the
 * message went to the dead-letter topic: retryable failures (network, 5xx,
 * 404, 408, 409, 429) back off and retry up to maxAttempts; any other 4xx
 * means the message can never succeed, and it is dead-lettered at once.
 * Partitions are consumed in parallel, each in order.
 */
export async function startTrigger(options: TriggerOptions): Promise<Trigger> {
  const kafka = createKafka('boxoffice-trigger', options.brokers);
  const consumer: Consumer = kafka.consumer({ groupId: options.groupId, retry: { retries: 8 } });
  const producer: Producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  const maxAttempts = options.maxAttempts ?? 5;
  await ensureTopics(kafka, [options.topic, options.deadLetterTopic]);
  await producer.connect();
  await consumer.connect();
  await consumer.subscribe({ topic: options.topic, fromBeginning: true });

  await consumer.run({
    autoCommit: false,
    partitionsConsumedConcurrently: 3,
    eachMessage: async ({ topic, partition, message, heartbeat }) => {
      const id = `partition:${partition}/offset:${message.offset}`;
      const data = message.value?.toString('utf8') ?? '';
      try {
        await pRetry(
          () => deliverCloudEvent(options.target, { id, type: 'dev.knative.kafka.event', source: `/boxoffice/trigger/${topic}`, subject: message.key?.toString(), data }),
          {
            retries: maxAttempts - 1,
            minTimeout: options.retryDelayMs ?? 500,
            maxTimeout: 30_000,
            shouldRetry: ({ error }) => error instanceof DeliveryFailed && error.retryable,
            onFailedAttempt: async ({ error, attemptNumber }) => {
              triggerDeliveries.inc({ result: 'retried' });
              log.warn({ id, attempt: attemptNumber, err: error }, 'delivery failed');
              await heartbeat();
            },
          },
        );
        triggerDeliveries.inc({ result: 'delivered' });
      } catch (error) {
        await producer.send({
          topic: options.deadLetterTopic,
          acks: -1,
          messages: [
            {
              key: message.key,
              value: message.value,
              headers: {
                ...message.headers,
                'x-dead-letter-reason': (error as Error).message.slice(0, 1000),
                'x-original-topic': topic,
                'x-original-partition': String(partition),
                'x-original-offset': message.offset,
              },
            },
          ],
        });
        triggerDeliveries.inc({ result: 'dead_lettered' });
        log.error({ id, err: error }, 'message dead-lettered');
      }
      await consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
    },
  });

  // Lag: what the topic holds past the group's committed offsets, measured
  // on a timer so that it shows even while nothing is consumed.
  const admin = kafka.admin();
  await admin.connect();
  const measureLag = async () => {
    const [ends, [committed]] = await Promise.all([admin.fetchTopicOffsets(options.topic), admin.fetchOffsets({ groupId: options.groupId, topics: [options.topic] })]);
    for (const end of ends) {
      const done = committed?.partitions.find((p) => p.partition === end.partition)?.offset ?? '-1';
      const lag = BigInt(end.high) - (done === '-1' ? BigInt(end.low) : BigInt(done));
      triggerLag.set({ topic: options.topic, partition: String(end.partition) }, Number(lag > 0n ? lag : 0n));
    }
  };
  const lagTimer = setInterval(() => measureLag().catch((error: unknown) => log.warn({ err: error }, 'lag not measured')), options.lagEveryMs ?? 5_000);
  lagTimer.unref();
  await measureLag();

  return {
    async stop() {
      clearInterval(lagTimer);
      await consumer.disconnect();
      await producer.disconnect();
      await admin.disconnect();
    },
  };
}
