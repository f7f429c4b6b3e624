import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { createKafka, type Kafka } from '../shared/kafka.js';
import { eventually, kafkaOrSkip } from '../shared/test-support/index.js';
import { startTrigger } from '../trigger/trigger.js';

interface Listed {
  id: string;
  key: string;
  reason: string;
  original: { topic: string; partition: string; offset: string };
  deadLetteredAt: string;
  replayed: boolean;
}

/** `npm run dead-letters -- <args>` as a process, on the booking topic `topic`. */
function deadLetters(topic: string, ...args: string[]) {
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/dead-letters.ts', ...args], {
    env: { ...process.env, BOOKING_TOPIC: topic, LOG_LEVEL: '' },
    encoding: 'utf8',
    timeout: 90_000,
  });
  assert.equal(run.status, 0, run.stderr);
  return run.stdout;
}

const listed = (topic: string): Listed[] =>
  deadLetters(topic, 'list', '--json')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Listed);

/** Messages of `topic` (as a fresh group reads them) that carry the replay header. */
async function replaysIn(kafka: Kafka, topic: string, expected: number) {
  const replays: { key: string; value: string; from: string; headers: string[] }[] = [];
  const consumer = kafka.consumer({ groupId: `replay-reader-${randomUUID()}` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const from = message.headers?.['x-replayed-from'];
      if (from) replays.push({ key: String(message.key), value: String(message.value), from: String(from), headers: Object.keys(message.headers ?? {}).sort() });
    },
  });
  const admin = kafka.admin();
  await admin.connect();
  const end = (await admin.fetchTopicOffsets(topic)).reduce((sum, p) => sum + Number(p.high), 0);
  await admin.disconnect();
  await eventually(`${expected} replays in ${topic}`, async () => (replays.length >= expected ? true : undefined));
  await consumer.disconnect();
  return { replays, end };
}

test('dead letters: list shows each with its reason and origin; replay sends the unreplayed ones back once; replay --id sends one again', async (t) => {
  const brokers = kafkaOrSkip(t);
  if (!brokers) return;
  const kafka = createKafka('dead-letters-test', brokers);
  const topic = `dead-letters-test-${randomUUID().slice(0, 8)}`;
  const deadLetterTopic = `${topic}.dead-letter`;

  // Real dead letters: the trigger meets a function that refuses two messages for good.
  const fn = createServer((req, res) => {
    res.statusCode = String(req.headers['ce-subject']).startsWith('refused') ? 400 : 200;
    req.resume().on('end', () => res.end('{"detail":"refused for the test"}'));
  }).listen(0, '127.0.0.1');
  await once(fn, 'listening');
  t.after(() => fn.close());
  const admin = kafka.admin();
  await admin.connect();
  t.after(() => admin.disconnect());
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }, { topic: deadLetterTopic, numPartitions: 2 }], waitForLeaders: true });
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({
    topic,
    messages: [
      { key: 'refused-a', value: '{"n":1}', partition: 0, headers: { traceparent: 'a' } },
      { key: 'fine', value: '{"n":2}', partition: 0 },
      { key: 'refused-b', value: '{"n":3}', partition: 1, headers: { traceparent: 'b' } },
    ],
  });
  await producer.disconnect();
  const groupId = `${topic}-trigger`;
  const trigger = await startTrigger({ brokers, topic, groupId, deadLetterTopic, target: `http://127.0.0.1:${(fn.address() as AddressInfo).port}`, retryDelayMs: 20 });
  await eventually('the trigger to commit past every message', async () => {
    const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic] });
    return offsets?.partitions.map((p) => p.offset).sort().join() === '1,2' ? true : undefined;
  });
  // Stopped, so that replays are not consumed (and refused) again here.
  await trigger.stop();

  const before = listed(topic);
  assert.deepEqual(
    before.map((d) => [d.key, d.original.topic, d.original.partition, d.original.offset, d.replayed]).sort(),
    [
      ['refused-a', topic, '0', '0', false],
      ['refused-b', topic, '1', '0', false],
    ],
  );
  for (const d of before) {
    assert.match(d.id, /^\d+:\d+$/);
    assert.match(d.reason, /answered 400: \{"detail":"refused for the test"\}/);
    assert.ok(!Number.isNaN(Date.parse(d.deadLetteredAt)));
  }
  assert.match(deadLetters(topic, 'list'), /refused-a .*not replayed {2}reason: .*answered 400/);

  assert.match(deadLetters(topic, 'replay'), /replayed 2 dead letters/);
  const first = await replaysIn(kafka, topic, 2);
  assert.deepEqual(first.replays.map((r) => [r.key, r.value, r.headers.join()]).sort(), [
    ['refused-a', '{"n":1}', 'traceparent,x-replayed-from'],
    ['refused-b', '{"n":3}', 'traceparent,x-replayed-from'],
  ]);
  assert.deepEqual(first.replays.map((r) => r.from).sort(), before.map((d) => `${deadLetterTopic}/${d.id}`).sort());
  assert.ok(listed(topic).every((d) => d.replayed), 'list marks them replayed');

  assert.match(deadLetters(topic, 'replay'), /replayed 0 dead letters/);
  const again = await replaysIn(kafka, topic, 2);
  assert.equal(again.end, first.end, 'a second replay sends nothing');

  const one = before.find((d) => d.key === 'refused-b')!;
  assert.match(deadLetters(topic, 'replay', '--id', one.id), /replayed 1 dead letter from/);
  const byId = await replaysIn(kafka, topic, 3);
  assert.equal(byId.end, first.end + 1);
  assert.deepEqual(byId.replays.map((r) => r.key).sort(), ['refused-a', 'refused-b', 'refused-b']);
});

