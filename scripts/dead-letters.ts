import { parseArgs } from 'node:util';
import { ConfigError } from '../shared/config.js';
import { createKafka, kafkaBrokers, type IHeaders, type Kafka, type KafkaMessage } from '../shared/kafka.js';
import { topics } from '../shared/topics.js';
import { log } from '../shared/log.js';

// `npm run dead-letters -- list [--json]`: every message in the dead-letter
// topic, with its id (<partition>:<offset> there), key, reason, where it came
// from, when it was dead-lettered and whether it was replayed.
// `npm run dead-letters -- replay [--id 0:12 ...]`: sends the dead letters not
// yet replayed (or those named) back to their original topic. What was replayed
// is kept as the committed offsets of the consumer group `<topic>.replay`: all
// below the committed offset, plus the ones named in its metadata (replayed
// by id past it). Run one at a time: two at once may both replay a letter,
// which the idempotent order consumer absorbs.

const USAGE = 'usage: npm run dead-letters -- list [--json] | replay [--id <partition>:<offset>]...';
const DEAD_LETTER_HEADERS = ['x-dead-letter-reason', 'x-original-topic', 'x-original-partition', 'x-original-offset'];

interface DeadLetter {
  id: string;
  partition: number;
  offset: bigint;
  message: KafkaMessage;
  replayed: boolean;
}

/** What the replay group marks as replayed in one partition. */
interface Marks {
  /** Every offset below it was replayed. */
  next: bigint;
  /** Offsets at or past `next` replayed one by one. */
  extra: Set<bigint>;
}

const header = (headers: IHeaders | undefined, name: string): string | undefined => {
  const value = headers?.[name];
  return value === undefined ? undefined : String(Array.isArray(value) ? value[0] : value);
};

async function readMarks(kafka: Kafka, topic: string, groupId: string, lows: Map<number, bigint>): Promise<Map<number, Marks>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
    return new Map(
      [...lows].map(([partition, low]) => {
        const mark = committed?.partitions.find((p) => p.partition === partition);
        const next = mark && mark.offset !== '-1' ? BigInt(mark.offset) : low;
        const extra = new Set((mark?.metadata ?? '').split(',').filter(Boolean).map(BigInt));
        return [partition, { next, extra }];
      }),
    );
  } finally {
    await admin.disconnect();
  }
}

/**
 * Reads the dead-letter topic from its start up to the high watermarks taken
 * first (what "up to now" means), as a member of the replay group, and
 * hands the letters to `use` while still a member, so that it can commit.
 */
async function withDeadLetters(
  kafka: Kafka,
  topic: string,
  use: (letters: DeadLetter[], marks: Map<number, Marks>, commit: () => Promise<void>) => Promise<void>,
): Promise<void> {
  const groupId = `${topic}.replay`;
  const admin = kafka.admin();
  await admin.connect();
  let ends: { partition: number; low: string; high: string }[] = [];
  try {
    if ((await admin.listTopics()).includes(topic)) ends = await admin.fetchTopicOffsets(topic);
  } finally {
    await admin.disconnect();
  }
  if (!ends.length) return use([], new Map(), async () => undefined);
  const lows = new Map(ends.map((e) => [e.partition, BigInt(e.low)]));
  const highs = new Map(ends.map((e) => [e.partition, BigInt(e.high)]));
  const marks = await readMarks(kafka, topic, groupId, lows);
  const pending = new Set(ends.filter((e) => BigInt(e.high) > BigInt(e.low)).map((e) => e.partition));
  const letters: DeadLetter[] = [];
  const seen = new Set<string>();
  const isReplayed = (partition: number, offset: bigint) => {
    const mark = marks.get(partition)!;
    return offset < mark.next || mark.extra.has(offset);
  };
  if (!pending.size) return use([], marks, async () => undefined);

  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 500 });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    let allRead: () => void = () => undefined;
    const read = new Promise<void>((resolve) => (allRead = resolve));
    // Read everything, not just past the group's offsets: seek each partition to its start as soon as it is assigned.
    consumer.on(consumer.events.GROUP_JOIN, () => {
      for (const [partition, low] of lows) consumer.seek({ topic, partition, offset: low.toString() });
    });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        const high = highs.get(batch.partition)!;
        for (const message of batch.messages) {
          const offset = BigInt(message.offset);
          const id = `${batch.partition}:${offset}`;
          if (offset >= high || seen.has(id)) continue;
          seen.add(id);
          letters.push({ id, partition: batch.partition, offset, message, replayed: isReplayed(batch.partition, offset) });
        }
        if (BigInt(batch.lastOffset()) >= high - 1n) pending.delete(batch.partition);
        if (!pending.size) allRead();
      },
    });
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`could not read ${topic} to its end within 60 s`)), 60_000).unref());
    await Promise.race([read, timeout]);
    letters.sort((a, b) => a.partition - b.partition || (a.offset < b.offset ? -1 : 1));
    await use(letters, marks, async () => {
      await consumer.commitOffsets([...marks].map(([partition, mark]) => ({ topic, partition, offset: mark.next.toString(), metadata: [...mark.extra].join(',') })));
    });
  } finally {
    await consumer.disconnect();
  }
}

