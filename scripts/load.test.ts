import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pool } from '../shared/db.js';
import { createEvent } from '../shared/test-support/index.js';
import { checkEvent } from './load/booking.js';

// The load test itself works: short runs measure, report and keep their
// figures, and the booking run checks what it sold. No figure is asserted
// beyond being there: speed is reported, never tested.

async function load(dir: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/load.ts', ...args], {
    env: { ...process.env, LOAD_RESULTS_DIR: dir, LOAD_ROUNDS: '1', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.equal(code, 0, out);
  return out;
}

async function lines(file: string): Promise<Record<string, unknown>[]> {
  return (await readFile(file, 'utf8'))
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

const positive = (value: unknown) => typeof value === 'number' && value > 0;

test('npm run load measures a function beside same-run baselines, with CPU seconds, and compares with older result lines', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'boxoffice-load-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // A line written before baselines, CPU seconds and scenarios existed.
  const old = { at: '2026-11-29T05:17:12.645Z', function: 'get-event', seconds: 10, connections: 20, requestsPerSecond: 1853, latencyP50Ms: 8, latencyP99Ms: 37, non2xx: 0, baselineRequestsPerSecond: 29068, ratioToBaseline: 0.064 };
  await writeFile(join(dir, 'get-event.jsonl'), `${JSON.stringify(old)}\n`);

  const first = await load(dir, ['get-event', '1']);
  const second = await load(dir, ['get-event', '1']);

  const kept = await lines(join(dir, 'get-event.jsonl'));
  assert.equal(kept.length, 3);
  const result = kept[2] as {
    function: string;
    non2xx: number;
    requestsPerSecond: number;
    baselines: Record<string, { requestsPerSecond: { median: number } }>;
    ratioToFfHello: number;
    ratioToRawHttp: number;
    cpuSeconds: Record<string, number>;
    requestsPerCpuSecond: number;
    loadAverage: number[][];
  };
  assert.equal(result.function, 'get-event');
  assert.equal(result.non2xx, 0, 'every request of the load succeeded');
  assert.ok(positive(result.requestsPerSecond));
  assert.ok(positive(result.baselines['ff-hello']?.requestsPerSecond.median));
  assert.ok(positive(result.baselines['raw-http']?.requestsPerSecond.median));
  assert.ok(positive(result.ratioToFfHello) && positive(result.ratioToRawHttp));
  assert.ok(positive(result.cpuSeconds['get-event']), JSON.stringify(result.cpuSeconds));
  // Counted, but maybe 0: the catalogue shares an answer for 250 ms, so a 1 s round costs Postgres a few queries, under a clock tick.
  assert.equal(typeof result.cpuSeconds['postgres:boxoffice-get-event'], 'number', JSON.stringify(result.cpuSeconds));
  assert.ok(positive(result.requestsPerCpuSecond));
  assert.equal(result.loadAverage.length, 3, 'one load average per measured round of each server');
  assert.match(first, /previous run .*no same-run ff-hello baseline.* change in req\/s -?\d/);
  assert.match(second, /previous run .* ratio to ff-hello [\d.]+; change -?\d/);
});

test('npm run load -- book flash sells a small event without overselling and every booking becomes one order', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'boxoffice-load-'));
  t.after(() => rm(dir, { recursive: true, force: true }));

  await load(dir, ['book', 'flash', '1'], { LOAD_CAPACITY: '30', LOAD_DRAIN_TIMEOUT_MS: '20000' });

  const [result] = (await lines(join(dir, 'book.jsonl'))) as [
    { scenario: string; booking: Record<string, unknown>; measuredRounds: { target: string; ticketsSold: number; capacity: number; bookings: number; orders: number; confirmed: number }[] },
  ];
  assert.equal(result.scenario, 'flash');
  assert.equal(result.booking.kafka, Boolean(process.env.KAFKA_BROKERS));
  assert.equal(result.booking.oversold, 0);
  assert.equal(result.booking.capacityConsistent, true);
  assert.equal(result.booking.allConfirmed, true);
  assert.ok(typeof result.booking.synchronousCommit === 'string');
  const rounds = result.measuredRounds.filter((r) => r.target === 'book');
  assert.equal(rounds.length, 2, 'a warm-up round and a measured one, each on its own event');
  for (const round of rounds) {
    assert.equal(round.capacity, 30);
    assert.ok(round.ticketsSold <= 30);
    assert.deepEqual([round.orders, round.confirmed], [round.bookings, round.bookings]);
  }
});

