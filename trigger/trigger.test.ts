import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { before, test, type TestContext } from 'node:test';
import { authenticate, DELIVERER_ROLE } from '../shared/auth.js';
import { createKafka, type Kafka } from '../shared/kafka.js';
import { registry, triggerLag } from '../shared/metrics.js';
import { eventually, kafkaOrSkip, metricValue, useTestIssuer, type TestIssuer } from '../shared/test-support/index.js';
import { freePort } from '../scripts/functions.js';
import { startTrigger } from './trigger.js';

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  status: number;
}

/**
 * The function at the trigger's edge: `answer` decides each delivery's status
 * (undefined: never answer), after `delayMs`. It counts the requests it holds
 * at once, in all and per key.
 */
async function target(t: TestContext, answer: (key: string, partition: number) => number | undefined, delayMs = 0) {
  const received: Received[] = [];
  const inFlight = new Map<string, number>();
  const concurrent = { most: 0, mostOfOneKey: 0, now: 0 };
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      const key = String(req.headers['ce-subject']);
      inFlight.set(key, (inFlight.get(key) ?? 0) + 1);
      concurrent.now++;
      concurrent.most = Math.max(concurrent.most, concurrent.now);
      concurrent.mostOfOneKey = Math.max(concurrent.mostOfOneKey, inFlight.get(key)!);
      setTimeout(() => {
        const partition = Number(/^partition:(\d+)\//.exec(String(req.headers['ce-id']))?.[1]);
        const status = answer(key, partition);
        if (status === undefined) return;
        inFlight.set(key, inFlight.get(key)! - 1);
        concurrent.now--;
        received.push({ headers: req.headers, body, status });
        res.statusCode = status;
        res.end();
      }, delayMs);
    });
  };
  let server = createServer(handler).listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const close = async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  };
  t.after(close);
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    concurrent,
    /** 2xx-answered keys of one partition, in the order they were delivered. */
    delivered: (partition: number) => received.filter((r) => r.status < 300 && r.headers['ce-id']?.toString().startsWith(`partition:${partition}/`)).map((r) => String(r.headers['ce-subject'])),
    /** Closes the port: deliveries are refused connections until reopen(). */
    close,
    async reopen() {
      server = createServer(handler).listen(port, '127.0.0.1');
      await once(server, 'listening');
    },
  };
}

async function topicsOfTheirOwn(t: TestContext, kafka: Kafka, partitions: number) {
  const run = randomUUID().slice(0, 8);
  const topic = `trigger-test-${run}`;
  const admin = kafka.admin();
  await admin.connect();
  t.after(() => admin.disconnect());
  await admin.createTopics({ topics: [{ topic, numPartitions: partitions }, { topic: `${topic}.dead-letter`, numPartitions: 1 }], waitForLeaders: true });
  const producer = kafka.producer();
  await producer.connect();
  t.after(() => producer.disconnect());
  return {
    topic,
    deadLetterTopic: `${topic}.dead-letter`,
    groupId: `trigger-test-${run}`,
    admin,
    produce: (partition: number, messages: { key: string; value: string | null }[]) => producer.send({ topic, messages: messages.map((m) => ({ ...m, partition })) }),
    committed: async (groupId: string) => {
      const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic] });
      return Object.fromEntries((offsets?.partitions ?? []).map((p) => [p.partition, p.offset]));
    },
    deadLetterCount: async () => Number((await admin.fetchTopicOffsets(`${topic}.dead-letter`))[0]!.high),
  };
}

const metric = async (name: string, labels: Record<string, string> = {}) => metricValue(await registry.metrics(), name, labels) ?? 0;
const keys = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);
const asMessages = (names: string[]) => names.map((key) => ({ key, value: JSON.stringify({ key }) }));

