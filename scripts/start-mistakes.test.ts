import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import pg from 'pg';
import { DatabaseUnreachable } from '../shared/migrations.js';
import { signingKey, startDevIssuer } from './dev-issuer.js';
import { freePort, freePortBlock, functionNames } from './functions.js';
import { dropDatabase, ensureDatabase, folderPostgresCannotEnter } from './local-postgres.js';
import { procStat } from './proc.js';

// A new user's mistakes, each made for real: npm start (or a function, or
// `npm run token`) must answer with one clear line and a non-zero exit,
// never a stack trace, having changed nothing and left no process behind.
const repo = resolve(import.meta.dirname, '..');
const adminUrl = new URL(process.env.DATABASE_URL ?? '');
adminUrl.pathname = '/postgres';
// An empty database: npm start must refuse before it migrates anything into it.
const databaseName = `boxoffice_mistakes_${process.pid}`;
let databaseUrl = '';
before(async () => (databaseUrl = await ensureDatabase(adminUrl.toString(), databaseName)));
after(() => dropDatabase(adminUrl.toString(), databaseName));

const limit = { timeout: 120_000 };
const stackFrame = /^\s+at /m;

interface Outcome {
  code: number | null;
  output: string;
}

/**
 * Runs `node --import tsx <args>` in a process group of its own until it
 * exits, and checks that nothing of that group outlives it.
 */
async function run(args: string[], env: NodeJS.ProcessEnv, cwd = repo): Promise<Outcome> {
  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), ...args], { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  // tsx's esbuild service leaves a moment after the process it served.
  let left = processesOfGroup(child.pid!);
  for (let waited = 0; left.length && waited < 50; waited++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    left = processesOfGroup(child.pid!);
  }
  const named = left.map((pid) => `${pid} ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')}`);
  for (const pid of left) process.kill(pid, 'SIGKILL');
  assert.deepEqual(named, [], `processes left behind:\n${output}`);
  return { code, output };
}

/** The processes still in process group `pgrp`. */
function processesOfGroup(pgrp: number): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)
    .filter((pid) => procStat(pid)?.pgrp === pgrp);
}

/** The environment of an npm start on ports nothing uses, on the empty database unless `overrides` name another. */
async function startEnv(overrides: NodeJS.ProcessEnv = {}): Promise<NodeJS.ProcessEnv> {
  // npm start would say that it ignores PORT: one line more.
  const inherited = { ...process.env };
  delete inherited.PORT;
  return {
    ...inherited,
    DATABASE_URL: databaseUrl,
    OIDC_ISSUER: '',
    KAFKA_BROKERS: '',
    GATEWAY_PORT: String(await freePort()),
    FUNCTIONS_BASE_PORT: String(await freePortBlock(functionNames().length + 3)),
    DEV_ISSUER_PORT: String(await freePort()),
    EMBEDDED_POSTGRES_PORT: String(await freePort()),
    ...overrides,
  };
}

function npmStart(env: NodeJS.ProcessEnv, cwd?: string): Promise<Outcome> {
  return run(['scripts/start.ts'], env, cwd);
}

/** Refused in one line, with a non-zero exit and no stack trace. */
function assertRefused(outcome: Outcome, line: RegExp): void {
  assert.notEqual(outcome.code, 0, outcome.output);
  assert.match(outcome.output, line);
  assert.doesNotMatch(outcome.output, stackFrame, 'no stack trace');
}

async function assertDatabaseUntouched(): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ tables: number }>("SELECT count(*)::int AS tables FROM pg_tables WHERE schemaname = 'public'");
    assert.equal(rows[0]?.tables, 0, 'nothing was migrated');
  } finally {
    await client.end();
  }
}

async function listen(t: TestContext, server: Server | ReturnType<typeof createHttpServer>, port: number): Promise<void> {
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
}