test('npm run load -- cold-start times a compiled function to its first 2xx and reads its idle RSS, beside compiled hellos', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'boxoffice-load-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // An earlier run's line: the table shows its figures as the previous run.
  const earlier = { at: '2026-11-30T10:00:00.000Z', scenario: 'cold-start', targets: [{ name: 'list-orders', coldStartMs: { median: 987, min: 987, max: 987 }, idleRssMb: { median: 65.4, min: 65.4, max: 65.4 } }] };
  await writeFile(join(dir, 'cold-start.jsonl'), `${JSON.stringify(earlier)}\n`);

  // list-orders needs a token: its cold start ends with a real 200, not a probe.
  const out = await load(dir, ['cold-start', 'list-orders'], { LOAD_IDLE_MS: '100' });

  const kept = await lines(join(dir, 'cold-start.jsonl'));
  assert.equal(kept.length, 2);
  const result = kept[1] as {
    scenario: string;
    rounds: number;
    goals: { coldStartMs: number; idleRssMb: number };
    targets: { name: string; kind: string; request: string; coldStartMs: { median: number }; idleRssMb: { median: number }; coldStartGoalMet?: boolean; idleRssGoalMet?: boolean; samples: { status: number }[] }[];
  };
  assert.equal(result.scenario, 'cold-start');
  assert.deepEqual(result.goals, { coldStartMs: 500, idleRssMb: 80 });
  assert.deepEqual(
    result.targets.map((target) => [target.name, target.kind, target.request]),
    [
      ['ff-hello', 'baseline', 'GET /'],
      ['raw-http', 'baseline', 'GET /'],
      ['list-orders', 'function', 'GET /api/v1/orders'],
    ],
  );
  for (const target of result.targets) {
    assert.deepEqual(target.samples.map((sample) => sample.status), [200], `${target.name}: one round, answered 200`);
    assert.ok(positive(target.coldStartMs.median) && positive(target.idleRssMb.median), JSON.stringify(target));
  }
  const fn = result.targets[2]!;
  assert.equal(typeof fn.coldStartGoalMet, 'boolean');
  assert.equal(typeof fn.idleRssGoalMet, 'boolean');
  assert.match(out, /^ {2}list-orders +200 GET \/api\/v1\/orders +\d+ \(\d+-\d+\) +(met|MISSED) +[\d.]+ \([\d.]+-[\d.]+\) +(met|MISSED) +987 ms, 65.4 MB \(2026-11-30\)$/m);
  assert.match(out, /^ {2}ff-hello \(baseline\) +200 GET \/ +\d+ \(\d+-\d+\) +- +[\d.]+ \([\d.]+-[\d.]+\) +- +-$/m);
});

test('the booking check reports an oversold event and bookings without orders', async () => {
  const { eventId } = await createEvent({ capacity: 2 });
  // Three one-ticket bookings on a two-ticket event, none confirmed: what a broken book would leave.
  for (let i = 0; i < 3; i++) {
    await pool.query("INSERT INTO bookings (booking_id, customer_id, event_id, ticket_count, total_price) VALUES (gen_random_uuid(), 1, $1, 1, 10)", [eventId]);
  }

  const check = await checkEvent(pool, eventId, 3);

  assert.equal(check.ticketsSold, 3);
  assert.equal(check.oversold, 1);
  assert.equal(check.capacityConsistent, false);
  assert.equal(check.allConfirmed, false);
});
