import { integerSetting } from '../shared/config.js';
import { kafkaBrokers } from '../shared/kafka.js';
import { functionNames } from './functions.js';
import { createEvent, settleBookings, startPipeline } from './load/booking.js';
import { coldStart, coldStartUsage } from './load/cold-start.js';
import { round } from './load/cpu.js';
import { startProcess, type Started } from './load/processes.js';
import { cpuTotals, keep, perCpuSecond, spread, type BookingSummary, type Result } from './load/report.js';
import { interleave, median, type Round, type Target } from './load/rounds.js';
import { bookingRequest, requestFor } from './load/scenarios.js';
import { openLoad } from './load/setup.js';

// `npm run load -- <function> [seconds]` and `npm run load -- book [hot|flash] [seconds]`:
// a load test of one function, run as its container runs it (its own process,
// real Postgres), with autocannon on 127.0.0.1. Beside it, in the same run and
// interleaved round by round, two baselines in processes of their own: a plain
// functions-framework hello (the framework's own server) and a raw node:http
// hello. It reports ratios to both, CPU seconds of every process involved
// (Postgres backends included) and the load average of each round. `book`
// sells one ticket per request on one event (a fresh event each round) with
// the order pipeline running: `hot` (default) never sells out, `flash` has
// fewer tickets than the round could sell; after each round it waits for
// every booking to become an order and checks that none was oversold. Each
// result is appended to load/results/<function>.jsonl (LOAD_RESULTS_DIR
// elsewhere) and compared with the previous one.
// `npm run load -- cold-start [name...]` measures instead how long each
// function, compiled, takes from spawn to its first 2xx, and its idle RSS
// (load/cold-start.ts).

if (process.argv[2] === 'cold-start') process.exit(await coldStart(process.argv.slice(3)));

const usage = `usage: npm run load -- <function> [seconds 1-120] | book [hot|flash] [seconds] | ${coldStartUsage}; functions: ${functionNames().join(', ')}
settings: LOAD_ROUNDS (3), LOAD_CONNECTIONS (100 for book, else 50), LOAD_CAPACITY (flash event, 1000), LOAD_DRAIN_TIMEOUT_MS (120000)`;
const name = process.argv[2] ?? '';
const named = name === 'book' && /^[a-z]+$/.test(process.argv[3] ?? '');
const flavour = named ? process.argv[3]! : name === 'book' ? 'hot' : name;
const seconds = Number(process.argv[named ? 4 : 3] ?? 10);
if (!functionNames().includes(name) || !(seconds >= 1 && seconds <= 120) || (name === 'book' && !['hot', 'flash'].includes(flavour))) {
  console.error(usage);
  process.exit(2);
}
const settings = {
  rounds: integerSetting('LOAD_ROUNDS', 3, 1),
  connections: integerSetting('LOAD_CONNECTIONS', name === 'book' ? 100 : 50, 1),
  capacity: flavour === 'flash' ? integerSetting('LOAD_CAPACITY', 1000, 1) : 2_000_000_000,
  drainTimeoutMs: integerSetting('LOAD_DRAIN_TIMEOUT_MS', 120_000, 1),
};

const { database, databaseUrl, issuer, authorization, delivererAuthorization, delivererEnv, admin, db, close } = await openLoad();
const started: Started[] = [];
let failed = false;
try {
  const kafka = name === 'book' && kafkaBrokers().length > 0;
  const env = {
    DATABASE_URL: databaseUrl,
    OIDC_ISSUER: issuer,
    ...delivererEnv,
    KAFKA_BROKERS: kafka ? kafkaBrokers().join(',') : '',
    CONSUME_ORDER_URL: '',
    BOOKING_TOPIC: `booking.load-${process.pid}-${Date.now()}`,
    TRIGGER_GROUP: `order-service.load-${process.pid}-${Date.now()}`,
    MAX_INFLIGHT: '10000',
    KAFKAJS_NO_PARTITIONER_WARNING: '1',
  };
  // FUNCTION_NAME names its Postgres backends (application_name), so their CPU is told apart.
  const fn = await startProcess(name, ['shared/run.ts', name], { ...env, FUNCTION_NAME: name });
  started.push(fn);
  if (name === 'book') started.push(...(await startPipeline(env, kafka)));
  const ffHello = await startProcess('ff-hello', ['scripts/load/hello-ff.ts'], {});
  const rawHttp = await startProcess('raw-http', ['scripts/load/hello-http.ts'], {});
  started.push(ffHello, rawHttp);

  const pids = (processes: Started[]) => () => Object.fromEntries(processes.map((p) => [p.name, p.pid]));
  let eventId = 0;
  const functionTarget: Target =
    name === 'book'
      ? {
          name,
          url: fn.url,
          processes: pids(started.filter((p) => p !== ffHello && p !== rawHttp)),
          prepare: async () => bookingRequest((eventId = await createEvent(db, settings.capacity)), authorization),
          settle: (measured, stoppedAt) => settleBookings(db, eventId, measured, stoppedAt, settings.drainTimeoutMs),
        }
      : { name, url: fn.url, processes: pids([fn]), prepare: () => requestFor(name, db, authorization, delivererAuthorization) };
  const baseline = (p: Started): Target => ({ name: p.name, url: p.url, processes: pids([p]), prepare: async () => ({ method: 'GET', path: '/' }) });
  const rounds = await interleave([functionTarget, baseline(ffHello), baseline(rawHttp)], { ...settings, seconds, admin, database });

  const synchronousCommit = (await db.query<{ synchronous_commit: string }>('SHOW synchronous_commit')).rows[0]!.synchronous_commit;
  const result = summarise(rounds, { kafka, synchronousCommit });
  await keep(result, process.env.LOAD_RESULTS_DIR || 'load/results');
  if (result.booking && !result.booking.correct) {
    failed = true;
    console.error('load: the booking checks failed (oversold, inconsistent capacity, or bookings without exactly one confirmed order); see the rounds in the result line');
  }
} finally {
  await Promise.all(started.map((p) => p.stop()));
  await close();
}
process.exit(failed ? 1 : 0);

