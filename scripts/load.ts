import autocannon from 'autocannon';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import pg from 'pg';
import { migrateDatabase } from '../shared/migrate.js';
import { demoUsers, signingKey, signToken, startDevIssuer } from './dev-issuer.js';
import { freePort, functionNames, untilReady } from './functions.js';
import { dropDatabase, ensureDatabase, localPostgres } from './local-postgres.js';

// `npm run load -- <function> [seconds]`: a load test of one function, run
// as its container runs it (its own process, real Postgres), with autocannon
// on 127.0.0.1. Machines differ and are noisy, so beside the raw figures it
// reports the function's throughput as a ratio of the same process's
// /_/health throughput, measured in the same run. Each result is appended to
// load/results/<function>.jsonl (LOAD_RESULTS_DIR elsewhere) and compared
// with the previous one.

interface Scenario {
  method: 'GET' | 'POST';
  path: string;
  body?: string;
  headers?: Record<string, string>;
}

interface Result {
  at: string;
  function: string;
  seconds: number;
  connections: number;
  requestsPerSecond: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  non2xx: number;
  baselineRequestsPerSecond: number;
  ratioToBaseline: number;
}

const name = process.argv[2] ?? '';
const seconds = Number(process.argv[3] ?? 10);
const connections = 20;
if (!functionNames().includes(name) || !(seconds > 0 && seconds <= 120)) {
  console.error(`usage: npm run load -- <function> [seconds 1-120]; functions: ${functionNames().join(', ')}`);
  process.exit(2);
}

const server = process.env.DATABASE_URL
  ? { adminUrl: process.env.DATABASE_URL, stop: async () => undefined }
  : await localPostgres({ dataDir: '.data/test-postgres', port: 54330, preferMachine: true });
const database = `boxoffice_load_${process.pid}`;
const databaseUrl = await ensureDatabase(server.adminUrl, database);
const key = await signingKey();
const issuer = await startDevIssuer(key);
try {
  await migrateDatabase(databaseUrl, { demoData: true });
  const port = await freePort();
  const fn = spawn(process.execPath, ['--import', 'tsx', 'shared/run.ts', name], {
    env: { ...process.env, PORT: String(port), DATABASE_URL: databaseUrl, OIDC_ISSUER: issuer.issuer, KAFKA_BROKERS: '', CONSUME_ORDER_URL: '', LOG_LEVEL: 'warn', MAX_INFLIGHT: '10000' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  try {
    const base = `http://127.0.0.1:${port}`;
    await untilReady(base);
    const scenario = await scenarioFor(name, databaseUrl, `Bearer ${await signToken(key, { subject: 'alice', ...demoUsers.alice!, issuer: issuer.issuer })}`);
    const baseline = await run(base, { method: 'GET', path: '/_/health' });
    const measured = await run(base, scenario);
    const result: Result = {
      at: new Date().toISOString(),
      function: name,
      seconds,
      connections,
      requestsPerSecond: Math.round(measured.requests.average),
      latencyP50Ms: measured.latency.p50,
      latencyP99Ms: measured.latency.p99,
      non2xx: measured.non2xx,
      baselineRequestsPerSecond: Math.round(baseline.requests.average),
      ratioToBaseline: Number((measured.requests.average / baseline.requests.average).toFixed(3)),
    };
    await report(result);
  } finally {
    fn.kill('SIGTERM');
    await once(fn, 'exit');
  }
} finally {
  await issuer.stop();
  await dropDatabase(server.adminUrl, database);
  await server.stop();
}

/** What one request of the function's load looks like, with the rows it needs. */
async function scenarioFor(fn: string, url: string, authorization: string): Promise<Scenario> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  try {
    const json = { 'content-type': 'application/json' };
    switch (fn) {
      case 'list-events':
        return { method: 'GET', path: '/api/v1/inventory/events' };
      case 'get-event':
        return { method: 'GET', path: '/api/v1/inventory/event/1' };
      case 'get-venue':
        return { method: 'GET', path: '/api/v1/inventory/venue/1' };
      case 'book': {
        // An event large enough that the run never sells out.
        const { rows } = await db.query<{ event_id: number }>(
          "INSERT INTO events (name, venue_id, total_capacity, left_capacity, ticket_price) VALUES ('Load test', 1, 2000000000, 2000000000, 10) RETURNING event_id",
        );
        return { method: 'POST', path: '/api/v1/booking', headers: { ...json, authorization }, body: JSON.stringify({ userId: 1, eventId: rows[0]!.event_id, ticketCount: 1 }) };
      }
      case 'get-booking':
      case 'consume-order': {
        const { rows } = await db.query<{ booking_id: string }>(
          "INSERT INTO bookings (booking_id, customer_id, event_id, ticket_count, total_price, status) VALUES (gen_random_uuid(), 1, 1, 1, 45, 'CONFIRMED') RETURNING booking_id",
        );
        const bookingId = rows[0]!.booking_id;
        if (fn === 'get-booking') return { method: 'GET', path: `/api/v1/booking/${bookingId}`, headers: { authorization } };
        // Redeliveries of a confirmed booking: the idempotent path every duplicate takes.
        return {
          method: 'POST',
          path: '/',
          headers: { ...json, 'ce-specversion': '1.0', 'ce-id': 'load', 'ce-type': 'dev.knative.kafka.event', 'ce-source': '/load' },
          body: JSON.stringify({ bookingId, userId: 1, eventId: 1, ticketCount: 1 }),
        };
      }
      case 'list-orders':
        return { method: 'GET', path: '/api/v1/orders', headers: { authorization } };
      default:
        throw new Error(`no load scenario for ${fn}`);
    }
  } finally {
    await db.end();
  }
}

async function run(base: string, scenario: Scenario): Promise<autocannon.Result> {
  return autocannon({ url: `${base}${scenario.path}`, method: scenario.method, headers: scenario.headers, body: scenario.body, connections, duration: seconds });
}

async function report(result: Result): Promise<void> {
  const dir = process.env.LOAD_RESULTS_DIR || 'load/results';
  const file = `${dir}/${result.function}.jsonl`;
  const previous = await readFile(file, 'utf8').then(
    (text) => JSON.parse(text.trim().split('\n').at(-1) ?? 'null') as Result | null,
    () => null,
  );
  await mkdir(dir, { recursive: true });
  await appendFile(file, `${JSON.stringify(result)}\n`);
  console.log(`${result.function}: ${result.requestsPerSecond} req/s, p50 ${result.latencyP50Ms} ms, p99 ${result.latencyP99Ms} ms, non-2xx ${result.non2xx}`);
  console.log(`  ${result.ratioToBaseline} of this process's /_/health throughput (${result.baselineRequestsPerSecond} req/s) in the same run`);
  if (previous) {
    const change = ((result.ratioToBaseline / previous.ratioToBaseline - 1) * 100).toFixed(1);
    console.log(`  previous run (${previous.at}): ratio ${previous.ratioToBaseline}; change ${change}%`);
  }
  console.log(`  kept in ${file}`);
}
