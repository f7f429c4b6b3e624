import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import book from '../functions/book/index.js';
import { startRelay } from '../relay/relay.js';
import { directSink, kafkaSink } from '../relay/sinks.js';
import { listenForOutbox } from '../relay/wakeup.js';
import consumeOrder from '../functions/consume-order/index.js';
import { pool } from '../shared/db.js';
import { createKafka } from '../shared/kafka.js';
import { topics } from '../shared/topics.js';
import { createCustomer, createEvent, eventually, kafkaOrSkip, metricValue, serve, useTestIssuer, type TestIssuer } from '../shared/test-support/index.js';
import { startTrigger } from './trigger.js';

// The whole flow on real parts: book -> outbox -> (NOTIFY) relay -> Kafka -> trigger
// -> consume-order -> Postgres, and the same without Kafka.

async function bookingStates(eventId: number) {
  const { rows } = await pool.query<{ status: string; orders: number }>(
    `SELECT b.status, (SELECT count(*)::int FROM orders o WHERE o.booking_id = b.booking_id) AS orders
       FROM bookings b WHERE b.event_id = $1`,
    [eventId],
  );
  return rows;
}

let issuer: TestIssuer;
before(async () => (issuer = await useTestIssuer()));

const post = async (url: string, body: { userId: number; eventId: number; ticketCount: number }) =>
  fetch(`${url}/api/v1/booking`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(await issuer.asCustomer(body.userId)) },
    body: JSON.stringify(body),
  });

test('through Kafka: concurrent bookings sell exactly the capacity, and every accepted one becomes exactly one order', async (t) => {
  const brokers = kafkaOrSkip(t);
  if (!brokers) return;
  const orders = await serve(consumeOrder);
  const booking = await serve(book, { maxInflight: 1000 });
  t.after(() => booking.stop());
  t.after(() => orders.stop());
  // No sweep within the test's time: only the outbox's NOTIFY at each commit wakes the relay.
  const relay = startRelay(await kafkaSink(brokers), { sweepMs: 3_600_000 });
  const wakeup = listenForOutbox(() => relay.nudge());
  t.after(async () => {
    await wakeup.stop();
    await relay.stop();
  });
  const trigger = await startTrigger({
    brokers,
    topic: topics.booking,
    groupId: `flow-${process.pid}-${Date.now()}`,
    deadLetterTopic: topics.bookingDeadLetter,
    target: orders.url,
    token: issuer.deliverer,
    retryDelayMs: 50,
  });
  t.after(() => trigger.stop());

  const { eventId } = await createEvent({ capacity: 20, ticketPrice: '9.95' });
  const customers = await Promise.all(Array.from({ length: 8 }, () => createCustomer()));
  const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => post(booking.url, { userId: customers[i % 8]!, eventId, ticketCount: 1 })));
  assert.equal(answers.filter((a) => a.status === 201).length, 20);
  assert.equal(answers.filter((a) => a.status === 409).length, 180);

  const states = await eventually('every accepted booking to be confirmed', async () => {
    const rows = await bookingStates(eventId);
    return rows.every((r) => r.status === 'CONFIRMED') ? rows : undefined;
  });
  assert.equal(states.length, 20);
  assert.ok(states.every((r) => r.orders === 1), 'exactly one order per booking');

  // Kafka delivers at least once: the same message again changes nothing.
  const { rows } = await pool.query<{ booking_id: string; payload: string }>(
    'SELECT o.message_key AS booking_id, o.payload::text AS payload FROM outbox o JOIN bookings b ON b.booking_id::text = o.message_key WHERE b.event_id = $1 LIMIT 1',
    [eventId],
  );
  const producer = createKafka('flow-test', brokers).producer();
  await producer.connect();
  await producer.send({ topic: topics.booking, messages: [{ key: rows[0]!.booking_id, value: rows[0]!.payload }] });
  await producer.disconnect();
  await eventually('the redelivery to be ignored as a duplicate', async () => {
    const metrics = await (await fetch(`${orders.url}/metrics`)).text();
    return (metricValue(metrics, 'boxoffice_orders_total', { outcome: 'duplicate' }) ?? 0) >= 1 ? true : undefined;
  });
  const { rows: count } = await pool.query<{ orders: number }>('SELECT count(*)::int AS orders FROM orders WHERE event_id = $1', [eventId]);
  assert.equal(count[0]!.orders, 20);
  const { rows: left } = await pool.query<{ left_capacity: number }>('SELECT left_capacity FROM events WHERE event_id = $1', [eventId]);
  assert.equal(left[0]!.left_capacity, 0);
});

test('without Kafka: the outbox goes straight to consume-order and the booking is confirmed', async (t) => {
  const orders = await serve(consumeOrder);
  const booking = await serve(book);
  t.after(() => booking.stop());
  t.after(() => orders.stop());
  const { eventId } = await createEvent({ capacity: 5 });
  const userId = await createCustomer();

  assert.equal((await post(booking.url, { userId, eventId, ticketCount: 2 })).status, 201);
  const relay = startRelay(directSink(orders.url, issuer.deliverer));
  await relay.flush();
  await relay.stop();

  assert.deepEqual(await bookingStates(eventId), [{ status: 'CONFIRMED', orders: 1 }]);
});