test('a target that answers 503, then refuses connections, far past the old 5-attempt budget: nothing is dead-lettered, every message arrives in order, and other partitions go on meanwhile', async (t) => {
  const brokers = kafkaOrSkip(t);
  if (!brokers) return;
  const kafka = createKafka('trigger-test', brokers);
  const kafkaTopics = await topicsOfTheirOwn(t, kafka, 2);
  let stuckAnswers = 503;
  const fn = await target(t, (_key, partition) => (partition === 0 ? stuckAnswers : 200));
  const stuck = keys('stuck-', 5);
  const flowing = keys('flowing-', 5);
  await kafkaTopics.produce(0, asMessages(stuck));

  const retried = () => metric('boxoffice_trigger_deliveries_total', { result: 'retried' });
  const retriedBefore = await retried();
  const trigger = await startTrigger({ ...kafkaTopics, brokers, target: fn.url, retryDelayMs: 20, retryMaxMs: 200, lagEveryMs: 100 });
  t.after(() => trigger.stop());

  // Partition 0 is failing already when partition 1's messages arrive: they are fetched, delivered and committed meanwhile.
  await eventually('partition 0 to fail', async () => (fn.received.filter((r) => r.status === 503).length >= 2 ? true : undefined));
  await kafkaTopics.produce(1, asMessages(flowing));
  await eventually('partition 1 delivered while partition 0 fails', async () => ((await kafkaTopics.committed(kafkaTopics.groupId))[1] === '5' ? true : undefined));
  assert.deepEqual(fn.delivered(1), flowing);
  await eventually('the paused partition to show in the metrics', async () => ((await metric('boxoffice_trigger_paused_partitions')) === 1 ? true : undefined));
  await eventually('partition 0 to fail more often than the old budget of 5', async () => (fn.received.filter((r) => r.status === 503).length > 6 ? true : undefined));
  assert.ok(fn.received.filter((r) => r.status === 503).every((r) => r.headers['ce-subject'] === 'stuck-0'), 'nothing past the failing message is attempted');
  assert.ok((await metric('boxoffice_trigger_retry_age_seconds')) > 0);

  // Then the port closes: connections refused, again far past the old budget.
  await fn.close();
  const refusedFrom = await retried();
  await eventually('refused connections to be retried more than 5 times', async () => ((await retried()) - refusedFrom > 6 ? true : undefined));
  assert.equal((await kafkaTopics.committed(kafkaTopics.groupId))[0], '-1', 'nothing is committed past an undelivered message');
  stuckAnswers = 200;
  await fn.reopen();

  await eventually('every offset committed', async () => {
    const committed = await kafkaTopics.committed(kafkaTopics.groupId);
    return committed[0] === '5' && committed[1] === '5' ? true : undefined;
  });
  assert.deepEqual(fn.delivered(0), stuck, 'partition 0 delivered in order, each message once');
  assert.equal(await kafkaTopics.deadLetterCount(), 0, 'no dead letters');
  assert.ok((await retried()) - retriedBefore > 12);
  await eventually('the lag metric to reach zero', async () => {
    const lags = (await triggerLag.get()).values.filter((v) => v.labels.topic === kafkaTopics.topic);
    return lags.length === 2 && lags.every((lag) => lag.value === 0) ? true : undefined;
  });
  assert.equal(await metric('boxoffice_trigger_paused_partitions'), 0);
  assert.equal(await metric('boxoffice_trigger_retry_age_seconds'), 0);
});

test('a message the target refuses with a 400, or that is not JSON, is dead-lettered with its reason and committed past; a timeout or a 503 is retried', async (t) => {
  const brokers = kafkaOrSkip(t);
  if (!brokers) return;
  const kafka = createKafka('trigger-test', brokers);
  const kafkaTopics = await topicsOfTheirOwn(t, kafka, 1);
  const calls = new Map<string, number>();
  const fn = await target(t, (key) => {
    calls.set(key, (calls.get(key) ?? 0) + 1);
    if (key === 'refused') return 400;
    if (key === 'slow' && calls.get(key) === 1) return undefined;
    if (key === 'flaky' && calls.get(key)! < 3) return 503;
    return 200;
  });
  await kafkaTopics.produce(0, [
    { key: 'refused', value: '{"key":"refused"}' },
    { key: 'garbled', value: 'not json {' },
    { key: 'first', value: '{"key":"first"}' },
    { key: 'slow', value: '{"key":"slow"}' },
    { key: 'flaky', value: '{"key":"flaky"}' },
    { key: 'last', value: '{"key":"last"}' },
  ]);
  const trigger = await startTrigger({ ...kafkaTopics, brokers, target: fn.url, retryDelayMs: 20, deliveryTimeoutMs: 500 });
  t.after(() => trigger.stop());

  await eventually('offsets committed past every message', async () => ((await kafkaTopics.committed(kafkaTopics.groupId))[0] === '6' ? true : undefined));
  assert.equal(calls.get('refused'), 1, 'a 400 is never retried');
  assert.equal(calls.get('garbled'), undefined, 'a message that is not JSON is never delivered');
  assert.equal(calls.get('slow'), 2, 'a delivery that timed out is retried');
  assert.equal(calls.get('flaky'), 3, 'a 503 is retried until it passes');
  assert.deepEqual(fn.delivered(0), ['first', 'slow', 'flaky', 'last']);

  const first = fn.received.find((r) => r.headers['ce-subject'] === 'first')!;
  assert.equal(first.headers['ce-specversion'], '1.0');
  assert.equal(first.headers['ce-type'], 'dev.knative.kafka.event');
  assert.equal(first.headers['ce-id'], 'partition:0/offset:2');
  assert.equal(first.headers['content-type'], 'application/json');
  assert.equal(first.body, '{"key":"first"}');

  const dead: { key: string; reason: string; offset: string }[] = [];
  const consumer = kafka.consumer({ groupId: `${kafkaTopics.groupId}-reader` });
  await consumer.connect();
  await consumer.subscribe({ topic: kafkaTopics.deadLetterTopic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      dead.push({ key: String(message.key), reason: String(message.headers?.['x-dead-letter-reason']), offset: String(message.headers?.['x-original-offset']) });
    },
  });
  await eventually('both dead letters', async () => (dead.length >= 2 ? dead : undefined));
  await consumer.disconnect();
  assert.deepEqual(dead.map((d) => [d.key, d.offset]), [['refused', '0'], ['garbled', '1']]);
  assert.match(dead[0]!.reason, /answered 400/);
  assert.match(dead[1]!.reason, /not JSON/);
});

