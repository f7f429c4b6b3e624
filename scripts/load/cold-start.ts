import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { integerSetting } from '../../shared/config.js';
import { functionNames } from '../functions.js';
import { createEvent } from './booking.js';
import { loadAverage, round } from './cpu.js';
import { spawnNode, startProcess, type Started } from './processes.js';
import { keepLine, keptLines, spread, type Spread } from './report.js';
import { bookingRequest, loadScenarios, requestFor, type Request } from './scenarios.js';
import { openLoad, type LoadSetup } from './setup.js';

// `npm run load -- cold-start [name...]`: builds the compiled JS once (`npm
// run build`), then, round by round, starts each function (and the relay) as
// its container does (`node dist/shared/run.js`, NODE_ENV=production) on a
// load database and times it from the spawn to the first 2xx answer of a
// real request on its route (with alice's token where the route needs one);
// `LOAD_IDLE_MS` after that answer it reads the process's resident memory
// from /proc. Beside them, compiled the same way, the two hellos of the
// other scenarios give this machine's floor. Medians (and ranges) are
// printed against the issue's goals and appended to
// load/results/cold-start.jsonl. A benchmark, not a test: a missed goal is
// reported, never an exit status; only a process that never answers fails.

export const coldStartUsage = 'cold-start [function|relay ...]';

/** The goals of a function's process (issue 9), compared with the medians. */
const coldStartGoals = { coldStartMs: 500, idleRssMb: 80 };

const root = fileURLToPath(new URL('../../', import.meta.url));
const workers = ['relay'];
const pollMs = 5;
const answerTimeoutMs = 30_000;

type Kind = 'function' | 'worker' | 'baseline';

/** A process to start cold, and the request whose first 2xx ends its start. */
interface Target {
  name: string;
  kind: Kind;
  /** node's arguments: the compiled entry point, as in the container's CMD. */
  args: string[];
  env: NodeJS.ProcessEnv;
  request: Request;
}

interface ColdStartSample {
  coldStartMs: number;
  idleRssMb: number;
  status: number;
}

interface ColdStartFigures {
  name: string;
  kind: Kind;
  /** What was sent until a 2xx came, e.g. `GET /api/v1/inventory/event/1`. */
  request: string;
  coldStartMs: Spread;
  idleRssMb: Spread;
  /** The medians against the goals; functions only. */
  coldStartGoalMet?: boolean;
  idleRssGoalMet?: boolean;
  samples: ColdStartSample[];
}

/** One line of load/results/cold-start.jsonl. */
interface ColdStartResult {
  at: string;
  scenario: 'cold-start';
  node: string;
  rounds: number;
  idleMs: number;
  goals: typeof coldStartGoals;
  targets: ColdStartFigures[];
  /** After each round. */
  loadAverage: [number, number, number][];
}

/** Runs the scenario for `names` (every function and worker when none) and answers the exit status. */
export async function coldStart(names: string[]): Promise<number> {
  const known = [...functionNames(), ...workers];
  const unknown = names.filter((name) => !known.includes(name));
  if (unknown.length) {
    console.error(`usage: npm run load -- ${coldStartUsage}; unknown: ${unknown.join(', ')}; known: ${known.join(', ')}
settings: LOAD_ROUNDS (5), LOAD_IDLE_MS (2000)`);
    return 2;
  }
  const chosen = names.length ? [...new Set(names)] : known;
  const settings = { rounds: integerSetting('LOAD_ROUNDS', 5, 1), idleMs: integerSetting('LOAD_IDLE_MS', 2_000, 0) };
  const file = `${process.env.LOAD_RESULTS_DIR || 'load/results'}/cold-start.jsonl`;

  await build();
  const setup = await openLoad();
  const warm: Started[] = [];
  try {
    const targets = await baselines();
    // One at a time: they share the one client of the load database.
    for (const name of chosen) targets.push(await targetFor(name, setup, warm));
    const samples = new Map<string, ColdStartSample[]>(targets.map((target) => [target.name, []]));
    const loadAverages: [number, number, number][] = [];
    // Round by round, so that a noisy moment of the machine weighs on every target alike.
    for (let index = 0; index < settings.rounds; index++) {
      for (const target of targets) samples.get(target.name)!.push(await measure(target, settings.idleMs));
      loadAverages.push(loadAverage());
    }
    const result: ColdStartResult = {
      at: new Date().toISOString(),
      scenario: 'cold-start',
      node: process.version,
      ...settings,
      goals: coldStartGoals,
      targets: targets.map((target) => figures(target, samples.get(target.name)!)),
      loadAverage: loadAverages,
    };
    const previous = await keptLines<ColdStartResult>(file);
    await keepLine(file, result);
    print(result, previous);
    console.log(`kept in ${file}`);
    return 0;
  } finally {
    await Promise.all(warm.map((process) => process.stop()));
    await setup.close();
  }
}

