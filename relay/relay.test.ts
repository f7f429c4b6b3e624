import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import { pool } from '../shared/db.js';
import { createKafka } from '../shared/kafka.js';
import { eventually, kafkaOrSkip } from '../shared/test-support/index.js';
import { startRelay, type OutboxMessage, type OutboxSink } from './relay.js';
import { kafkaSink } from './sinks.js';

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

/** A sink that records what it is given, after an optional pause. */
function recordingSink(sent: OutboxMessage[], pauseMs = 0): OutboxSink {
  return {
    name: 'recording',
    async send(messages) {
      if (pauseMs) await new Promise((resolve) => setTimeout(resolve, pauseMs));
      sent.push(...messages);
    },
    close: async () => undefined,
  };
}

test('while a relay sends, it holds no transaction, no row lock and no pooled connection', async () => {
  const key = await outboxRow('relay-test');
  let release!: () => void;
  const sending = new Promise<void>((resolve) => (release = resolve));
  let started!: () => void;
  const sendStarted = new Promise<void>((resolve) => (started = resolve));
  const relay = startRelay(
    {
      name: 'slow',
      async send() {
        started();
        await sending;
      },
      close: async () => undefined,
    },
    { sweepMs: 3_600_000 },
  );
  relay.nudge();
  await sendStarted;
  const { rows } = await pool.query<{ open: number }>(
    `SELECT count(*)::int AS open FROM pg_stat_activity
      WHERE datname = current_database() AND state LIKE 'idle in transaction%'`,
  );
  assert.equal(rows[0]!.open, 0, 'no transaction stays open across the send');
  assert.equal(pool.idleCount, pool.totalCount, 'every pooled connection is back in the pool');
  const locked = await pool.query('SELECT 1 FROM outbox WHERE message_key = $1 FOR UPDATE NOWAIT', [key]);
  assert.equal(locked.rowCount, 1, 'the row is not locked while it is sent');
  release();
  await relay.flush();
  await relay.stop();
  assert.notEqual(await publishedAt(key), null);
});

test('any number of relays share the outbox: every row is sent exactly once', async () => {
  const keys = await Promise.all(Array.from({ length: 300 }, () => outboxRow('relay-test')));
  const sent: OutboxMessage[] = [];
  const relays = [0, 1, 2].map(() => startRelay(recordingSink(sent, 5), { sweepMs: 3_600_000, batch: 7 }));
  await Promise.all(relays.map((relay) => relay.flush()));
  await Promise.all(relays.map((relay) => relay.stop()));
  const mine = new Set(keys);
  const counts = new Map<string, number>();
  for (const m of sent.filter((m) => mine.has(m.key))) counts.set(m.key, (counts.get(m.key) ?? 0) + 1);
  assert.equal(counts.size, keys.length, 'every row was sent');
  assert.deepEqual([...counts.values()].filter((n) => n !== 1), [], 'no row was sent twice');
  for (const key of keys.slice(0, 5)) assert.notEqual(await publishedAt(key), null);
});

test('a row claimed by a relay that died is sent by another once the lease runs out', async () => {
  const key = await outboxRow('relay-test');
  // What a relay killed mid-send leaves behind: a claim nobody will finish.
  await pool.query("UPDATE outbox SET claimed_until = now() + interval '1 second' WHERE message_key = $1", [key]);
  const sent: OutboxMessage[] = [];
  const relay = startRelay(recordingSink(sent), { sweepMs: 100 });
  try {
    await relay.flush();
    assert.equal(sent.filter((m) => m.key === key).length, 0, 'a live lease keeps other relays off the row');
    await eventually('the row to be sent after its lease', async () => (await publishedAt(key)) ?? undefined);
    assert.equal(sent.filter((m) => m.key === key).length, 1);
  } finally {
    await relay.stop();
  }
});
