import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import pg from 'pg';
import { freePort, freePortBlock, functionNames, untilReady } from './functions.js';
import { dropDatabase, ensureDatabase, localPostgres } from './local-postgres.js';

// `npm start` end to end, on a database of its own on the test server and
// ports nothing else uses: migrations and demo data, every function in its
// own process, the gateway, restarts of a child that dies, and stops that
// leave no process behind.
const adminUrl = new URL(process.env.DATABASE_URL ?? '');
adminUrl.pathname = '/postgres';
const databaseName = `boxoffice_start_${process.pid}`;
let databaseUrl = '';
before(async () => (databaseUrl = await ensureDatabase(adminUrl.toString(), databaseName)));
after(() => dropDatabase(adminUrl.toString(), databaseName));

const limit = { timeout: 180_000 };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface System {
  gateway: string;
  functionsPort: number;
  env: NodeJS.ProcessEnv;
  running(): boolean;
  output(): string;
  /** Every pid a launch or restart line named, with its name. */
  pids(): Map<number, string>;
  pidOf(name: string): number;
  /** Waits for a line of npm start's log matching `pattern`. */
  line(pattern: RegExp): Promise<RegExpExecArray>;
  /** SIGINT as a Ctrl-C delivers it (twice at once: the terminal, and npm relaying it); resolves with the exit status. */
  interrupt(): Promise<number | null>;
  exit: Promise<number | null>;
}

async function npmStart(t: TestContext, options: { env?: NodeJS.ProcessEnv } = {}): Promise<System> {
  const [gatewayPort, issuerPort] = [await freePort(), await freePort()];
  const functionsPort = await freePortBlock(functionNames().length + 3);
  // No OIDC_ISSUER: npm start runs its dev issuer, as on a fresh clone.
  const env = {
    ...process.env,
    OIDC_ISSUER: '',
    BOOKING_TOPIC: `booking-start-${process.pid}`,
    TRIGGER_GROUP: `start-${process.pid}`,
    GATEWAY_PORT: String(gatewayPort),
    FUNCTIONS_BASE_PORT: String(functionsPort),
    DEV_ISSUER_PORT: String(issuerPort),
    ...options.env,
  };
  const start = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts'], { env: { ...env, DATABASE_URL: databaseUrl } });
  const exit = once(start, 'exit').then(([code]) => code as number | null);
  let stdout = '';
  let stderr = '';
  start.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  start.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const running = () => start.exitCode === null && start.signalCode === null;
  const pids = () => new Map([...stdout.matchAll(/^\[boxoffice\] ([\w-]+) .*\(pid (\d+)\)$/gm)].map((m) => [Number(m[2]), m[1] ?? '']));

  t.after(async () => {
    if (running()) {
      start.kill('SIGKILL');
      await exit;
    }
    for (const pid of pids().keys()) if (alive(pid)) process.kill(pid, 'SIGKILL');
  });

  const system: System = {
    gateway: `http://127.0.0.1:${gatewayPort}`,
    functionsPort,
    env,
    running,
    output: () => `${stdout}\n--- stderr ---\n${stderr.slice(-4_000)}`,
    pids,
    pidOf(name) {
      const pid = [...pids()].reverse().find(([, named]) => named === name)?.[0];
      assert.ok(pid, `no pid for ${name}:\n${stdout}`);
      return pid;
    },
    async line(pattern) {
      for (const deadline = Date.now() + 120_000; ; ) {
        const match = stdout.split('\n').map((line) => pattern.exec(line)).find((m) => m !== null);
        if (match) return match;
        if (!running()) assert.fail(`npm start exited before logging ${pattern}:\n${system.output()}`);
        if (Date.now() > deadline) assert.fail(`npm start has not logged ${pattern}:\n${system.output()}`);
        await sleep(100);
      }
    },
    async interrupt() {
      start.kill('SIGINT');
      // The relayed copy comes a moment later (sent at once, the kernel would fold the two into one).
      await sleep(100);
      start.kill('SIGINT');
      return exit;
    },
    exit,
  };
  return system;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function assertNoneAlive(system: System): void {
  const left = [...system.pids()].filter(([pid]) => alive(pid));
  assert.deepEqual(left, [], `processes left alive:\n${system.output()}`);
}

/** The addresses something listens on at TCP `port`, from the kernel's tables (as `ss -ltn` shows them). */
function listeningAddresses(port: number): string[] {
  const addresses: string[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').trim().split('\n').slice(1)) {
      const [, local = '', , state] = line.trim().split(/\s+/);
      const [address = '', hexPort = ''] = local.split(':');
      // 0A: LISTEN. An IPv4 address is hex in little-endian order (0100007F: 127.0.0.1); IPv6 ones are left as hex.
      if (state !== '0A' || parseInt(hexPort, 16) !== port) continue;
      const ipv4 = (address.match(/../g) ?? []).reverse().map((byte) => parseInt(byte, 16));
      addresses.push(address.length === 8 ? ipv4.join('.') : `ipv6 ${address}`);
    }
  }
  return addresses;
}

