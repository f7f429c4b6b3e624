import { deliverCloudEvent, DeliveryFailed } from '../shared/cloudevent-delivery.js';
import type { Consumer, EachBatchPayload, KafkaMessage, Producer } from '../shared/kafka.js';
import { createKafka, ensureTopics } from '../shared/kafka.js';
import { log } from '../shared/log.js';
import { triggerDeliveries, triggerLag, triggerPausedPartitions, triggerRedeliveries, triggerRetryAge } from '../shared/metrics.js';
import type { ServiceToken } from '../shared/service-token.js';

export interface TriggerOptions {
  brokers: string[];
  topic: string;
  groupId: string;
  deadLetterTopic: string;
  /** The function to deliver to, e.g. consume-order's URL. */
  target: string;
  /** The deliverer's token, sent with every delivery (none without it). */
  token?: ServiceToken;
  /** First retry delay; each next one doubles (jittered), up to retryMaxMs. */
  retryDelayMs?: number;
  retryMaxMs?: number;
  /** Deliveries in flight at once per partition (never two of one key); 1, the default, delivers in offset order. */
  concurrency?: number;
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

/**
 * Which messages of a batch are done (delivered or dead-lettered). Done ones
 * need not be contiguous; only the contiguous prefix may be committed, since
 * a restart resumes from the commit and must not skip an undone message.
 */
class Progress {
  private readonly done: boolean[];
  /** Index of the first message not done: everything before it is. */
  private prefix = 0;
  constructor(private readonly messages: KafkaMessage[]) {
    this.done = messages.map(() => false);
  }

  /** Marks message `index` done; true when the contiguous prefix grew. */
  complete(index: number): boolean {
    this.done[index] = true;
    const before = this.prefix;
    while (this.prefix < this.messages.length && this.done[this.prefix]) this.prefix++;
    return this.prefix > before;
  }

  /** The last message of the contiguous prefix, if any. */
  get lastOfPrefix(): KafkaMessage | undefined {
    return this.messages[this.prefix - 1];
  }

  /** The first message not done, if any. */
  get firstUndone(): KafkaMessage | undefined {
    return this.messages[this.prefix];
  }