/** `npm run build`: the dist/ every container runs. */
async function build(): Promise<void> {
  const child = spawn('npm', ['run', '--silent', 'build'], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`npm run build failed (exit ${code})`);
}

/** The hellos of the other scenarios, compiled beside the build (dist/load/) and run by plain node. */
async function baselines(): Promise<Target[]> {
  const compile = async (source: string) => {
    const { outputText } = ts.transpileModule(await readFile(new URL(`./${source}.ts`, import.meta.url), 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    });
    const file = `${root}dist/load/${source}.js`;
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, outputText);
    return file;
  };
  const hello: Request = { method: 'GET', path: '/' };
  return [
    { name: 'ff-hello', kind: 'baseline', args: [await compile('hello-ff')], env: { NODE_ENV: 'production', NODE_OPTIONS: '' }, request: hello },
    { name: 'raw-http', kind: 'baseline', args: [await compile('hello-http')], env: { NODE_ENV: 'production', NODE_OPTIONS: '' }, request: hello },
  ];
}

/**
 * A function or worker as its container runs it, on the load database. The
 * relay delivers straight to a warm consume-order (started once, through
 * tsx), which is ready when the relay can reach its sink and the database.
 */
async function targetFor(name: string, setup: LoadSetup, warm: Started[]): Promise<Target> {
  // The image's environment (NODE_ENV=production, no NODE_OPTIONS) and the run's settings.
  const env = { NODE_ENV: 'production', NODE_OPTIONS: '', DATABASE_URL: setup.databaseUrl, OIDC_ISSUER: setup.issuer, ...setup.delivererEnv, KAFKA_BROKERS: '' };
  if (name === 'relay') {
    const consumeOrder = await startProcess('consume-order (warm)', ['shared/run.ts', 'consume-order'], { ...env, FUNCTION_NAME: 'consume-order' });
    warm.push(consumeOrder);
    return { name, kind: 'worker', args: [`${root}dist/relay/main.js`], env: { ...env, CONSUME_ORDER_URL: consumeOrder.url }, request: { method: 'GET', path: '/_/ready' } };
  }
  // A big event, so that every round's booking is accepted.
  // A function without a load scenario of its own (the operator's, cancel-booking, the waiting room's) starts once it is ready to serve.
  const request =
    name === 'book'
      ? bookingRequest(await createEvent(setup.db, 1_000_000), setup.authorization)
      : loadScenarios.has(name)
        ? await requestFor(name, setup.db, setup.authorization, setup.delivererAuthorization)
        : { method: 'GET' as const, path: '/_/ready' };
  return { name, kind: 'function', args: [`${root}dist/shared/run.js`], env: { ...env, FUNCTION_NAME: name }, request };
}

/** One cold start: spawn, the first 2xx, then idle for `idleMs`, and the resident memory. */
async function measure(target: Target, idleMs: number): Promise<ColdStartSample> {
  const child = await spawnNode(target.name, target.args, target.env);
  try {
    const answer = await Promise.race([firstSuccess(child.url, target), child.exited]);
    await Promise.race([sleep(idleMs), child.exited]);
    return { coldStartMs: Math.round(answer.at - child.spawnedAt), idleRssMb: residentMegabytes(child.pid), status: answer.status };
  } finally {
    await child.stop();
  }
}

/**
 * Sends the target's request every few ms until it answers: a refused
 * connection (not listening yet) or a 503 (not ready yet) is tried again;
 * any other answer than a 2xx is a fault of the run, not a slow start.
 */