/** The result line: the function's medians, the baselines, ratios, CPU and, for book, the checks. */
function summarise(rounds: Round[], context: { kafka: boolean; synchronousCommit: string }): Result {
  const measured = (target: string) => rounds.filter((r) => r.target === target && !r.warmUp);
  const own = measured(name);
  const rate = (target: string) => spread(measured(target).map((r) => r.requestsPerSecond));
  const p99 = (target: string) => median(measured(target).map((r) => r.latencyP99Ms));
  const functionRate = rate(name);
  const baselines = Object.fromEntries(
    ['ff-hello', 'raw-http'].map((target) => [
      target,
      { requestsPerSecond: rate(target), latencyP99Ms: p99(target), requestsPerCpuSecond: perCpuSecond(measured(target), (process) => process === target) },
    ]),
  );
  return {
    at: new Date().toISOString(),
    function: name,
    scenario: flavour,
    seconds,
    rounds: settings.rounds,
    connections: settings.connections,
    requestsPerSecond: functionRate.median,
    latencyP50Ms: median(own.map((r) => r.latencyP50Ms)),
    latencyP99Ms: p99(name),
    non2xx: own.reduce((sum, r) => sum + r.non2xx, 0),
    requestsPerSecondSpread: functionRate,
    baselines,
    ratioToFfHello: round(functionRate.median / baselines['ff-hello']!.requestsPerSecond.median),
    ratioToRawHttp: round(functionRate.median / baselines['raw-http']!.requestsPerSecond.median),
    cpuSeconds: cpuTotals(own),
    requestsPerCpuSecond: perCpuSecond(own, (process) => process === name || process === `postgres:boxoffice-${name}`),
    loadAverage: rounds.filter((r) => !r.warmUp).map((r) => r.loadAverage),
    ...(name === 'book' ? { booking: bookingSummary(rounds, context) } : {}),
    measuredRounds: rounds,
  };
}

/** Tickets, orders and the pipeline's drain over the measured rounds; the checks over every round. */
function bookingSummary(rounds: Round[], context: { kafka: boolean; synchronousCommit: string }): BookingSummary {
  const all = rounds.filter((r) => r.target === name);
  const own = all.filter((r) => !r.warmUp);
  const figure = (key: string) => own.map((r) => r[key] as number);
  return {
    kafka: context.kafka,
    synchronousCommit: context.synchronousCommit,
    capacityPerRound: settings.capacity,
    ticketsPerSecond: spread(figure('ticketsPerSecond')),
    ordersPerSecond: spread(figure('ordersPerSecond')),
    drainSeconds: all.every((r) => r.drainSeconds !== null) ? spread(figure('drainSeconds')) : null,
    // The load's own checks (postgres:boxoffice-load) are not the system's work.
    requestsPerCpuSecondAllProcesses: perCpuSecond(own, (process) => process !== 'postgres:boxoffice-load'),
    oversold: all.reduce((sum, r) => sum + (r.oversold as number), 0),
    capacityConsistent: all.every((r) => r.capacityConsistent),
    acceptedAreBookings: all.every((r) => r.acceptedAreBookings),
    allConfirmed: all.every((r) => r.allConfirmed),
    correct: all.every((r) => r.oversold === 0 && r.capacityConsistent && r.acceptedAreBookings && r.allConfirmed),
  };
}
