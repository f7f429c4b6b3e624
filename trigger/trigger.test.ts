import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { createKafka } from '../shared/kafka.js';
import { triggerLag } from '../shared/metrics.js';
import { eventually, kafkaOrSkip } from '../shared/test-support/index.js';
import { startTrigger } from './trigger.js';

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

test('the trigger delivers CloudEvents, retries, dead-letters what keeps failing, and commits past it', async (t) => {
  const brokers = kafkaOrSkip(t);
  if (!brokers) return;
  const run = randomUUID().slice(0, 8);
  const topic = `trigger-test-${run}`;
  const deadLetterTopic = `${topic}.dead-letter`;
  const groupId = `trigger-test-${run}`;

  // The function at the trigger's edge: answers by message key.
  const received: Received[] = [];
  const calls = new Map<string, number>();
  const target = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      const key = String(req.headers['ce-subject']);
      calls.set(key, (calls.get(key) ?? 0) + 1);
      received.push({ headers: req.headers, body });
      const status = key === 'poison' ? 400 : key === 'broken' ? 500 : key === 'flaky' && calls.get(key)! < 3 ? 503 : 200;
      res.statusCode = status;
      res.end();
    });
  });
  target.listen(0, '127.0.0.1');
  await once(target, 'listening');
  t.after(() => target.close());

  const kafka = createKafka('trigger-test', brokers);
  const admin = kafka.admin();
  await admin.connect();
  t.after(() => admin.disconnect());
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }, { topic: deadLetterTopic, numPartitions: 1 }], waitForLeaders: true });

  const producer = kafka.producer();
  await producer.connect();
  t.after(() => producer.disconnect());
  const keys = ['poison', 'broken', 'first', 'flaky', 'last'];
  await producer.send({ topic, messages: keys.map((key) => ({ key, value: JSON.stringify({ key }) })) });

  const trigger = await startTrigger({ brokers, topic, groupId, deadLetterTopic, target: `http://127.0.0.1:${(target.address() as AddressInfo).port}`, maxAttempts: 3, retryDelayMs: 20, lagEveryMs: 100 });
  t.after(() => trigger.stop());

  const committed = await eventually('offsets committed past every message', async () => {
    const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic] });
    return offsets?.partitions[0]?.offset === '5' ? offsets : undefined;
  });
  assert.ok(committed);
  await eventually('the lag metric to reach zero', async () => {
    const lag = (await triggerLag.get()).values.find((v) => v.labels.topic === topic);
    return lag?.value === 0 ? lag : undefined;
  });

  assert.equal(calls.get('poison'), 1, 'a 4xx is never retried');
  assert.equal(calls.get('broken'), 3, 'a 5xx is retried up to maxAttempts');
  assert.equal(calls.get('flaky'), 3, 'a message that recovers is delivered');
  assert.equal(calls.get('first'), 1);
  assert.equal(calls.get('last'), 1, 'messages after the failures still get through');

  const first = received.find((r) => r.headers['ce-subject'] === 'first')!;
  assert.equal(first.headers['ce-specversion'], '1.0');
  assert.equal(first.headers['ce-type'], 'dev.knative.kafka.event');
  assert.equal(first.headers['ce-id'], 'partition:0/offset:2');
  assert.equal(first.headers['content-type'], 'application/json');
  assert.equal(first.body, '{"key":"first"}');

  const dead: { key: string; reason: string; offset: string }[] = [];
  const consumer = kafka.consumer({ groupId: `${groupId}-reader` });
  await consumer.connect();
  await consumer.subscribe({ topic: deadLetterTopic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      dead.push({ key: String(message.key), reason: String(message.headers?.['x-dead-letter-reason']), offset: String(message.headers?.['x-original-offset']) });
    },
  });
  await eventually('both dead letters', async () => (dead.length >= 2 ? dead : undefined));
  await consumer.disconnect();
  assert.deepEqual(dead.map((d) => [d.key, d.offset]), [['poison', '0'], ['broken', '1']]);
  assert.match(dead[0]!.reason, /answered 400/);
  assert.match(dead[1]!.reason, /answered 500/);
});
