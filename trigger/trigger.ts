import { deliverCloudEvent, DeliveryFailed } from '../shared/cloudevent-delivery.js';
import type { Consumer, KafkaMessage, Producer } from '../shared/kafka.js';
import { createKafka, ensureTopics } from '../shared/kafka.js';
import { log } from '../shared/log.js';
import { triggerDeliveries, triggerLag, triggerPausedPartitions, triggerRetryAge } from '../shared/metrics.js';

export interface TriggerOptions {
  brokers: string[];
  topic: string;
  groupId: string;
  deadLetterTopic: string;
  /** The function to deliver to, e.g. consume-order's URL. */
  target: string;
  /** First retry delay; each next one doubles (jittered), up to retryMaxMs. */
  retryDelayMs?: number;
  retryMaxMs?: number;
  /** How long one delivery may take before it counts as a retryable failure. */
  deliveryTimeoutMs?: number;
  /** How long the group waits for a silent member (kill -9) before giving its partitions to others. */
  sessionTimeoutMs?: number;
  /** How often the consumer lag is measured for /metrics. */
  lagEveryMs?: number;
  /** The consumer crashed and will not restart itself: the process should exit so its supervisor restarts it. */
  onCrash?: (error: Error) => void;
}

export interface Trigger {
  /** Whether the consumer is in its group (joined, not crashed, not stopped). */
  joined(): boolean;
  stop(): Promise<void>;
}

/** A delivery that failed in a way that can pass: the partition waits and tries again. */
interface RetryLater {
  reason: string;
  retryAfterMs?: number;
}

/** The message that holds its partition up, how often it failed, and since when. */
interface Retrying {
  topic: string;
  partition: number;
  offset: string;
  attempts: number;
  since: number;
  timer?: NodeJS.Timeout;
}

/** Jittered exponential backoff: half of the doubling delay, plus up to as much again at random. */
export function retryDelay(attempt: number, baseMs: number, maxMs: number, retryAfterMs = 0): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 30));
  return Math.min(maxMs, Math.max(ceiling / 2 + (Math.random() * ceiling) / 2, retryAfterMs));
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Why a message can never be delivered as a JSON CloudEvent, or undefined when it can. */
function unparseable(value: Buffer | null): string | undefined {
  if (!value) return 'the message has no value';
  try {
    JSON.parse(utf8.decode(value));
    return undefined;
  } catch (error) {
    return `the message is not JSON text: ${(error as Error).message}`;
  }
}

/** Runs `work`, sending the group heartbeats meanwhile so a slow target cannot cost the partitions. */
async function withHeartbeats<T>(heartbeat: () => Promise<void>, everyMs: number, work: () => Promise<T>): Promise<T> {
  const timer = setInterval(() => heartbeat().catch((error: unknown) => log.debug({ err: error }, 'heartbeat during a delivery failed')), everyMs);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}

/**
 * The Kafka trigger: a consumer group on `topic` that delivers each message
 * to `target` as a binary CloudEvent, the way Knative's KafkaSource does.
 * Partitions are consumed in parallel, each in order, and an offset is
 * committed only after the function answered 2xx or the message was
 * dead-lettered (the dead-letter write acknowledged by all in-sync replicas).
 *
 * A retryable failure (network, timeout, 5xx, 404, 408, 409, 425, 429, or the
 * dead-letter topic unwritable) is retried for as long as it takes: the
 * partition is paused and rewound to the failing message, and resumed after
 * a jittered exponential backoff, so the other partitions go on and nothing
 * is committed past it. Only a permanent refusal (any other 4xx) or a message
 * that is not JSON goes to the dead-letter topic.
 */
