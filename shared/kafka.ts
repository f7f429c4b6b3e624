import { Kafka, logLevel, type LogEntry } from 'kafkajs';
import { ConfigError, integerSetting } from './config.js';
import { log } from './log.js';
import { topics } from './topics.js';

// kafkajs is unmaintained since 2023; this module is the only one that
// imports it, so replacing it touches one file.
export type { Consumer, EachBatchPayload, IHeaders, Kafka, KafkaMessage, Producer } from 'kafkajs';

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

/** How long a Kafka client waits to connect, and for an answer to a request. */
export function kafkaClientSettings(): { connectionTimeoutMs: number; requestTimeoutMs: number } {
  return {
    connectionTimeoutMs: integerSetting('KAFKA_CONNECTION_TIMEOUT_MS', 3_000, 100),
    requestTimeoutMs: integerSetting('KAFKA_REQUEST_TIMEOUT_MS', 30_000, 1_000),
  };
}

export function createKafka(clientId: string, brokers = kafkaBrokers()): Kafka {
  const { connectionTimeoutMs, requestTimeoutMs } = kafkaClientSettings();
  return new Kafka({
    clientId,
    brokers,
    connectionTimeout: connectionTimeoutMs,
    requestTimeout: requestTimeoutMs,
    logLevel: logLevel.WARN,
    logCreator: () => (entry: LogEntry) => {
      const { message, ...rest } = entry.log;
      log[levels[entry.level] ?? 'info']({ kafka: entry.namespace, ...rest }, message);
    },
    retry: { retries: 8, initialRetryTime: 200 },
  });
}

export interface TopicSettings {
  partitions: number;
  replicationFactor: number;
  /** Replicas that must have a write before an acks=all producer hears it succeeded. */
  minInsyncReplicas: number;
}

/** How new topics are made; one broker here, three brokers and 2 in sync in production. */
export function topicSettings(): TopicSettings {
  const settings = {
    partitions: integerSetting('KAFKA_TOPIC_PARTITIONS', 3, 1),
    replicationFactor: integerSetting('KAFKA_REPLICATION_FACTOR', 1, 1),
    minInsyncReplicas: integerSetting('KAFKA_MIN_INSYNC_REPLICAS', 1, 1),
  };
  if (settings.minInsyncReplicas > settings.replicationFactor) {
    throw new ConfigError(`KAFKA_MIN_INSYNC_REPLICAS (${settings.minInsyncReplicas}) cannot exceed KAFKA_REPLICATION_FACTOR (${settings.replicationFactor})`);
  }
  return settings;
}

/**
 * Creates the topics (by default the booking ones) that are missing, with
 * the partitions, replicas and min.insync.replicas of `settings`. Topics that
 * exist are left as they are.
 */
export async function ensureTopics(kafka: Kafka, wanted = [topics.booking, topics.bookingDeadLetter], settings = topicSettings()): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = wanted.filter((topic) => !existing.has(topic));
    if (missing.length) {
      await admin.createTopics({
        topics: missing.map((topic) => ({
          topic,
          numPartitions: settings.partitions,
          replicationFactor: settings.replicationFactor,
          configEntries: [{ name: 'min.insync.replicas', value: String(settings.minInsyncReplicas) }],
        })),
        waitForLeaders: true,
      });
    }
  } finally {
    await admin.disconnect();
  }
}