test('npm start serves the demo catalogue through the gateway, listens on 127.0.0.1 only, and Ctrl-C stops it with status 0 and no process left', limit, async (t) => {
  const system = await npmStart(t);
  await system.line(/gateway ready/);
  const { gateway } = system;
  const names = [...system.pids().values()];
  for (const name of [...functionNames(), 'relay']) assert.ok(names.includes(name), `${name} was launched:\n${system.output()}`);

  // Every port npm start opened accepts on 127.0.0.1 and on no other address.
  const launched = [...system.output().matchAll(/^\[boxoffice\] [\w-]+ +http:\/\/127\.0\.0\.1:(\d+) /gm)].map((m) => Number(m[1]));
  assert.equal(launched.length, names.length, system.output());
  for (const port of launched) await untilHealthy(`http://127.0.0.1:${port}`);
  assert.equal((await fetch(`http://127.0.0.1:${system.env.DEV_ISSUER_PORT}/jwks`)).status, 200);
  for (const port of [...launched, new URL(gateway).port, system.env.DEV_ISSUER_PORT].map(Number)) {
    assert.deepEqual(listeningAddresses(port), ['127.0.0.1'], `port ${port} listens on 127.0.0.1 only`);
  }

  const events = (await (await fetch(`${gateway}/api/v1/inventory/events`)).json()) as { eventId: number; event: string }[];
  assert.ok(events.some((e) => e.event === 'Late Night Jazz Trio'), 'demo events are served');
  assert.equal((await fetch(`${gateway}/api/v1/inventory/venue/1`)).status, 200);
  assert.equal((await fetch(`${gateway}/api/v1/inventory/event/x`)).status, 400);

  // The README's way to book: a token from `npm run token`, verified by the dev issuer's keys.
  const token = await stdoutOf(spawn(process.execPath, ['--import', 'tsx', 'scripts/token.ts', 'alice'], { env: system.env }));
  const book = (authorization?: string) =>
    fetch(`${gateway}/api/v1/booking`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
      body: JSON.stringify({ userId: 1, eventId: 2, ticketCount: 1 }),
    });
  assert.equal((await book()).status, 401);
  const booked = await book(`Bearer ${token.trim()}`);
  assert.equal(booked.status, 201);

  // The relay delivers the booking to consume-order with the deliverers' token from the dev issuer; no one else may.
  const { bookingId } = (await booked.json()) as { bookingId: string };
  for (let status = '', deadline = Date.now() + 30_000; status !== 'CONFIRMED'; await sleep(100)) {
    assert.ok(Date.now() < deadline, `booking ${bookingId} still ${status} after 30 s:\n${system.output()}`);
    const read = await fetch(`${gateway}/api/v1/booking/${bookingId}`, { headers: { authorization: `Bearer ${token.trim()}` } });
    status = ((await read.json()) as { status: string }).status;
  }
  const consumeOrder = `http://127.0.0.1:${system.functionsPort + functionNames().indexOf('consume-order')}`;
  const anonymous = await fetch(consumeOrder, { method: 'POST', headers: { 'content-type': 'application/json', 'ce-specversion': '1.0', 'ce-id': 'x', 'ce-type': 't', 'ce-source': '/s' }, body: '{}' });
  assert.equal(anonymous.status, 401);

  assert.equal(await system.interrupt(), 0, system.output());
  assertNoneAlive(system);
});