  /** Messages done past the first undone one: they are delivered again after the rewind. */
  get donePastPrefix(): number {
    return this.done.slice(this.prefix).filter(Boolean).length;
  }
}

/** Runs `work`, sending the group heartbeats meanwhile so a slow target cannot cost the partitions. */
async function withHeartbeats<T>(heartbeat: () => Promise<void>, everyMs: number, onFailure: (error: unknown) => void, work: () => Promise<T>): Promise<T> {
  const timer = setInterval(() => heartbeat().catch(onFailure), everyMs);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}

/**
 * The Kafka trigger: a consumer group on `topic` that delivers each message
 * to `target` as a binary CloudEvent, the way Knative's KafkaSource does.
 * Partitions are consumed in parallel; within one, up to `concurrency`
 * deliveries are in flight, never two of the same key (messages are keyed
 * by booking, and each key's messages go in offset order). An offset is
 * committed only when every message below it was answered 2xx or
 * dead-lettered (the dead-letter write acknowledged by all in-sync replicas).
 *
 * A retryable failure (network, timeout, 5xx, 404, 408, 409, 425, 429, or the
 * dead-letter topic unwritable) is retried for as long as it takes: the
 * partition is paused and rewound to the failing message, and resumed after
 * a jittered exponential backoff, so the other partitions go on and nothing
 * is committed past it. Messages past it that were delivered in the same
 * window are delivered again after the rewind (consume-order is idempotent),
 * and counted. While a partition retries, it sends one delivery at a time.
 * Only a permanent refusal (any other 4xx) or a message that is not JSON
 * goes to the dead-letter topic.
 */
export async function startTrigger(options: TriggerOptions): Promise<Trigger> {
  const retryBaseMs = options.retryDelayMs ?? 500;
  const retryMaxMs = Math.max(retryBaseMs, options.retryMaxMs ?? 10_000);
  const deliveryTimeoutMs = options.deliveryTimeoutMs ?? 10_000;
  const sessionTimeout = options.sessionTimeoutMs ?? 10_000;
  const heartbeatInterval = Math.floor(sessionTimeout / 3);
  const concurrency = Math.max(1, options.concurrency ?? 1);

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
        { timeoutMs: deliveryTimeoutMs, token: options.token },
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

  /** Commits `offset` (the next to consume) unless the partition moved to another member. */
  const commit = async (key: string, topic: string, partition: number, offset: string) => {
    // kafkajs can commit for partitions this member lost (#1097): their new owner redelivers from the last commit.
    if (!assigned.has(key)) return void log.warn({ topic, partition, offset }, 'partition moved to another member; not committing');
    await consumer.commitOffsets([{ topic, partition, offset }]);
  };

  /**
   * Delivers one batch of a partition through a window of `concurrency`
   * deliveries. The first retryable failure stops new deliveries; those in
   * flight finish, the contiguous prefix is committed, and the partition
   * rewinds to the first undone message. Commits while the window moves are
   * coalesced: one in flight at a time, each for the prefix as it is then.
   */
  const deliverBatch = async ({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload) => {
    const { topic, partition, messages } = batch;
    const key = `${topic}:${partition}`;
    const progress = new Progress(messages);
    const inFlight = new Set<Promise<void>>();
    /** The last delivery started per message key: the next of that key waits for it, and is skipped if it failed. */
    const lastOfKey = new Map<string, Promise<boolean>>();
    /** Retryable failures by offset: any stops new deliveries. */
    const failures = new Map<string, RetryLater>();
    let halted = false;
    let commitError: unknown;
    let committed: string | undefined;
    let committing: Promise<void> | undefined;

    const flush = (): Promise<void> =>
      (committing ??= (async () => {
        try {
          for (let last = progress.lastOfPrefix; last && last.offset !== committed; last = progress.lastOfPrefix) {
            committed = last.offset;
            await commit(key, topic, partition, (BigInt(last.offset) + 1n).toString());
          }
        } catch (error) {
          commitError ??= error;
          halted = true;
        } finally {
          committing = undefined;
        }
      })());

    const deliverAt = async (index: number, after: Promise<boolean> | undefined): Promise<boolean> => {
      if (after && !(await after)) return false;
      const message = messages[index]!;
      const failed = await deliverOrDeadLetter(topic, partition, message);
      if (failed) {
        failures.set(message.offset, failed);
        return false;
      }
      if (progress.complete(index)) {
        resolveOffset(progress.lastOfPrefix!.offset);
        // The message it was retrying is through: the partition flows again.
        if (retrying.has(key)) forget(key);
        void flush();
      }
      return true;
    };

    const stopHere = (error: unknown) => {
      log.debug({ err: error, topic, partition }, 'heartbeat during a delivery failed; the batch stops starting deliveries');
      halted = true;
    };
    await withHeartbeats(heartbeat, heartbeatInterval, stopHere, async () => {
      for (const [index, message] of messages.entries()) {
        // One at a time while the partition retries: a failing target gets one request per backoff.
        while (inFlight.size >= (retrying.has(key) ? 1 : concurrency)) await Promise.race(inFlight);
        if (failures.size || halted || !isRunning() || isStale()) break;
        // A message without a key orders with nothing.
        const messageKey = message.key ? message.key.toString('latin1') : undefined;
        const after = messageKey === undefined ? undefined : lastOfKey.get(messageKey);
        const delivered = deliverAt(index, after);
        if (messageKey !== undefined) {
          lastOfKey.set(messageKey, delivered);
          void delivered.then(() => lastOfKey.get(messageKey) === delivered && lastOfKey.delete(messageKey));
        }
        const slot: Promise<void> = delivered.then(() => void inFlight.delete(slot));
        inFlight.add(slot);
      }
      await Promise.all(inFlight);
    });
    await flush();
    if (commitError) throw commitError;
    const firstUndone = progress.firstUndone;
    if (!failures.size || !firstUndone) return;
    const redelivered = progress.donePastPrefix;
    if (redelivered) triggerRedeliveries.inc(redelivered);
    // The first undone message is one that failed: any later one of its key waited for it.
    retryLater(key, topic, partition, firstUndone, failures.get(firstUndone.offset) ?? [...failures.values()][0]!);
  };

  await consumer.run({
    autoCommit: false,
    // Offsets are resolved as the contiguous prefix grows: an unfinished batch is fetched again from there.
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: 3,
    eachBatch: async (payload) => {
      const key = `${payload.batch.topic}:${payload.batch.partition}`;
      const before = busy.get(key) ?? Promise.resolve();
      const turn = before.then(() => deliverBatch(payload));
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
