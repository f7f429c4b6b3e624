import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import book from '../functions/book/index.js';
import { createCustomer, createEvent, serve, useTestIssuer, type RunningFunction, type TestIssuer } from './test-support/index.js';

const MAX_INFLIGHT = 256;
const SLOW_CLIENTS = 300;

let fn: RunningFunction;
let issuer: TestIssuer;
before(async () => {
  issuer = await useTestIssuer();
  // A whole-request deadline long enough that a booking is answered well within it.
  fn = await serve(book, { maxInflight: MAX_INFLIGHT, requestHeadersTimeoutMs: 2_000, requestTimeoutMs: 8_000 });
});
after(async () => {
  await fn.stop();
  await issuer.stop();
});

interface SlowClient {
  /** Resolves once the server has taken the request (its 100 Continue). */
  taken: Promise<void>;
  /** What the server answered, once it closed the connection. */
  answer: Promise<string>;
  settled(): boolean;
}

/**
 * A booking whose body comes one byte every half second and never ends. It
 * asks for 100 Continue, so the test knows when the server has taken it.
 */
function slowBooking(url: string): SlowClient {
  const socket = connect(Number(new URL(url).port), '127.0.0.1');
  let received = '';
  let settled = false;
  let drip: NodeJS.Timeout | undefined;
  const taken = new Promise<void>((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString();
      const interim = /^HTTP\/1\.1 100 [^\r]*\r\n\r\n/.exec(received);
      if (interim && drip === undefined) {
        received = received.slice(interim[0].length);
        drip = setInterval(() => socket.write('{'), 500);
        resolve();
      }
      // An answer instead of 100 Continue also means the server has taken it.
      if (!interim && received.startsWith('HTTP/1.1 ')) resolve();
    });
  });
  socket.on('error', () => undefined);
  socket.write(
    'POST /api/v1/booking HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
      'Content-Length: 1000\r\nExpect: 100-continue\r\n\r\n',
  );
  const answer = once(socket, 'close').then(() => {
    settled = true;
    clearInterval(drip);
    return received;
  });
  return { taken, answer, settled: () => settled };
}

test(`${SLOW_CLIENTS} slow-body bookings hold no slot: a booking made meanwhile is answered, and the slow ones get 408`, { timeout: 60_000 }, async () => {
  const userId = await createCustomer();
  const { eventId } = await createEvent({ capacity: 10 });
  const booking = async () =>
    fetch(`${fn.url}/api/v1/booking`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(await issuer.asCustomer(userId)) },
      body: JSON.stringify({ userId, eventId, ticketCount: 1 }),
    });
  // The first booking fetches the issuer's keys and opens database connections.
  assert.equal((await booking()).status, 201);

  const slow = Array.from({ length: SLOW_CLIENTS }, () => slowBooking(fn.url));
  await Promise.all(slow.map((client) => client.taken));

  const res = await booking();
  assert.ok(res.status === 201 || res.status === 409, `a booking among slow clients got ${res.status}: ${await res.text()}`);
  // Answered while every slow client is still connected and unanswered, before its deadline.
  assert.equal(slow.filter((client) => client.settled()).length, 0, 'slow clients answered before the booking');

  const answers = await Promise.all(slow.map((client) => client.answer));
  const statuses = answers.map((answer) => /^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? `no answer: ${JSON.stringify(answer)}`);
  assert.deepEqual(new Set(statuses), new Set(['408']));
  for (const answer of answers) {
    assert.match(answer, /\r\ncontent-type: application\/problem\+json\r\n/i);
    assert.match(answer, /"type":"urn:boxoffice:problem:request-timeout"/);
  }
});