test('a function killed with SIGKILL is restarted under a new pid, answers through the gateway again, and npm start keeps running', limit, async (t) => {
  const system = await npmStart(t);
  await system.line(/gateway ready/);
  const killed = system.pidOf('get-venue');

  process.kill(killed, 'SIGKILL');
  const restarted = Number((await system.line(/^\[boxoffice\] get-venue restarted \(pid (\d+)\)$/))[1]);
  assert.notEqual(restarted, killed);
  assert.match(system.output(), /^\[boxoffice\] get-venue exited \(signal SIGKILL\); restarting in 0\.5 s$/m);
  await untilReady(`http://127.0.0.1:${system.functionsPort + functionNames().indexOf('get-venue')}`);
  const venue = await fetch(`${system.gateway}/api/v1/inventory/venue/1`);
  assert.equal(venue.status, 200);
  assert.equal(((await venue.json()) as { venueId: number }).venueId, 1);
  assert.ok(system.running(), 'npm start keeps running');
  assert.ok(alive(restarted));
  assert.equal(alive(killed), false);

  assert.equal(await system.interrupt(), 0, system.output());
  assertNoneAlive(system);
});

test('npm start gives up on a child that keeps dying, names it, and exits 1 leaving no process', limit, async (t) => {
  const system = await npmStart(t, { env: { RESTART_LIMIT: '2' } });
  await system.line(/gateway ready/);
  process.kill(system.pidOf('relay'), 'SIGKILL');
  const restarted = Number((await system.line(/^\[boxoffice\] relay restarted \(pid (\d+)\)$/))[1]);
  process.kill(restarted, 'SIGKILL');
  assert.equal(await system.exit, 1, system.output());
  assert.match(system.output(), /^\[boxoffice\] giving up on relay: it exited 2 times within 60 s \(last: signal SIGKILL\)$/m);
  assert.equal([...system.pids().values()].filter((name) => name === 'relay').length, 2, system.output());
  assertNoneAlive(system);
});

test('the embedded Postgres npm start runs without DATABASE_URL listens on 127.0.0.1 only', limit, async (t) => {
  const folder = mkdtempSync(join(tmpdir(), 'boxoffice-embedded-'));
  // Started by root, it runs as the user postgres, who must enter the folder.
  chmodSync(folder, 0o755);
  t.after(() => rmSync(folder, { recursive: true, force: true }));
  const port = await freePort();
  const server = await localPostgres({ dataDir: join(folder, 'postgres'), port, preferMachine: false });
  t.after(() => server.stop());
  assert.deepEqual(listeningAddresses(port), ['127.0.0.1']);
  // Also where `localhost` would name ::1 too (not on every machine).
  const client = new pg.Client({ connectionString: server.adminUrl });
  await client.connect();
  try {
    assert.equal((await client.query<{ listen_addresses: string }>('SHOW listen_addresses')).rows[0]?.listen_addresses, '127.0.0.1');
  } finally {
    await client.end();
  }

  // A Ctrl-C reaches Postgres too, before npm start stops it: stopping it then must still end.
  const postmaster = Number(readFileSync(join(folder, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);
  process.kill(postmaster, 'SIGINT');
  while (alive(postmaster)) await sleep(50);
  await server.stop();
});

/** Resolves once `base` answers /_/health; a child not awaited by the gateway may still be starting. */
async function untilHealthy(base: string): Promise<void> {
  for (let attempt = 0; attempt < 300; attempt++) {
    if (await fetch(`${base}/_/health`).then((res) => res.ok, () => false)) return;
    await sleep(100);
  }
  assert.fail(`${base} never answered /_/health`);
}

async function stdoutOf(child: ChildProcessWithoutNullStreams): Promise<string> {
  let text = '';
  child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.equal(code, 0);
  return text;
}