test('a second npm start on the ports of a running one refuses before migrating, naming each port and the setting that moves it, and never asks the other one\'s functions if they are ready', limit, async (t) => {
  const env = await startEnv();
  const [gateway, first] = [Number(env.GATEWAY_PORT), Number(env.FUNCTIONS_BASE_PORT)];
  // The first instance: its gateway and its functions, each ready; only the dev issuer's port differs.
  let readinessAsked = 0;
  const running = () => createHttpServer((req, res) => {
    if (req.url === '/_/ready') readinessAsked += 1;
    res.end('{"status":"ready"}');
  });
  await listen(t, running(), gateway);
  for (const index of functionNames().keys()) await listen(t, running(), first + index);

  const outcome = await npmStart(env);
  const names = functionNames().map((name, index) => `${first + index} \\(${name}\\)`).join(', ');
  assertRefused(
    outcome,
    new RegExp(
      `^\\[boxoffice\\] start-up failed: port ${gateway} \\(the gateway\\) is already in use: set GATEWAY_PORT to a free port; ` +
        `ports ${names} are already in use: set FUNCTIONS_BASE_PORT to the first of ${functionNames().length + 2} free ports in a row ` +
        '\\(is another npm start running\\?\\)$',
      'm',
    ),
  );
  assert.equal(readinessAsked, 0, 'no readiness check against the other instance');
  await assertDatabaseUntouched();
});

test('npm start refuses when the dev issuer\'s or the embedded Postgres\'s port is taken, naming DEV_ISSUER_PORT and EMBEDDED_POSTGRES_PORT, before starting a Postgres', limit, async (t) => {
  const env = await startEnv({ DATABASE_URL: '' });
  await listen(t, createServer(), Number(env.DEV_ISSUER_PORT));
  await listen(t, createServer(), Number(env.EMBEDDED_POSTGRES_PORT));

  const outcome = await npmStart(env);
  assertRefused(
    outcome,
    new RegExp(
      `^\\[boxoffice\\] start-up failed: port ${env.DEV_ISSUER_PORT} \\(the dev token issuer\\) is already in use: set DEV_ISSUER_PORT to a free port; ` +
        `port ${env.EMBEDDED_POSTGRES_PORT} \\(the embedded Postgres\\) is already in use: set EMBEDDED_POSTGRES_PORT to a free port`,
      'm',
    ),
  );
  assert.doesNotMatch(outcome.output, /starting an embedded Postgres/);
});

test('a database nothing listens for: npm start names DATABASE_URL without its password, says the connection was refused, and exits 1', limit, async () => {
  const port = await freePort();
  const outcome = await npmStart(await startEnv({ DATABASE_URL: `postgres://boxoffice:hunter2@127.0.0.1:${port}/boxoffice` }));
  assertRefused(
    outcome,
    new RegExp(
      `^\\[boxoffice\\] start-up failed: cannot connect to the database at postgres://boxoffice@127\\.0\\.0\\.1:${port}/boxoffice \\(DATABASE_URL\\): ` +
        'connection refused \\(is Postgres running there\\?\\); fix DATABASE_URL, or unset it for an embedded Postgres$',
      'm',
    ),
  );
  assert.doesNotMatch(outcome.output, /hunter2/, 'the password is never printed');
});

test('a database that accepts connections and never answers: npm start gives up after DATABASE_CONNECT_TIMEOUT_MS and says so in one line', limit, async (t) => {
  const silent = createServer((socket) => t.after(() => socket.destroy()));
  const port = await freePort();
  await listen(t, silent, port);
  const outcome = await npmStart(await startEnv({ DATABASE_URL: `postgres://boxoffice:hunter2@127.0.0.1:${port}/boxoffice`, DATABASE_CONNECT_TIMEOUT_MS: '500' }));
  assertRefused(
    outcome,
    new RegExp(`^\\[boxoffice\\] start-up failed: cannot connect to the database at postgres://boxoffice@127\\.0\\.0\\.1:${port}/boxoffice \\(DATABASE_URL\\): no answer within 500 ms \\(DATABASE_CONNECT_TIMEOUT_MS\\); `, 'm'),
  );
  assert.doesNotMatch(outcome.output, /hunter2/);
});

test('a database that does not exist on a real server: npm start names it in one line and exits 1', limit, async () => {
  const missing = new URL(databaseUrl);
  missing.pathname = `/boxoffice_missing_${process.pid}`;
  const outcome = await npmStart(await startEnv({ DATABASE_URL: missing.toString() }));
  assertRefused(outcome, new RegExp(`^\\[boxoffice\\] start-up failed: cannot connect to the database at .*: database "boxoffice_missing_${process.pid}" does not exist \\(create it, or name another\\)`, 'm'));
});

