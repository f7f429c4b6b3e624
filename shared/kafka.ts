import { Kafka, logLevel, type LogEntry } from 'kafkajs';
import { log } from './log.js';

// kafkajs is unmaintained since 2023; this module is the only one that
// imports it, so replacing it touches one file.
export type { Consumer, Producer } from 'kafkajs';

/**
 * The topic accepted bookings are published to, and where poison messages
 * go. BOOKING_TOPIC renames both (tests give each run its own).
 */
export const topics = {
  get booking(): string {
    return process.env.BOOKING_TOPIC || 'booking';
  },
  get bookingDeadLetter(): string {
    return `${topics.booking}.dead-letter`;
  },
};

/** The brokers in KAFKA_BROKERS (comma separated), or none: then Kafka is not used. */
export function kafkaBrokers(): string[] {
  return (process.env.KAFKA_BROKERS ?? '')
    .split(',')
    .map((broker) => broker.trim())
    .filter(Boolean);
}

// kafkajs logs recoverable start-up states (a coordinator still loading) as
// errors and retries them itself, so its errors are warnings here.
const levels: Record<number, 'warn' | 'info' | 'debug'> = {
  [logLevel.ERROR]: 'warn',
  [logLevel.WARN]: 'warn',
  [logLevel.INFO]: 'info',
  [logLevel.DEBUG]: 'debug',
};

export function createKafka(clientId: string, brokers = kafkaBrokers()): Kafka {
  return new Kafka({
    clientId,
    brokers,
    logLevel: logLevel.WARN,
    logCreator: () => (entry: LogEntry) => {
      const { message, ...rest } = entry.log;
      log[levels[entry.level] ?? 'info']({ kafka: entry.namespace, ...rest }, message);
    },
    retry: { retries: 8, initialRetryTime: 200 },
  });
}

/** Creates the topics (by default the booking ones) that are missing. */
export async function ensureTopics(kafka: Kafka, wanted = [topics.booking, topics.bookingDeadLetter], partitions = 3): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = wanted.filter((topic) => !existing.has(topic));
    if (missing.length) await admin.createTopics({ topics: missing.map((topic) => ({ topic, numPartitions: partitions })), waitForLeaders: true });
  } finally {
    await admin.disconnect();
  }
}
