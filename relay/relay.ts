import pRetry from 'p-retry';
import { deliverCloudEvent, DeliveryFailed } from '../shared/cloudevent-delivery.js';
import { pool, transaction } from '../shared/db.js';
import { createKafka, ensureTopics, kafkaBrokers, type Producer } from '../shared/kafka.js';
import { log } from '../shared/log.js';
import { outboxBacklog, outboxPublished } from '../shared/metrics.js';

/** One outbox row on its way out. */
export interface OutboxMessage {
  outboxId: string;
  topic: string;
  key: string;
  payload: string;
}

/** Where the relay sends outbox rows: Kafka, or straight to consume-order. */
export interface OutboxSink {
  readonly name: string;
  send(messages: OutboxMessage[]): Promise<void>;
  close(): Promise<void>;
}

export interface Relay {
  /** Publish what is pending now (coalesces with a run already going). */
  nudge(): void;
  /** One full pass over the outbox; resolves when it is empty or a send failed. */
  flush(): Promise<void>;
  stop(): Promise<void>;
}

const BATCH = 100;

/**
 * The outbox relay: publishes rows in id order, marks them published in the
 * same transaction that locked them (SKIP LOCKED, so any number of book
 * instances share the work), and sweeps on a timer for rows a crash between
 * commit and publish left behind. A failed send rolls back: the rows stay
 * and the next sweep tries again.
 */
export function startRelay(sink: OutboxSink, options: { sweepMs?: number } = {}): Relay {
  let running: Promise<void> | undefined;
  let again = false;
  let stopped = false;
  // The backlog is counted by the sweep only, not after every booking's nudge.
  const sweep = setInterval(() => {
    relay.nudge();
    measureBacklog().catch((error: unknown) => log.warn({ err: error }, 'outbox backlog not measured'));
  }, options.sweepMs ?? 2_000);
  sweep.unref();

  async function publishBatch(): Promise<number> {
    return transaction(async (client) => {
      const { rows } = await client.query<OutboxMessage>(
        `SELECT outbox_id AS "outboxId", topic, message_key AS key, payload::text AS payload
           FROM outbox
          WHERE published_at IS NULL
          ORDER BY outbox_id
          LIMIT $1
            FOR UPDATE SKIP LOCKED`,
        [BATCH],
      );
      if (rows.length === 0) return 0;
      await pRetry(() => sink.send(rows), { retries: 2, minTimeout: 100, maxTimeout: 1_000 });
      await client.query('UPDATE outbox SET published_at = now() WHERE outbox_id = ANY($1::bigint[])', [rows.map((r) => r.outboxId)]);
      return rows.length;
    });
  }

  async function run(): Promise<void> {
    do {
      again = false;
      try {
        let sent: number;
        do {
          sent = await publishBatch();
          outboxPublished.inc(sent);
        } while (sent === BATCH);
      } catch (error) {
        // Nudges that came meanwhile would only fail the same way; the sweep retries.
        again = false;
        log.warn({ err: error, sink: sink.name }, 'outbox publish failed; rows stay for the next sweep');
      }
    } while (again);
  }

  const relay: Relay = {
    nudge() {
      if (stopped) return;
      if (running) {
        again = true;
        return;
      }
      running = run().finally(() => (running = undefined));
    },
    async flush() {
      await running;
      relay.nudge();
      await running;
    },
    async stop() {
      stopped = true;
      clearInterval(sweep);
      await running;
      await sink.close();
    },
  };
  return relay;
}

async function measureBacklog(): Promise<void> {
  const { rows } = await pool.query<{ backlog: number }>('SELECT count(*)::int AS backlog FROM outbox WHERE published_at IS NULL');
  outboxBacklog.set(rows[0]?.backlog ?? 0);
}

/** Publishes to Kafka with an idempotent producer, keyed by booking id. */
export async function kafkaSink(brokers: string[]): Promise<OutboxSink> {
  const kafka = createKafka('boxoffice-book', brokers);
  await ensureTopics(kafka);
  // A short retry budget: the relay holds its rows' locks while it sends, and
  // its own sweep retries anyway.
  const producer: Producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, retry: { retries: 3, initialRetryTime: 200 } });
  await producer.connect();
  return {
    name: 'kafka',
    async send(messages) {
      await producer.sendBatch({
        acks: -1,
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
 * over the same CloudEvent contract the trigger uses. A message the
 * consumer refuses for good is logged and not retried.
 */
export function directSink(url: string): OutboxSink {
  return {
    name: 'direct',
    async send(messages) {
      for (const m of messages) {
        try {
          await deliverCloudEvent(url, { id: `outbox-${m.outboxId}`, type: 'dev.boxoffice.booking.accepted', source: '/boxoffice/book', subject: m.key, data: m.payload });
        } catch (error) {
          if (error instanceof DeliveryFailed && !error.retryable) log.error({ err: error, outboxId: m.outboxId }, 'consume-order refused an outbox message');
          else throw error;
        }
      }
    },
    close: async () => undefined,
  };
}

/** The sink the environment asks for: Kafka when KAFKA_BROKERS is set, else consume-order directly. */
export async function sinkFromEnvironment(): Promise<OutboxSink | undefined> {
  const brokers = kafkaBrokers();
  if (brokers.length) return kafkaSink(brokers);
  const url = process.env.CONSUME_ORDER_URL;
  if (url) {
    log.info({ url }, 'KAFKA_BROKERS is not set: outbox events go straight to consume-order as CloudEvents');
    return directSink(url);
  }
  log.warn('neither KAFKA_BROKERS nor CONSUME_ORDER_URL is set: bookings stay in the outbox until a relay runs');
  return undefined;
}