/** trigger/main.ts as its own process, the way its container runs it. */
/** The issuer the trigger processes get their deliverer token from. */
let issuer: TestIssuer;
before(async () => (issuer = await useTestIssuer()));

function runMain(t: TestContext, env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'trigger/main.ts'], { env: { ...process.env, LOG_LEVEL: 'info', ...issuer.delivererEnv, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = { text: '' };
  child.stdout.on('data', (chunk: Buffer) => (output.text += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output.text += chunk.toString()));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, output, exited };
}

async function readiness(port: number): Promise<{ status: number; detail?: string } | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/_/ready`);
    const body = (await res.json()) as { detail?: string };
    return { status: res.status, detail: body.detail };
  } catch {
    return undefined;
  }
}

test('trigger/main.ts: /_/ready waits for the group join and a ready target; a SIGSTOPped member\'s partitions pass to another within the session timeout; SIGTERM leaves the group and exits 0', async (t) => {
  const brokers = kafkaOrSkip(t);
  if (!brokers) return;
  const kafka = createKafka('trigger-test', brokers);
  const kafkaTopics = await topicsOfTheirOwn(t, kafka, 2);
  let targetReady = false;
  const received: string[] = [];
  const authorizations = new Set<string | undefined>();
  const fn = createServer((req, res) => {
    if (req.url === '/_/ready') {
      res.statusCode = targetReady ? 200 : 503;
      return void res.end();
    }
    received.push(String(req.headers['ce-subject']));
    authorizations.add(req.headers.authorization);
    req.resume().on('end', () => res.end());
  }).listen(0, '127.0.0.1');
  await once(fn, 'listening');
  t.after(() => fn.close());
  const env = {
    KAFKA_BROKERS: brokers.join(','),
    CONSUME_ORDER_URL: `http://127.0.0.1:${(fn.address() as AddressInfo).port}`,
    TRIGGER_TOPIC: kafkaTopics.topic,
    TRIGGER_DEAD_LETTER_TOPIC: kafkaTopics.deadLetterTopic,
    TRIGGER_GROUP: kafkaTopics.groupId,
    TRIGGER_SESSION_TIMEOUT_MS: '6000',
  };

  const firstPort = await freePort();
  const first = runMain(t, { ...env, PORT: String(firstPort) });
  const targetDown = await eventually('the first trigger to join while its target is not ready', async () => {
    const answer = await readiness(firstPort);
    return answer?.detail?.includes('/_/ready answered 503') ? answer : undefined;
  });
  assert.equal(targetDown.status, 503);
  targetReady = true;
  await eventually('the first trigger to be ready', async () => ((await readiness(firstPort))?.status === 200 ? true : undefined));

  // A member that stops answering (SIGSTOP, as good as kill -9 to the group) holds the join of the next one.
  first.child.kill('SIGSTOP');
  const secondPort = await freePort();
  const second = runMain(t, { ...env, PORT: String(secondPort) });
  const beforeJoin = await eventually('the second trigger to answer before it joined', async () => {
    const answer = await readiness(secondPort);
    return answer?.detail?.includes('not joined') ? answer : undefined;
  });
  assert.equal(beforeJoin.status, 503);
  await eventually('the second trigger to be ready once the stopped one is out of the group', async () => ((await readiness(secondPort))?.status === 200 ? true : undefined));
  await kafkaTopics.produce(0, asMessages(keys('p0-', 3)));
  await kafkaTopics.produce(1, asMessages(keys('p1-', 3)));
  await eventually('both partitions delivered by the second trigger', async () => (received.length >= 6 ? true : undefined));
  assert.deepEqual([...received].sort(), [...keys('p0-', 3), ...keys('p1-', 3)].sort());
  // Each delivery carries the deliverers' token, fetched once by the client credentials grant.
  assert.equal(authorizations.size, 1);
  assert.deepEqual((await authenticate({ authorization: [...authorizations][0] })).roles, [DELIVERER_ROLE]);
  first.child.kill('SIGKILL');

  second.child.kill('SIGTERM');
  assert.equal(await second.exited, 0, second.output.text);
  const [group] = (await kafkaTopics.admin.describeGroups([kafkaTopics.groupId])).groups;
  assert.equal(group?.members.length, 0, 'the stopped trigger left its group');
});