test('an unknown database host is named as such (the resolver\'s error built here: asking a real resolver would leave this machine)', () => {
  const notFound = Object.assign(new Error('getaddrinfo ENOTFOUND db.example'), { code: 'ENOTFOUND', hostname: 'db.example' });
  assert.equal(new DatabaseUnreachable('postgres://app:hunter2@db.example/boxoffice', notFound).reason, 'unknown host db.example');
  // Several addresses tried at once fail together, with an empty message of their own.
  const refused = Object.assign(new Error('connect ECONNREFUSED ::1:5432'), { code: 'ECONNREFUSED' });
  assert.equal(new DatabaseUnreachable('postgres://localhost/boxoffice', new AggregateError([refused], '')).reason, 'connection refused (is Postgres running there?)');
});

test('bad settings, of npm start or of what it runs (read as their modules load), are refused in one line before any work', limit, async () => {
  const secretless = join(tmpdir(), `boxoffice-no-such-secret-${process.pid}`);
  const cases: [NodeJS.ProcessEnv, RegExp][] = [
    [{ GATEWAY_PORT: 'eighty' }, /start-up failed: GATEWAY_PORT must be an integer from 1 to 65535, got "eighty"$/m],
    [{ FUNCTIONS_BASE_PORT: '65530' }, /start-up failed: FUNCTIONS_BASE_PORT must leave \d+ ports below 65536, got 65530$/m],
    [{ MAX_INFLIGHT: '0' }, /start-up failed: MAX_INFLIGHT must be an integer >= 1, got "0"$/m],
    [{ OIDC_TIMEOUT_MS: 'soon' }, /start-up failed: OIDC_TIMEOUT_MS must be an integer >= 1, got "soon"$/m],
    [{ FUNCTION_SERVER: 'fast' }, /start-up failed: FUNCTION_SERVER must be lean or framework, got "fast"$/m],
    [{ LOG_LEVEL: 'loud' }, /start-up failed: LOG_LEVEL must be one of .*, got "loud"$/m],
    [{ RELAY_BATCH: '0' }, /start-up failed: RELAY_BATCH must be an integer >= 1, got "0"$/m],
    [{ ADMITTER_TICK_MS: '10' }, /start-up failed: ADMITTER_TICK_MS must be an integer from 100 to 3600000, got "10"$/m],
    [{ QUEUE_PASS_KEY: 'short' }, /start-up failed: QUEUE_PASS_KEY must be a random secret of at least 32 characters, got 5$/m],
    [{ DATABASE_URL: 'localhost:5432/boxoffice' }, /start-up failed: DATABASE_URL must be a URL like postgres:\/\/user:password@host:5432\/database$/m],
    [{ DATABASE_URL_FILE: secretless }, new RegExp(`start-up failed: DATABASE_URL_FILE names ${secretless}, which cannot be read: ENOENT`, 'm')],
  ];
  for (const [settings, line] of cases) {
    const outcome = await npmStart(await startEnv(settings));
    assertRefused(outcome, line);
    assert.equal(outcome.output.trim().split('\n').length, 1, `one line:\n${outcome.output}`);
  }
  await assertDatabaseUntouched();
});

test('a function process with a bad PORT or an unreadable secret file prints one line and exits 1', limit, async () => {
  const cases: [NodeJS.ProcessEnv, RegExp][] = [
    [{ PORT: 'http' }, /^boxoffice get-event: PORT must be an integer from 0 to 65535, got "http"$/m],
    [{ DATABASE_URL_FILE: '/nonexistent/database-url' }, /^boxoffice get-event: DATABASE_URL_FILE names \/nonexistent\/database-url, which cannot be read: ENOENT/m],
  ];
  for (const [settings, line] of cases) {
    const outcome = await run(['shared/run.ts', 'get-event'], { ...process.env, ...settings });
    assert.equal(outcome.code, 1, outcome.output);
    assert.match(outcome.output, line);
    assert.doesNotMatch(outcome.output, stackFrame);
  }
});