async function firstSuccess(url: string, target: Target): Promise<{ at: number; status: number }> {
  const { method, path } = target.request;
  const deadline = performance.now() + answerTimeoutMs;
  for (;;) {
    const answer = await send(url, target.request).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED') return undefined;
      throw error;
    });
    if (answer && answer.status >= 200 && answer.status < 300) return { at: answer.at, status: answer.status };
    if (answer && answer.status !== 503) throw new Error(`${target.name} answered ${answer.status} to ${method} ${path}: ${answer.body.slice(0, 300)}`);
    if (performance.now() > deadline) {
      throw new Error(`${target.name} gave no 2xx to ${method} ${path} within ${answerTimeoutMs / 1000} s${answer ? `; last: ${answer.status} ${answer.body.slice(0, 300)}` : ''}`);
    }
    await sleep(pollMs);
  }
}

/** One request on a connection of its own; `at` is when the whole answer was read. */
function send(url: string, request: Request): Promise<{ status: number; body: string; at: number }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}${request.path}`, { method: request.method, headers: request.headers, agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, at: performance.now() }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer to ${request.method} ${request.path} within 10 s`)));
    req.on('error', reject);
    req.end(request.body);
  });
}

/** VmRSS of `pid` in MB (MiB), from /proc/<pid>/status. */
function residentMegabytes(pid: number): number {
  const kilobytes = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  if (kilobytes === undefined) throw new Error(`/proc/${pid}/status names no VmRSS`);
  return round(Number(kilobytes) / 1024, 1);
}

function figures(target: Target, samples: ColdStartSample[]): ColdStartFigures {
  const coldStartMs = spread(samples.map((s) => s.coldStartMs));
  const idleRssMb = spread(samples.map((s) => s.idleRssMb));
  const goals =
    target.kind === 'function' ? { coldStartGoalMet: coldStartMs.median <= coldStartGoals.coldStartMs, idleRssGoalMet: idleRssMb.median <= coldStartGoals.idleRssMb } : {};
  // A booking id is the run's own: named, so that runs compare.
  const path = target.request.path.replace(/[0-9a-f]{8}-[0-9a-f-]{27}$/, '{bookingId}');
  return { name: target.name, kind: target.kind, request: `${target.request.method} ${path}`, coldStartMs, idleRssMb, ...goals, samples };
}

/** The table: one row per target, its goals, and its figures in the previous line that has it. */
function print(result: ColdStartResult, previous: ColdStartResult[]): void {
  console.log(
    `cold start, compiled JS (npm run build; node dist/...): spawn to the first 2xx, and RSS ${result.idleMs} ms after it;` +
      ` medians (min-max) of ${result.rounds} round${result.rounds === 1 ? '' : 's'}, node ${result.node}`,
  );
  console.log(`goals of a function: cold start <= ${result.goals.coldStartMs} ms, idle RSS <= ${result.goals.idleRssMb} MB`);
  const range = (s: Spread, digits: number) => `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}-${s.max.toFixed(digits)})`;
  const verdict = (met: boolean | undefined) => (met === undefined ? '-' : met ? 'met' : 'MISSED');
  const rows = [
    ['target', 'first 2xx to', 'cold start ms', 'goal', 'idle RSS MB', 'goal', 'previous run'],
    ...result.targets.map((t) => {
      const line = previous.findLast((earlier) => earlier.targets.some((p) => p.name === t.name));
      const before = line?.targets.find((p) => p.name === t.name);
      return [
        t.kind === 'baseline' ? `${t.name} (baseline)` : t.name,
        `${t.samples[0]?.status ?? ''} ${t.request}`,
        range(t.coldStartMs, 0),
        verdict(t.coldStartGoalMet),
        range(t.idleRssMb, 1),
        verdict(t.idleRssGoalMet),
        before ? `${before.coldStartMs.median} ms, ${before.idleRssMb.median} MB (${line!.at.slice(0, 10)})` : '-',
      ];
    }),
  ];
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  for (const row of rows) console.log(`  ${row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd()}`);
  console.log(`  load average after each round: ${result.loadAverage.map((l) => l[0]).join(' ')}`);
}