test('dead letters: replay sends only letters not yet replayed, whole or by id, and an unknown --id sends nothing', async (t) => {
  const brokers = kafkaOrSkip(t);
  if (!brokers) return;
  const kafka = createKafka('dead-letters-test', brokers);
  const topic = `dead-letters-test-${randomUUID().slice(0, 8)}`;
  const deadLetterTopic = `${topic}.dead-letter`;
  const admin = kafka.admin();
  await admin.connect();
  t.after(() => admin.disconnect());
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }, { topic: deadLetterTopic, numPartitions: 1 }], waitForLeaders: true });
  const producer = kafka.producer();
  await producer.connect();
  t.after(() => producer.disconnect());
  const deadLetter = (key: string, offset: string) =>
    producer.send({ topic: deadLetterTopic, messages: [{ key, value: '{}', headers: { 'x-dead-letter-reason': 'answered 400', 'x-original-topic': topic, 'x-original-partition': '0', 'x-original-offset': offset } }] });

  await deadLetter('early', '0');
  assert.match(deadLetters(topic, 'replay'), /replayed 1 dead letter from/);
  await deadLetter('late', '5');
  await deadLetter('later', '6');
  assert.match(deadLetters(topic, 'replay', '--id', '0:2'), /replayed 0:2 \(key later\)/);
  assert.deepEqual(listed(topic).map((d) => [d.key, d.replayed]), [['early', true], ['late', false], ['later', true]]);
  const rest = deadLetters(topic, 'replay');
  assert.match(rest, /replayed 0:1 \(key late\) to [\s\S]*replayed 1 dead letter from/);
  assert.doesNotMatch(rest, /key later/);
  assert.ok(listed(topic).every((d) => d.replayed));

  const unknown = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/dead-letters.ts', 'replay', '--id', '0:99'], { env: { ...process.env, BOOKING_TOPIC: topic }, encoding: 'utf8', timeout: 90_000 });
  assert.equal(unknown.status, 1);
  assert.match(unknown.stderr, /no dead letter 0:99 in .*; nothing was replayed/);
  assert.equal((await admin.fetchTopicOffsets(topic))[0]!.high, '3', 'only the three replays reached the topic');

  const noBrokers = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/dead-letters.ts', 'list'], { env: { ...process.env, KAFKA_BROKERS: '' }, encoding: 'utf8', timeout: 30_000 });
  assert.equal(noBrokers.status, 1);
  assert.match(noBrokers.stderr, /KAFKA_BROKERS is not set/);
});