test('trigger/main.ts refuses a bad setting at start-up: exit 1 with a clear message', async (t) => {
  const brokers = kafkaOrSkip(t);
  if (!brokers) return;
  const good = { KAFKA_BROKERS: brokers.join(','), CONSUME_ORDER_URL: 'http://127.0.0.1:9', TRIGGER_GROUP: `never-${randomUUID()}`, ...issuer.delivererEnv };
  const cases: [Record<string, string>, RegExp][] = [
    [{ KAFKA_BROKERS: '' }, /KAFKA_BROKERS is required/],
    [{ CONSUME_ORDER_URL: 'not a url' }, /CONSUME_ORDER_URL must be an http\(s\) URL/],
    [{ TRIGGER_RETRY_BASE_MS: 'abc' }, /TRIGGER_RETRY_BASE_MS must be an integer >= 1, got "abc"/],
    [{ TRIGGER_RETRY_BASE_MS: '1000', TRIGGER_RETRY_MAX_MS: '10' }, /TRIGGER_RETRY_MAX_MS \(10\) must not be below TRIGGER_RETRY_BASE_MS \(1000\)/],
    [{ TRIGGER_DELIVERY_TIMEOUT_MS: '0' }, /TRIGGER_DELIVERY_TIMEOUT_MS must be an integer >= 1/],
    [{ TRIGGER_SESSION_TIMEOUT_MS: '10s' }, /TRIGGER_SESSION_TIMEOUT_MS must be an integer >= 1000/],
    [{ TRIGGER_CONCURRENCY: '0' }, /TRIGGER_CONCURRENCY must be an integer >= 1/],
    [{ KAFKA_TOPIC_PARTITIONS: '0' }, /KAFKA_TOPIC_PARTITIONS must be an integer >= 1/],
    [{ KAFKA_MIN_INSYNC_REPLICAS: '2' }, /KAFKA_MIN_INSYNC_REPLICAS \(2\) cannot exceed KAFKA_REPLICATION_FACTOR \(1\)/],
    [{ KAFKA_REQUEST_TIMEOUT_MS: 'soon' }, /KAFKA_REQUEST_TIMEOUT_MS must be an integer >= 1000/],
    [{ DELIVERER_CLIENT_SECRET: '' }, /DELIVERER_CLIENT_SECRET \(or DELIVERER_CLIENT_SECRET_FILE\) is required/],
    [{ CONSUME_ORDER_AUTH: 'maybe' }, /CONSUME_ORDER_AUTH must be on or off, got "maybe"/],
  ];
  for (const [bad, message] of cases) {
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'trigger/main.ts'], { env: { ...process.env, ...good, ...bad }, encoding: 'utf8', timeout: 30_000 });
    assert.equal(run.status, 1, `${JSON.stringify(bad)}: ${run.stderr}`);
    assert.match(run.stderr, message);
    assert.match(run.stderr, /^boxoffice trigger: /);
  }
});

