import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { parse, stringify } from 'yaml';
import { createKafka } from '../shared/kafka.js';
import { kafkaOrSkip } from '../shared/test-support/index.js';
import { freePort } from './functions.js';
import { dropDatabase, ensureDatabase } from './local-postgres.js';

// The dashboard against the real thing: `npm start` (every function in its
// own process, the trigger on a real Kafka), a real Prometheus scraping them
// with the jobs of deploy/prometheus/prometheus.yml, a little traffic through
// the gateway, then every query of every panel of
// deploy/grafana/dashboards/boxoffice.json must return data.

const PANEL_WAIT_MS = 90_000;
const ports = { gateway: 28080, functions: 28081, devIssuer: 28079 };

interface Panel {
  title: string;
  type: string;
  targets?: { expr: string; refId?: string }[];
  panels?: Panel[];
}

interface ScrapeConfig {
  job_name: string;
  static_configs?: { targets: string[]; labels?: Record<string, string> }[];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every query of the dashboard, named by its panel. */
function dashboardQueries(): { panel: string; expr: string }[] {
  const dashboard = JSON.parse(readFileSync('deploy/grafana/dashboards/boxoffice.json', 'utf8')) as { panels: Panel[] };
  return dashboard.panels
    .flatMap((panel) => [panel, ...(panel.panels ?? [])])
    .flatMap((panel) => (panel.targets ?? []).map((target) => ({ panel: `${panel.title}${panel.targets!.length > 1 ? ` [${target.refId}]` : ''}`, expr: target.expr })));
}

/**
 * The plain selectors of a PromQL expression whose label matchers are all
 * exact (`name{label="value"}`): each names a series that must exist, even
 * where the expression falls back to 0 without it.
 */
function exactSelectors(expr: string): string[] {
  const withoutGrouping = expr.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const found: string[] = [];
  for (const m of withoutGrouping.matchAll(/(?<![\w:.])([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?(\s*\()?/g)) {
    if (m[3] || ['or', 'and', 'unless', 'bool', 'offset'].includes(m[1]!)) continue;
    const matchers = [...(m[2] ?? '').matchAll(/\w+\s*(=~|!~|!=|=)\s*"/g)].map((op) => op[1]);
    if (matchers.every((op) => op === '=')) found.push(`${m[1]}${m[2] ?? ''}`);
  }
  return found;
}

function prometheusOrSkip(t: TestContext): string | undefined {
  const binary = existsSync('/usr/bin/prometheus') ? '/usr/bin/prometheus' : 'prometheus';
  if (!spawnSync(binary, ['--version'], { stdio: 'ignore' }).error) return binary;
  const reason = 'prometheus is not installed (apt-get install prometheus; .ci/run does): the dashboard is not checked against a real Prometheus';
  if (process.env.CI === 'true') assert.fail(`under CI=true nothing skips: ${reason}`);
  console.warn(`\n*** SKIPPED: ${reason} ***\n`);
  t.skip(`SKIPPED: ${reason}`);
  return undefined;
}

/** Waits (bounded) for a child to exit after `signal`; kills it if it will not. */
async function stop(child: ChildProcess, signal: NodeJS.Signals, timeoutMs = 30_000): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = once(child, 'exit') as Promise<[number | null]>;
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code] = await exited;
  clearTimeout(timer);
  return code;
}

function capture(child: ChildProcess, stream: 'stdout' | 'stderr', limit = 64_000): { text: string } {
  const out = { text: '' };
  child[stream]?.on('data', (chunk: Buffer) => (out.text = (out.text + chunk.toString()).slice(-limit)));
  return out;
}

test('every panel of the Grafana dashboard shows data from a real Prometheus scraping npm start after some traffic', { timeout: 300_000 }, async (t) => {
  const brokers = kafkaOrSkip(t);
  if (!brokers) return;
  const prometheusBinary = prometheusOrSkip(t);
  if (!prometheusBinary) return;

  const adminUrl = new URL(process.env.DATABASE_URL ?? '');
  adminUrl.pathname = '/postgres';
  const database = `boxoffice_observe_${process.pid}`;
  const databaseUrl = await ensureDatabase(adminUrl.toString(), database);
  t.after(() => dropDatabase(adminUrl.toString(), database));
  const work = mkdtempSync(join(tmpdir(), 'boxoffice-prometheus-'));
  t.after(() => rmSync(work, { recursive: true, force: true }));

  // A topic and group of this test's own: no other test's trigger takes its messages.
  const topic = `booking-observe-${process.pid}-${Date.now()}`;
  const startEnv = {
    ...process.env,
    OIDC_ISSUER: '',
    GATEWAY_PORT: String(ports.gateway),
    FUNCTIONS_BASE_PORT: String(ports.functions),
    DEV_ISSUER_PORT: String(ports.devIssuer),
    BOOKING_TOPIC: topic,
    TRIGGER_GROUP: `observe-${process.pid}`,
  };
  const start = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts'], { env: { ...startEnv, DATABASE_URL: databaseUrl }, stdio: ['ignore', 'pipe', 'inherit'] });
  const output = capture(start, 'stdout');
  let prometheus: ChildProcess | undefined;
  let startCode: number | null;
  try {
    for (let i = 0; !output.text.includes('gateway ready'); i++) {
      if (start.exitCode !== null) assert.fail(`npm start exited early:\n${output.text}`);
      if (i >= 1200) assert.fail(`npm start was not ready after 120 s:\n${output.text}`);
      await sleep(100);
    }
    // `[boxoffice] get-event      http://127.0.0.1:28082  serves GET ...`, and the trigger's line.
    const portOf = new Map([...output.text.matchAll(/^\[boxoffice\] ([\w-]+)\s+http:\/\/127\.0\.0\.1:(\d+)\b/gm)].map((m) => [m[1]!, Number(m[2])]));
    assert.ok(portOf.has('trigger'), `npm start runs the trigger (KAFKA_BROKERS is set):\n${output.text}`);

    // Prometheus with the compose stack's jobs, each target the process npm start runs.
    const config = parse(readFileSync('deploy/prometheus/prometheus.yml', 'utf8')) as { scrape_configs: ScrapeConfig[] };
    for (const job of config.scrape_configs) {
      for (const group of job.static_configs ?? []) {
        group.targets = group.targets.map((target) => {
          const port = portOf.get(target.split(':')[0]!);
          assert.ok(port, `npm start runs ${target}, which Prometheus scrapes (job ${job.job_name})`);
          return `127.0.0.1:${port}`;
        });
      }
    }
    writeFileSync(join(work, 'prometheus.yml'), stringify(config));
    const prometheusUrl = `http://127.0.0.1:${await freePort()}`;
    prometheus = spawn(
      prometheusBinary,
      [`--config.file=${join(work, 'prometheus.yml')}`, `--storage.tsdb.path=${join(work, 'data')}`, `--web.listen-address=${new URL(prometheusUrl).host}`, '--log.level=warn'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    const prometheusLog = capture(prometheus, 'stderr');
    for (let i = 0; ; i++) {
      if (prometheus.exitCode !== null) assert.fail(`prometheus exited (${prometheus.exitCode}):\n${prometheusLog.text}`);
      if (i >= 300) assert.fail(`prometheus was not ready after 30 s:\n${prometheusLog.text}`);
      if (await fetch(`${prometheusUrl}/-/ready`).then((r) => r.ok, () => false)) break;
      await sleep(100);
    }

    // Traffic through the gateway: reads, a bad id, bookings, a sold-out booking, bookings read back.
    const api = `http://127.0.0.1:${ports.gateway}/api/v1`;
    const get = (path: string, headers: Record<string, string> = {}) => fetch(`${api}${path}`, { headers });
    assert.equal((await get('/inventory/events')).status, 200);
    assert.equal((await get('/inventory/event/1')).status, 200);
    assert.equal((await get('/inventory/venue/1')).status, 200);
    assert.equal((await get('/inventory/event/abc')).status, 400);

    const token = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/token.ts', 'alice'], { env: startEnv, encoding: 'utf8', timeout: 60_000 });
    assert.equal(token.status, 0, token.stderr);
    const auth = { authorization: `Bearer ${token.stdout.trim()}` };
    const book = (body: { eventId: number; ticketCount: number }, headers: Record<string, string> = auth) =>
      fetch(`${api}/booking`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ userId: 1, ...body }) });
    assert.equal((await book({ eventId: 2, ticketCount: 1 }, {})).status, 401);
    const bookings: { bookingId: string; userId: number; eventId: number; ticketCount: number }[] = [];
    for (const body of [{ eventId: 2, ticketCount: 2 }, { eventId: 2, ticketCount: 2 }, { eventId: 1, ticketCount: 3 }]) {
      const answer = await book(body);
      assert.equal(answer.status, 201, await answer.clone().text());
      bookings.push((await answer.json()) as (typeof bookings)[number]);
    }
    // The demo event 2 has 10 tickets: asking for one more than are left is a 409.
    const { capacity } = (await (await get('/inventory/event/2')).json()) as { capacity: number };
    assert.ok(capacity + 1 <= 10, `event 2 has ${capacity} left, fewer than one booking may take`);
    assert.equal((await book({ eventId: 2, ticketCount: capacity + 1 })).status, 409);
    assert.equal((await get('/booking/not-a-uuid', auth)).status, 400);

    for (const { bookingId } of bookings) {
      for (let i = 0; ; i++) {
        const answer = await get(`/booking/${bookingId}`, auth);
        assert.equal(answer.status, 200);
        const { status } = (await answer.json()) as { status: string };
        if (status === 'CONFIRMED') break;
        if (i >= 600) assert.fail(`booking ${bookingId} is still ${status} after 60 s`);
        await sleep(100);
      }
    }
    assert.equal((await get('/orders', auth)).status, 200);

    // What Kafka does now and then: a message delivered again (ignored as a
    // duplicate) and a poison message (dead-lettered at once, a 400).
    const producer = createKafka('observability-test', brokers).producer();
    await producer.connect();
    try {
      const first = bookings[0]!;
      await producer.send({
        topic,
        messages: [
          { key: first.bookingId, value: JSON.stringify({ bookingId: first.bookingId, userId: first.userId, eventId: first.eventId, ticketCount: first.ticketCount }) },
          { key: 'poison', value: JSON.stringify({ bookingId: 'not-a-uuid' }) },
        ],
      });
    } finally {
      await producer.disconnect();
    }

    // Every panel's query answers with data; every exact selector in them
    // names series that exist; and Prometheus scrapes every job.
    const queries = dashboardQueries();
    assert.ok(queries.length > 0, 'the dashboard has queries');
    const selectors = [...new Set(queries.flatMap((q) => exactSelectors(q.expr)))];
    const jobs = config.scrape_configs.map((job) => job.job_name);
    const query = async (expr: string) => {
      const answer = (await (await fetch(`${prometheusUrl}/api/v1/query?${new URLSearchParams({ query: expr })}`)).json()) as {
        status: string;
        error?: string;
        data?: { result: { metric: Record<string, string>; value: [number, string] }[] };
      };
      assert.equal(answer.status, 'success', `Prometheus refused ${expr}: ${answer.error}`);
      return answer.data?.result ?? [];
    };
    let missing: string[] = [];
    const deadline = Date.now() + PANEL_WAIT_MS;
    for (let round = 0; round < PANEL_WAIT_MS / 1000; round++) {
      missing = [];
      for (const q of queries) if (!(await query(q.expr)).length) missing.push(`panel "${q.panel}" has no data: ${q.expr}`);
      for (const selector of selectors) if (!(await query(`count(${selector})`)).length) missing.push(`no series ${selector}`);
      const up = await query('up == 1');
      for (const job of jobs) if (!up.some((series) => series.metric.job === job)) missing.push(`job ${job} is not up`);
      if (!missing.length || Date.now() > deadline) break;
      await sleep(1000);
    }
    assert.deepEqual(missing, [], `after ${PANEL_WAIT_MS / 1000} s:\n${missing.join('\n')}\nprometheus:\n${prometheusLog.text}`);
  } finally {
    if (prometheus) await stop(prometheus, 'SIGTERM');
    startCode = await stop(start, 'SIGINT');
  }
  assert.equal(startCode, 0, `npm start did not stop cleanly:\n${output.text}`);
});
