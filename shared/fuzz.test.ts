import fc from 'fast-check';
import assert from 'node:assert/strict';
import { Agent, request, type IncomingHttpHeaders } from 'node:http';
import { after, before, test } from 'node:test';
import { signingKey } from '../scripts/dev-issuer.js';
import { loadDefinitions } from '../scripts/functions.js';
import { integerSetting } from './config.js';
import { pool } from './db.js';
import { createCustomer, createEvent, serve, useTestIssuer, type RunningFunction } from './test-support/index.js';

// Property-based fuzz of every function, each served in process by the lean
// host as `npm start` serves it, on the real test Postgres: arbitrary
// methods, paths, ids, query strings, headers and bodies. Whatever comes in,
// the answer is 2xx, 4xx or 503, never another 5xx; every error is
// problem+json; every answer has an X-Request-Id; a refused request writes
// nothing. A fixed seed keeps `npm test` repeatable; FUZZ_RUNS and FUZZ_SEED
// make a longer or another run (`FUZZ_RUNS=20000 npm run fuzz`).
const runs = integerSetting('FUZZ_RUNS', 1000, 1);
const seed = integerSetting('FUZZ_SEED', 20_250_610, 0);

interface Target {
  name: string;
  port: number;
  method: string;
  /** The route's pattern, e.g. `/api/v1/inventory/event/:eventId`. */
  path: string;
}