function describe(letter: DeadLetter) {
  const { message } = letter;
  return {
    id: letter.id,
    key: message.key?.toString() ?? null,
    reason: header(message.headers, 'x-dead-letter-reason') ?? null,
    original: {
      topic: header(message.headers, 'x-original-topic') ?? null,
      partition: header(message.headers, 'x-original-partition') ?? null,
      offset: header(message.headers, 'x-original-offset') ?? null,
    },
    deadLetteredAt: new Date(Number(message.timestamp)).toISOString(),
    replayed: letter.replayed,
  };
}

async function list(kafka: Kafka, topic: string, json: boolean) {
  await withDeadLetters(kafka, topic, async (letters) => {
    if (!letters.length && !json) console.log(`no dead letters in ${topic}`);
    for (const letter of letters) {
      const d = describe(letter);
      if (json) console.log(JSON.stringify(d));
      else console.log(`${d.id}  key=${d.key}  from ${d.original.topic}[${d.original.partition}]@${d.original.offset}  dead-lettered ${d.deadLetteredAt}  ${d.replayed ? 'replayed' : 'not replayed'}  reason: ${d.reason}`);
    }
  });
}

async function replay(kafka: Kafka, topic: string, ids: string[]) {
  const malformed = ids.filter((id) => !/^\d+:\d+$/.test(id));
  if (malformed.length) throw new ConfigError(`--id takes <partition>:<offset> of ${topic}, got ${malformed.join(', ')}`);
  await withDeadLetters(kafka, topic, async (letters, marks, commit) => {
    const unknown = ids.filter((id) => !letters.some((l) => l.id === id));
    if (unknown.length) throw new ConfigError(`no dead letter ${unknown.join(', ')} in ${topic}; nothing was replayed`);
    const chosen = ids.length ? letters.filter((l) => ids.includes(l.id)) : letters.filter((l) => !l.replayed);
    const orphans = chosen.filter((l) => !header(l.message.headers, 'x-original-topic'));
    if (orphans.length) throw new ConfigError(`${orphans.map((l) => l.id).join(', ')} name no original topic (x-original-topic); nothing was replayed`);

    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    try {
      for (const letter of chosen) {
        const { message } = letter;
        const headers = Object.fromEntries(Object.entries(message.headers ?? {}).filter(([name]) => !DEAD_LETTER_HEADERS.includes(name)));
        const original = header(message.headers, 'x-original-topic')!;
        await producer.send({ topic: original, acks: -1, messages: [{ key: message.key, value: message.value, headers: { ...headers, 'x-replayed-from': `${topic}/${letter.id}` } }] });
        console.log(`replayed ${letter.id} (key ${message.key?.toString() ?? 'none'}) to ${original}`);
      }
    } finally {
      await producer.disconnect();
    }

    for (const letter of chosen) {
      const mark = marks.get(letter.partition)!;
      if (letter.offset >= mark.next) mark.extra.add(letter.offset);
      while (mark.extra.delete(mark.next)) mark.next += 1n;
    }
    if (chosen.length) await commit();
    console.log(`replayed ${chosen.length} dead letter${chosen.length === 1 ? '' : 's'} from ${topic}`);
  });
}

// Standard output is the listing; kafkajs's retries and warnings only show when asked for.
if (!process.env.LOG_LEVEL) log.level = 'silent';

try {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { id: { type: 'string', multiple: true }, json: { type: 'boolean' } } });
  const [command, ...rest] = positionals;
  if (rest.length || (command !== 'list' && command !== 'replay')) throw new ConfigError(USAGE);
  const brokers = kafkaBrokers();
  if (!brokers.length) throw new ConfigError('KAFKA_BROKERS is not set: name the brokers to read the dead letters from, e.g. KAFKA_BROKERS=127.0.0.1:9092');
  const kafka = createKafka('boxoffice-dead-letters', brokers);
  if (command === 'list') await list(kafka, topics.bookingDeadLetter, values.json ?? false);
  else await replay(kafka, topics.bookingDeadLetter, values.id ?? []);
} catch (error) {
  const clear = error instanceof ConfigError || String((error as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS');
  console.error(`boxoffice dead-letters: ${clear ? (error as Error).message : error}`);
  process.exit(1);
}