export async function startTrigger(options: TriggerOptions): Promise<Trigger> {
  const retryBaseMs = options.retryDelayMs ?? 500;
  const retryMaxMs = Math.max(retryBaseMs, options.retryMaxMs ?? 30_000);
  const deliveryTimeoutMs = options.deliveryTimeoutMs ?? 10_000;
  const sessionTimeout = options.sessionTimeoutMs ?? 10_000;
  const heartbeatInterval = Math.floor(sessionTimeout / 3);

  const kafka = createKafka('boxoffice-trigger', options.brokers);
  const consumer: Consumer = kafka.consumer({
    groupId: options.groupId,
    sessionTimeout,
    heartbeatInterval,
    // The longest a fetch waits for new messages; a resumed partition is fetched again within it.
    maxWaitTimeInMs: 1_000,
    retry: { retries: 8 },
  });
  const producer: Producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await ensureTopics(kafka, [options.topic, options.deadLetterTopic]);
  await producer.connect();
  await consumer.connect();
  await consumer.subscribe({ topic: options.topic, fromBeginning: true });

  let joined = false;
  let stopping = false;
  /** Partitions of the group's last assignment to this member, as `topic:partition`. */
  let assigned = new Set<string>();
  const retrying = new Map<string, Retrying>();
  /** The handler running per partition: after a rebalance kafkajs can start a second one (#1046). */
  const busy = new Map<string, Promise<void>>();

  const showRetryAge = () => {
    const oldest = Math.min(Date.now(), ...[...retrying.values()].map((r) => r.since));
    triggerRetryAge.set((Date.now() - oldest) / 1000);
  };
  const stopWaiting = (state: Retrying | undefined) => {
    if (!state?.timer) return false;
    clearTimeout(state.timer);
    state.timer = undefined;
    triggerPausedPartitions.dec();
    return true;
  };
  const resume = (state: Retrying | undefined) => {
    if (!stopWaiting(state)) return;
    try {
      consumer.resume([{ topic: state!.topic, partitions: [state!.partition] }]);
    } catch (error) {
      // A crashed consumer has no group to resume in; its restart fetches from the last commit.
      log.warn({ err: error, topic: state!.topic, partition: state!.partition }, 'partition not resumed');
    }
  };
  const forget = (key: string) => {
    resume(retrying.get(key));
    retrying.delete(key);
    showRetryAge();
  };

  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    assigned = new Set(Object.entries(payload.memberAssignment).flatMap(([topic, partitions]) => partitions.map((p) => `${topic}:${p}`)));
    // Partitions given to another member are its to retry now.
    for (const key of retrying.keys()) if (!assigned.has(key)) forget(key);
    joined = true;
    log.info({ groupId: options.groupId, assigned: [...assigned] }, 'trigger joined its group');
  });
  consumer.on(consumer.events.CRASH, ({ payload: { error, restart } }) => {
    joined = false;
    if (stopping) return;
    if (restart) {
      log.warn({ err: error }, 'trigger consumer crashed; kafkajs restarts it');
      return;
    }
    log.fatal({ err: error }, 'trigger consumer crashed and will not restart');
    options.onCrash?.(error);
  });

  const deadLetter = async (topic: string, partition: number, message: KafkaMessage, reason: string): Promise<RetryLater | undefined> => {
    try {
      await producer.send({
        topic: options.deadLetterTopic,
        acks: -1,
        messages: [
          {
            key: message.key,
            value: message.value,
            headers: {
              ...message.headers,
              'x-dead-letter-reason': reason.slice(0, 1000),
              'x-original-topic': topic,
              'x-original-partition': String(partition),
              'x-original-offset': message.offset,
            },
          },
        ],
      });
    } catch (error) {
      return { reason: `the dead-letter topic ${options.deadLetterTopic} cannot be written: ${(error as Error).message}` };
    }
    triggerDeliveries.inc({ result: 'dead_lettered' });
    log.error({ topic, partition, offset: message.offset, reason }, 'message dead-lettered');
    return undefined;
  };

  /** Delivers one message, or dead-letters it; what is left is a failure to retry. */
  const deliverOrDeadLetter = async (topic: string, partition: number, message: KafkaMessage): Promise<RetryLater | undefined> => {
    const refused = unparseable(message.value);
    if (refused) return deadLetter(topic, partition, message, refused);
    try {
      await deliverCloudEvent(
        options.target,
        {
          id: `partition:${partition}/offset:${message.offset}`,
          type: 'dev.knative.kafka.event',
          source: `/boxoffice/trigger/${topic}`,
          subject: message.key?.toString(),
          data: message.value!.toString('utf8'),
        },
        deliveryTimeoutMs,
      );
    } catch (error) {
      if (error instanceof DeliveryFailed && !error.retryable) return deadLetter(topic, partition, message, error.message);
      // Anything else can pass: retried, never dead-lettered.
      return { reason: (error as Error).message, retryAfterMs: error instanceof DeliveryFailed ? error.retryAfterMs : undefined };
    }
    triggerDeliveries.inc({ result: 'delivered' });
    return undefined;
  };

  /** Holds the partition at `message` and tries it again after the backoff; nothing past it is committed meanwhile. */
  const retryLater = (key: string, topic: string, partition: number, message: KafkaMessage, failure: RetryLater) => {
    const previous = retrying.get(key);
    const again = previous?.offset === message.offset;
    const state: Retrying = { topic, partition, offset: message.offset, attempts: again ? previous.attempts + 1 : 1, since: again ? previous.since : Date.now() };
    stopWaiting(previous);
    const delay = retryDelay(state.attempts, retryBaseMs, retryMaxMs, failure.retryAfterMs);
    consumer.pause([{ topic, partitions: [partition] }]);
    consumer.seek({ topic, partition, offset: message.offset });
    state.timer = setTimeout(() => resume(state), delay);
    retrying.set(key, state);
    triggerPausedPartitions.inc();
    triggerDeliveries.inc({ result: 'retried' });
    showRetryAge();
    log.warn({ topic, partition, offset: message.offset, attempt: state.attempts, retryInMs: Math.round(delay), reason: failure.reason }, 'delivery failed; the partition waits and retries');
  };

  const handle = async (topic: string, partition: number, message: KafkaMessage, heartbeat: () => Promise<void>) => {
    const key = `${topic}:${partition}`;
    const failure = await withHeartbeats(heartbeat, heartbeatInterval, () => deliverOrDeadLetter(topic, partition, message));
    if (failure) return retryLater(key, topic, partition, message, failure);
    if (retrying.has(key)) forget(key);
    // kafkajs can commit for partitions this member lost (#1097): their new owner redelivers from the last commit.
    if (!assigned.has(key)) return void log.warn({ topic, partition, offset: message.offset }, 'partition moved to another member; not committing');
    await consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
  };

  await consumer.run({
    autoCommit: false,
    partitionsConsumedConcurrently: 3,
    eachMessage: async ({ topic, partition, message, heartbeat }) => {
      const key = `${topic}:${partition}`;
      const before = busy.get(key) ?? Promise.resolve();
      const turn = before.then(() => handle(topic, partition, message, heartbeat));
      const settled = turn.catch(() => undefined);
      busy.set(key, settled);
      try {
        await turn;
      } finally {
        if (busy.get(key) === settled) busy.delete(key);
      }
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
    showRetryAge();
  };
  const lagTimer = setInterval(() => measureLag().catch((error: unknown) => log.warn({ err: error }, 'lag not measured')), options.lagEveryMs ?? 5_000);
  lagTimer.unref();
  await measureLag();

  return {
    joined: () => joined && !stopping,
    async stop() {
      stopping = true;
      clearInterval(lagTimer);
      for (const state of retrying.values()) stopWaiting(state);
      retrying.clear();
      showRetryAge();
      // Leaves the group, so the partitions go to another member at once.
      await consumer.disconnect();
      await producer.disconnect();
      await admin.disconnect();
    },
  };
}
