import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import { pool } from '../shared/db.js';
import { createKafka } from '../shared/kafka.js';
import { eventually, kafkaOrSkip } from '../shared/test-support/index.js';
import { kafkaSink, startRelay, type OutboxMessage, type OutboxSink } from './relay.js';

after(() => pool.end());

/** An outbox row as book writes one (the relay does not look inside). */
async function outboxRow(topic: string): Promise<string> {
  const key = randomUUID();
  await pool.query('INSERT INTO outbox (topic, message_key, payload) VALUES ($1, $2, $3)', [topic, key, `{"bookingId":"${key}","totalPrice":1.10}`]);
  return key;
}

async function publishedAt(key: string): Promise<Date | null> {
  const { rows } = await pool.query<{ published_at: Date | null }>('SELECT published_at FROM outbox WHERE message_key = $1', [key]);
  return rows[0]!.published_at;
}

test('a publish that fails leaves the row in the outbox, and the next sweep sends it', async () => {
  const key = await outboxRow('relay-test');
  let kafkaIsDown = true;
  const sent: OutboxMessage[] = [];
  const sink: OutboxSink = {
    name: 'flaky',
    async send(messages) {
      if (kafkaIsDown) throw new Error('broker unreachable');
      sent.push(...messages);
    },
    close: async () => undefined,
  };
  const relay = startRelay(sink, { sweepMs: 50 });
  try {
    await relay.flush();
    assert.equal(await publishedAt(key), null, 'a failed send publishes nothing');
    assert.equal(sent.length, 0);

    kafkaIsDown = false;
    await eventually('the sweep to publish the row', async () => (await publishedAt(key)) ?? undefined);
    const mine = sent.filter((m) => m.key === key);
    assert.equal(mine.length, 1, 'sent exactly once');
    assert.equal(mine[0]!.payload, `{"bookingId":"${key}","totalPrice":1.10}`, 'sent byte for byte');
  } finally {
    await relay.stop();
  }
});

test('rows go to the real Kafka topic, keyed by booking id, once', async (t) => {
  const brokers = kafkaOrSkip(t);
  if (!brokers) return;
  const topic = `relay-test-${randomUUID().slice(0, 8)}`;
  const keys = [await outboxRow(topic), await outboxRow(topic)];

  const relay = startRelay(await kafkaSink(brokers));
  await relay.flush();
  await relay.stop();
  for (const key of keys) assert.notEqual(await publishedAt(key), null);

  const seen: { key: string; value: string }[] = [];
  const consumer = createKafka('relay-test', brokers).consumer({ groupId: `${topic}-reader` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({ eachMessage: async ({ message }) => void seen.push({ key: String(message.key), value: String(message.value) }) });
  await eventually('both messages on the topic', async () => (seen.length >= 2 ? seen : undefined));
  await consumer.disconnect();
  assert.deepEqual(seen.map((m) => m.key).sort(), [...keys].sort());
  assert.equal(seen[0]!.value, `{"bookingId":"${seen[0]!.key}","totalPrice":1.10}`);
});