interface FuzzRequest {
  target: Target;
  method: string;
  /** Path and query, as sent. */
  path: string;
  headers: Record<string, string>;
  body?: string;
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

const running: RunningFunction[] = [];
const targets: Target[] = [];
const agent = new Agent({ keepAlive: true });
/** The rows this test owns: every write a fuzzed request can make names one of these events. */
const own = { customerId: 0, otherCustomerId: 0, eventId: 0, otherEventId: 0, venueId: 0, bookingId: '' };
const auth: Record<'customer' | 'otherCustomer' | 'admin' | 'deliverer' | 'forged' | 'expired' | 'noRole', string> = {
  customer: '',
  otherCustomer: '',
  admin: '',
  deliverer: '',
  forged: '',
  expired: '',
  noRole: '',
};

before(async () => {
  const issuer = await useTestIssuer();
  own.customerId = await createCustomer();
  own.otherCustomerId = await createCustomer();
  const event = await createEvent({ capacity: 1000, ticketPrice: '12.50' });
  own.eventId = event.eventId;
  own.venueId = event.venueId;
  own.otherEventId = (await createEvent({ capacity: 3, venueId: event.venueId })).eventId;
  auth.customer = (await issuer.asCustomer(own.customerId)).authorization!;
  auth.otherCustomer = (await issuer.asCustomer(own.otherCustomerId)).authorization!;
  auth.admin = (await issuer.asAdmin()).authorization!;
  auth.deliverer = (await issuer.asDeliverer()).authorization!;
  auth.forged = `Bearer ${await issuer.sign({ roles: ['admin'] }, await signingKey())}`;
  auth.expired = `Bearer ${await issuer.sign({ roles: ['admin'], expiresIn: -60 })}`;
  auth.noRole = `Bearer ${await issuer.sign({ customerId: own.customerId, roles: [] })}`;

  for (const definition of await loadDefinitions()) {
    const fn = await serve(definition, { server: 'lean' });
    running.push(fn);
    const route = definition.route ?? { method: 'POST', path: '/' };
    targets.push({ name: definition.name, port: Number(new URL(fn.url).port), ...route });
  }

  // A booking of this test's own, so that get-booking and consume-order can find one.
  const booked = await send({
    target: targetOf('book'),
    method: 'POST',
    path: '/api/v1/booking',
    headers: { authorization: auth.customer, 'content-type': 'application/json' },
    body: JSON.stringify({ userId: own.customerId, eventId: own.eventId, ticketCount: 1 }),
  });
  assert.equal(booked.status, 201, booked.body);
  own.bookingId = (JSON.parse(booked.body) as { bookingId: string }).bookingId;
});

after(async () => {
  agent.destroy();
  await Promise.all(running.map((fn) => fn.stop()));
});

function targetOf(name: string): Target {
  const target = targets.find((t) => t.name === name);
  assert.ok(target, `no function ${name}`);
  return target;
}

function send(req: FuzzRequest): Promise<Answer> {
  // Node's client sends a GET's body without a length: framed here, as a real client would.
  const headers = req.body === undefined ? req.headers : { ...req.headers, 'content-length': String(Buffer.byteLength(req.body)) };
  return new Promise((resolve, reject) => {
    const outgoing = request({ host: '127.0.0.1', port: req.target.port, method: req.method, path: req.path, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    outgoing.on('error', reject);
    outgoing.setTimeout(10_000, () => outgoing.destroy(new Error(`no answer to ${req.method} ${req.path} within 10 s`)));
    outgoing.end(req.body);
  });
}

/** What a request may have written: bookings (by status), their outbox rows, orders, and the tickets left, of this test's events. */
async function written(): Promise<unknown> {
  const { rows } = await pool.query(
    `SELECT (SELECT json_object_agg(status, n) FROM (SELECT status, count(*) AS n FROM bookings WHERE event_id = ANY($1) GROUP BY status) s) AS bookings,
            (SELECT count(*)::int FROM outbox o JOIN bookings b ON b.booking_id::text = o.message_key WHERE b.event_id = ANY($1)) AS outbox,
            (SELECT count(*)::int FROM orders WHERE event_id = ANY($1)) AS orders,
            (SELECT sum(left_capacity)::int FROM events WHERE event_id = ANY($1)) AS left`,
    [[own.eventId, own.otherEventId]],
  );
  return rows[0];
}

interface Problem {
  type: string;
  status: number;
  invalidParams?: { name: string }[];
}

/** Sends the request and checks what every answer must be; the problem, if it was refused. */
async function exchange(req: FuzzRequest): Promise<{ answer: Answer; problem?: Problem }> {
  const before = await written();
  const answer = await send(req);
  const said = `${req.method} ${req.target.name} ${req.path} -> ${answer.status} ${answer.body.slice(0, 300)}`;
  assert.ok((answer.status >= 200 && answer.status < 300) || (answer.status >= 400 && answer.status < 500) || answer.status === 503, said);
  // The platform's probes answer before a request is one of the API's: they alone may go without a request id.
  const probe = /^\/(?:metrics|_\/health|_\/ready)$/.test(req.path.split('?')[0]!);
  if (!probe || answer.status >= 400) assert.ok(answer.headers['x-request-id'], `no X-Request-Id: ${said}`);
  if (answer.status < 400) return { answer };
  assert.equal(answer.headers['content-type'], 'application/problem+json', said);
  assert.deepEqual(await written(), before, `a refused request wrote: ${said}`);
  if (req.method === 'HEAD') return { answer };
  const problem = JSON.parse(answer.body) as Problem;
  assert.equal(problem.status, answer.status, said);
  assert.match(problem.type, /^urn:boxoffice:problem:[a-z-]+$/, said);
  return { answer, problem };
}

// --- What requests are made of ---

const printable = fc.string({ unit: 'grapheme-ascii', maxLength: 40 });
const urlChar = fc.constantFrom(...'abcxyzAZ0189-._~!$&\'()*+,;=:@%/#[]{}|\\^`"<>'.split(''));
/** A numeral too long for any id: up to the 5,000 digits a hostile client sends. */
const longNumeral = fc.integer({ min: 16, max: 5000 }).chain((length) => fc.string({ unit: fc.constantFrom(...'0123456789'.split('')), minLength: length, maxLength: length }));

/** Whether a text is an integer written plainly, in the range a number keeps exactly. */
const plainInteger = (text: string) => /^(?:0|-?[1-9]\d*)$/.test(text) && Number.isSafeInteger(Number(text));

/** Numbers as text, written every way a client might, sensible or hostile. */
const numeral = (): fc.Arbitrary<string> =>
  fc.oneof(
    fc.constantFrom(own.customerId, own.otherCustomerId, own.eventId, own.otherEventId, own.venueId).map(String),
    fc.integer({ min: -5, max: 1000 }).map(String),
    fc.integer({ min: 2_000_000_000, max: 2 ** 32 }).map(String),
    fc.constantFrom(own.customerId, own.eventId).chain((id) => fc.constantFrom(`${id}.0`, `${id}e0`, `${id - 1}.99999999999999999999`, `${id}0e-1`, `0${id}`, `+${id}`)),
    fc.constantFrom('Infinity', '-Infinity', 'NaN', '1e400', '-1e400', '1E2', '0x10', '0b1', '0o7', '007', '00', '-0', '1.0', '0.9999999999999999999', '1_000', ' 1', '1 ', '', '١', '"1"', 'null', 'true', '[1]'),
    longNumeral,
    fc.double().map(String),
    printable,
  );

/** Numerals for an id in a body: never another test's rows, so that a fuzzed booking writes only on this test's events. */
const bodyId = () =>
  numeral().filter((text) => {
    const value = Number(text.trim());
    const ours = [own.customerId, own.otherCustomerId, own.eventId, own.otherEventId].includes(value);
    return ours || !(Number.isInteger(value) && value >= 1 && value < 2_000_000_000);
  });

const uuidText = () =>
  fc.oneof(
    fc.constant(own.bookingId),
    fc.uuid(),
    fc.uuid().map((id) => `urn:uuid:${id}`),
    fc.uuid().map((id) => id.toUpperCase()),
    fc.uuid().map((id) => id.slice(1)),
    printable,
  );

/** A JSON object written member by member, each value as the raw text given. */
const rawObject = (members: Record<string, fc.Arbitrary<string>>) =>
  fc
    .record(members, { requiredKeys: [] })
    .chain((fields) => fc.shuffledSubarray(Object.entries(fields), { minLength: Object.keys(fields).length }))
    .map((entries) => `{${entries.map(([key, value]) => `${JSON.stringify(key)}:${value}`).join(',')}}`);

const bookingBody = () =>
  rawObject({
    userId: bodyId(),
    eventId: bodyId(),
    ticketCount: numeral(),
    bookingId: uuidText().map((id) => JSON.stringify(id)),
    totalPrice: fc.constantFrom('12.5', '12.50', '0', '-1', '1e400', '"12.50"'),
    extra: fc.json({ maxDepth: 2 }),
  });

const body = () =>
  fc.oneof(
    bookingBody(),
    bookingBody().map((data) => `{"specversion":"1.0","id":"fuzz","type":"t","source":"/fuzz","data":${data}}`),
    fc.json({ maxDepth: 3 }),
    printable,
  );

const pathSegment = fc.oneof(
  fc.constantFrom('api', 'v1', 'inventory', 'event', 'events', 'venue', 'booking', 'orders', '', '.', '..', '%', '%zz', '%00', '%2F', '%E0%A4%A', '_', 'metrics'),
  fc.string({ unit: urlChar, maxLength: 12 }),
  fc.string({ unit: 'grapheme', maxLength: 8 }).map(encodeURIComponent),
);

/** The target's own path with arbitrary parameters, or any path at all. */
const path = (target: Target) =>
  fc.oneof(
    { weight: 3, arbitrary: routedPath(target) },
    { weight: 1, arbitrary: fc.array(pathSegment, { maxLength: 6 }).map((segments) => `/${segments.join('/')}`) },
    { weight: 1, arbitrary: fc.tuple(routedPath(target), pathSegment).map(([routed, extra]) => `${routed}/${extra}`) },
  );

function routedPath(target: Target): fc.Arbitrary<string> {
  const names = [...target.path.matchAll(/:(\w+)/g)].map((match) => match[1]!);
  const value = fc.oneof(numeral(), uuidText()).filter((text) => text !== '').map(encodeURIComponent);
  return fc.array(value, { minLength: names.length, maxLength: names.length }).map((values) => {
    let at = 0;
    return target.path.replace(/:\w+/g, () => values[at++]!);
  });
}

const query = () =>
  fc.oneof(
    fc.constant(''),
    fc
      .array(fc.tuple(fc.oneof(fc.constantFrom('limit', 'offset', 'userId', 'mode'), fc.string({ maxLength: 6 })), fc.oneof(numeral(), printable)), { maxLength: 4 })
      .map((pairs) => `?${pairs.map(([key, value]) => `${encodeURIComponent(key)}=${encodeURIComponent(value)}`).join('&')}`),
    fc.string({ unit: urlChar, maxLength: 20 }).map((text) => `?${text}`),
  );

const headers = () =>
  fc
    .record(
      {
        authorization: fc.oneof(fc.constantFrom(...Object.values(auth)), fc.constantFrom('Bearer', 'Bearer ', 'Basic YTpi', 'bearer x.y.z'), printable.map((text) => `Bearer ${text}`), printable),
        'content-type': fc.oneof(
          fc.constantFrom('application/json', 'application/json; charset=utf-8', 'application/cloudevents+json', 'application/problem+json', 'text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-16', ''),
          printable,
        ),
        'x-request-id': printable,
        'idempotency-key': printable,
        'content-encoding': fc.constantFrom('gzip', 'identity', 'br', 'x'),
        accept: fc.constantFrom('application/json', 'text/html', '*/*', ''),
        'ce-id': printable,
        'ce-type': fc.constantFrom('dev.knative.kafka.event', ''),
        'ce-source': fc.constantFrom('/fuzz', ''),
        'ce-specversion': fc.constantFrom('1.0', '0.3', '2', ''),
        'x-topic': fc.constantFrom('booking', ''),
        'x-kafka-offset': printable,
        'x-fuzz': printable,
      },
      { requiredKeys: [] },
    )
    .map((given) => Object.fromEntries(Object.entries(given).map(([name, value]) => [name, value.trim()])));

const anyRequest = () =>
  fc.constantFrom(...targets).chain((target) =>
    fc.record({
      target: fc.constant(target),
      method: fc.oneof({ weight: 4, arbitrary: fc.constant(target.method) }, fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS')),
      path: fc.tuple(path(target), query()).map(([p, q]) => p + q),
      headers: headers(),
      body: fc.option(body(), { nil: undefined }),
    }),
  );

const check = { seed, numRuns: runs };

test('any request to any function is answered 2xx, 4xx or 503 (never another 5xx), errors as problem+json with a request id, and a refused one writes nothing', async () => {
  await fc.assert(
    fc.asyncProperty(anyRequest(), async (req) => {
      await exchange(req);
    }),
    check,
  );
});

/**
 * A request with one number in it, written as `text`, the field that names
 * it, and how the text reads where it stands: a plain integer (JSON allows
 * spaces around it), some other single value, or no value at all (`007`,
 * `Infinity` in JSON; or text that writes more members).
 */
interface NumberCase {
  field: string;
  reads: 'plain' | 'other' | 'no value';
  request: FuzzRequest;
}

function readsInUrl(text: string): NumberCase['reads'] {
  return plainInteger(text) ? 'plain' : 'other';
}

function readsInJson(text: string): NumberCase['reads'] {
  if (plainInteger(text.trim())) return 'plain';
  try {
    JSON.parse(text);
    return 'other';
  } catch {
    return 'no value';
  }
}

const numberCase = (): fc.Arbitrary<NumberCase> => {
  const get = (name: string, path: string, field: string, text: string, headers: Record<string, string> = {}): NumberCase => ({
    field,
    reads: readsInUrl(text),
    request: { target: targetOf(name), method: 'GET', path, headers },
  });
  const post = (name: string, field: string, text: string, members: Record<string, string>, headers: Record<string, string>): NumberCase => {
    const json = `{${Object.entries({ ...members, [field.split('/')[1]!]: text }).map(([key, value]) => `"${key}":${value}`).join(',')}}`;
    return { field, reads: readsInJson(text), request: { target: targetOf(name), method: 'POST', path: targetOf(name).path, headers, body: json } };
  };
  const admin = { authorization: auth.admin };
  const asJson = { ...admin, 'content-type': 'application/json' };
  const ids = { userId: String(own.customerId), eventId: String(own.eventId), ticketCount: '1' };
  const cloudEvent = { authorization: auth.deliverer, 'content-type': 'application/json', 'ce-id': 'fuzz', 'ce-type': 'dev.knative.kafka.event', 'ce-source': '/fuzz', 'ce-specversion': '1.0' };
  // An empty path segment is another path, not an empty id.
  const inPath = numeral().filter((text) => text !== '');
  return fc.oneof(
    inPath.map((t) => get('get-event', `/api/v1/inventory/event/${encodeURIComponent(t)}`, 'path/eventId', t)),
    inPath.map((t) => get('get-venue', `/api/v1/inventory/venue/${encodeURIComponent(t)}`, 'path/venueId', t)),
    fc.tuple(fc.constantFrom('limit', 'offset'), numeral()).map(([name, t]) => get('list-events', `/api/v1/inventory/events?${name}=${encodeURIComponent(t)}`, `query/${name}`, t)),
    fc.tuple(fc.constantFrom('userId', 'limit', 'offset'), numeral()).map(([name, t]) => get('list-orders', `/api/v1/orders?${name}=${encodeURIComponent(t)}`, `query/${name}`, t, admin)),
    fc.tuple(fc.constantFrom('userId', 'eventId'), bodyId()).map(([name, t]) => post('book', `body/${name}`, t, ids, asJson)),
    numeral().map((t) => post('book', 'body/ticketCount', t, ids, asJson)),
    fc.tuple(fc.constantFrom('userId', 'eventId', 'ticketCount'), bodyId()).map(([name, t]) =>
      post('consume-order', `data/${name}`, t, { ...ids, bookingId: '"00000000-0000-4000-8000-000000000000"' }, cloudEvent),
    ),
  );
};

test('a number not written as a plain integer, in a path, a query or a body, is a 400 naming its field', async () => {
  await fc.assert(
    fc.asyncProperty(numberCase(), async ({ field, reads, request: req }) => {
      const { answer, problem } = await exchange(req);
      const said = `${field} ${req.path} ${req.body ?? ''} -> ${answer.status} ${answer.body.slice(0, 300)}`;
      if (reads === 'plain') return;
      if (reads === 'no value') {
        // Text that is no JSON value is refused as such, before any field is read (unless it wrote more members).
        if (!parses(req.body)) assert.equal(problem?.type, 'urn:boxoffice:problem:malformed-json', said);
        return;
      }
      assert.equal(answer.status, 400, said);
      assert.ok(problem?.invalidParams?.some((p) => p.name === field), `${field} not named: ${said}`);
    }),
    check,
  );
});

function parses(json: string | undefined): boolean {
  try {
    JSON.parse(json ?? '');
    return true;
  } catch {
    return false;
  }
}