test('trigger/main.ts exits 1 when its consumer crashes for good (the broker refuses its session timeout)', async (t) => {
  const brokers = kafkaOrSkip(t);
  if (!brokers) return;
  const kafka = createKafka('trigger-test', brokers);
  const kafkaTopics = await topicsOfTheirOwn(t, kafka, 1);
  // 3 s passes the trigger's own check but is below the broker's group.min.session.timeout.ms (6 s by default).
  const main = runMain(t, {
    KAFKA_BROKERS: brokers.join(','),
    CONSUME_ORDER_URL: 'http://127.0.0.1:9',
    TRIGGER_TOPIC: kafkaTopics.topic,
    TRIGGER_DEAD_LETTER_TOPIC: kafkaTopics.deadLetterTopic,
    TRIGGER_GROUP: kafkaTopics.groupId,
    TRIGGER_SESSION_TIMEOUT_MS: '3000',
    PORT: String(await freePort()),
  });
  assert.equal(await main.exited, 1);
  assert.match(main.output.text, /crashed and will not restart/);
  assert.match(main.output.text, /session timeout is not within the range allowed by the broker/);
});

test('with a slow target, a partition has many deliveries in flight at once, never two of one key, and commits to its end with every message delivered at least once', async (t) => {
  const brokers = kafkaOrSkip(t);
  if (!brokers) return;
  const kafka = createKafka('trigger-test', brokers);
  const kafkaTopics = await topicsOfTheirOwn(t, kafka, 1);
  const fn = await target(t, () => 200, 50);
  // 200 messages over 10 keys, so that every window of 16 holds some key twice.
  const messages = Array.from({ length: 200 }, (_, seq) => ({ key: `booking-${seq % 10}`, value: JSON.stringify({ seq }) }));
  await kafkaTopics.produce(0, messages);

  const trigger = await startTrigger({ ...kafkaTopics, brokers, target: fn.url, concurrency: 16, retryDelayMs: 20 });
  t.after(() => trigger.stop());

  await eventually('every offset committed', async () => ((await kafkaTopics.committed(kafkaTopics.groupId))[0] === '200' ? true : undefined));
  assert.ok(fn.concurrent.most > 1, `deliveries in flight at once: ${fn.concurrent.most}`);
  assert.ok(fn.concurrent.most <= 16, `no more than the concurrency in flight: ${fn.concurrent.most}`);
  assert.equal(fn.concurrent.mostOfOneKey, 1, 'one key is never in flight twice');
  const seqs = (key: string) => fn.received.filter((r) => r.status < 300 && r.headers['ce-subject'] === key).map((r) => (JSON.parse(r.body) as { seq: number }).seq);
  for (let k = 0; k < 10; k++) assert.deepEqual(seqs(`booking-${k}`), Array.from({ length: 20 }, (_, i) => k + 10 * i), `booking-${k} delivered once each, in offset order`);
  assert.equal(await kafkaTopics.deadLetterCount(), 0, 'no dead letters');
});

test('a retryable failure in the middle of a concurrent window holds the committed offset below it until it passes; what was delivered past it is delivered again and counted', async (t) => {
  const brokers = kafkaOrSkip(t);
  if (!brokers) return;
  const kafka = createKafka('trigger-test', brokers);
  const kafkaTopics = await topicsOfTheirOwn(t, kafka, 1);
  let failing = true;
  const fn = await target(t, (key) => (key === 'm10' && failing ? 503 : 200), 20);
  const names = keys('m', 20);
  await kafkaTopics.produce(0, asMessages(names));

  const redeliveries = () => metric('boxoffice_trigger_redeliveries_total');
  const redeliveriesBefore = await redeliveries();
  const trigger = await startTrigger({ ...kafkaTopics, brokers, target: fn.url, concurrency: 16, retryDelayMs: 20, retryMaxMs: 100 });
  t.after(() => trigger.stop());

  await eventually('messages past the failing one delivered', async () => (fn.delivered(0).includes('m11') ? true : undefined));
  await eventually('m10 to fail a few times', async () => (fn.received.filter((r) => r.status === 503).length >= 3 ? true : undefined));
  assert.equal((await kafkaTopics.committed(kafkaTopics.groupId))[0], '10', 'committed up to the failing message, not past it');
  assert.ok((await redeliveries()) - redeliveriesBefore > 0, 'deliveries past the failing one are counted');

  failing = false;
  await eventually('every offset committed once m10 passes', async () => ((await kafkaTopics.committed(kafkaTopics.groupId))[0] === '20' ? true : undefined));
  assert.deepEqual([...new Set(fn.delivered(0))].sort(), [...names].sort(), 'every message delivered at least once');
  assert.equal(await kafkaTopics.deadLetterCount(), 0, 'no dead letters');
});