test('as root in a folder the user postgres cannot enter, npm start names that folder and what to do, and leaves no process nor password file', limit, async (t) => {
  if (!rootWithPostgresUser(t)) return;
  // A fresh clone inside a private folder (mode 700, like /root): its code
  // is this checkout's, its data folder is inside.
  const privateFolder = mkdtempSync(join(tmpdir(), 'boxoffice-private-'));
  t.after(() => rmSync(privateFolder, { recursive: true, force: true }));
  const clone = join(privateFolder, 'boxoffice');
  mkdirSync(clone);
  for (const entry of ['admitter', 'functions', 'migrations', 'node_modules', 'package.json', 'relay', 'scripts', 'shared', 'trigger', 'tsconfig.json']) {
    symlinkSync(join(repo, entry), join(clone, entry));
  }
  const passwordFiles = () => readdirSync(tmpdir()).filter((name) => name.startsWith('pg-password-'));
  const before = passwordFiles();

  const outcome = await npmStart(await startEnv({ DATABASE_URL: '' }), clone);
  assertRefused(
    outcome,
    new RegExp(
      `^\\[boxoffice\\] start-up failed: as root, the embedded Postgres runs as the user postgres, who cannot enter ${privateFolder} \\(mode 700\\): ` +
        'clone boxoffice into a folder that user can enter \\(e\\.g\\. under /srv or /opt\\), or set DATABASE_URL to a Postgres you run$',
      'm',
    ),
  );
  assert.deepEqual(readdirSync(clone).sort(), ['admitter', 'functions', 'migrations', 'node_modules', 'package.json', 'relay', 'scripts', 'shared', 'trigger', 'tsconfig.json'], 'no data folder made');
  assert.deepEqual(passwordFiles().filter((name) => !before.includes(name)), [], 'no password file left');
});

test('the check for the user postgres finds the first folder on the way it cannot enter, and none once that folder is open', (t) => {
  if (!rootWithPostgresUser(t)) return;
  const top = mkdtempSync(join(tmpdir(), 'boxoffice-enter-'));
  t.after(() => rmSync(top, { recursive: true, force: true }));
  const programs = join(top, 'node_modules', 'bin');
  mkdirSync(programs, { recursive: true });

  assert.equal(folderPostgresCannotEnter([programs, join(top, '.data', 'postgres')]), top, 'mkdtemp makes it 700');
  chmodSync(top, 0o755);
  assert.equal(folderPostgresCannotEnter([programs, join(top, '.data', 'postgres')]), undefined);
  chmodSync(programs, 0o700);
  assert.equal(folderPostgresCannotEnter([programs]), programs);
});

/** Root with a user postgres, the only setting in which the embedded Postgres runs as another user; else a loud skip (a failure under CI=true). */
function rootWithPostgresUser(t: TestContext): boolean {
  if (process.getuid?.() === 0 && spawnSync('id', ['postgres']).status === 0) return true;
  const reason = 'only root runs the embedded Postgres as the user postgres';
  if (process.env.CI === 'true') assert.fail(`under CI=true nothing skips: ${reason}`);
  t.skip(`SKIPPED: ${reason}`);
  return false;
}

test('npm run token signs for the dev issuer npm start runs, wherever it runs, and says so in one line when none is running', limit, async (t) => {
  // A checkout of its own: tests of other files run npm start in this one at the same time.
  const checkout = mkdtempSync(join(tmpdir(), 'boxoffice-token-'));
  t.after(() => rmSync(checkout, { recursive: true, force: true }));
  const urlFile = join(checkout, '.data', 'dev-issuer', 'url');
  const key = await signingKey(join(checkout, '.data', 'dev-issuer', 'key.json'));
  const env = { ...process.env, OIDC_ISSUER: '', DEV_ISSUER_PORT: '' };
  const token = () => run([join(repo, 'scripts', 'token.ts'), 'alice'], env, checkout);

  const issuer = await startDevIssuer(key, await freePort(), { urlFile });
  const signed = await token();
  assert.equal(signed.code, 0, signed.output);
  const claims = JSON.parse(Buffer.from(signed.output.trim().split('.')[1] ?? '', 'base64url').toString()) as { iss: string };
  assert.equal(claims.iss, issuer.issuer, 'the token names the issuer that runs, not port 8079');

  await issuer.stop();
  const none = await token();
  assertRefused(none, /^boxoffice: no dev issuer is running \(npm start writes its address to \.data\/dev-issuer\/url\): start npm start, or set OIDC_ISSUER$/m);

  // An address left by an npm start that was killed: nothing answers there.
  writeFileSync(urlFile, `${issuer.issuer}\n`);
  const stale = await token();
  assertRefused(stale, new RegExp(`^boxoffice: the dev issuer at ${issuer.issuer} \\(from \\.data/dev-issuer/url\\) does not answer: is npm start running\\?$`, 'm'));
});
