import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { dropDatabase, ensureDatabase } from './local-postgres.js';

// `npm start` end to end, on a database of its own on the test server:
// migrations and demo data, every function in its own process, the
// gateway, and a clean stop.
test('npm start serves the demo catalogue through the gateway and stops cleanly', async (t) => {
  const adminUrl = new URL(process.env.DATABASE_URL ?? '');
  adminUrl.pathname = '/postgres';
  const name = `boxoffice_start_${process.pid}`;
  const databaseUrl = await ensureDatabase(adminUrl.toString(), name);
  t.after(() => dropDatabase(adminUrl.toString(), name));

  const gatewayPort = 18080;
  // No OIDC_ISSUER: npm start runs its dev issuer, as on a fresh clone.
  const startEnv = { ...process.env, OIDC_ISSUER: '', BOOKING_TOPIC: `booking-start-${process.pid}`, TRIGGER_GROUP: `start-${process.pid}`, GATEWAY_PORT: String(gatewayPort), FUNCTIONS_BASE_PORT: '18081', DEV_ISSUER_PORT: '18079' };
  const start = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts'], {
    env: { ...startEnv, DATABASE_URL: databaseUrl },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  start.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  try {
    while (!output.includes('gateway ready')) {
      if (start.exitCode !== null) assert.fail(`npm start exited early:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }

    const events = (await (await fetch(`http://127.0.0.1:${gatewayPort}/api/v1/inventory/events`)).json()) as { eventId: number; event: string }[];
    assert.ok(events.some((e) => e.event === 'Late Night Jazz Trio'), 'demo events are served');
    const venue = await fetch(`http://127.0.0.1:${gatewayPort}/api/v1/inventory/venue/1`);
    assert.equal(venue.status, 200);
    assert.equal((await fetch(`http://127.0.0.1:${gatewayPort}/api/v1/inventory/event/x`)).status, 400);

    // The README's way to book: a token from `npm run token`, verified by the dev issuer's keys.
    const token = await stdoutOf(spawn(process.execPath, ['--import', 'tsx', 'scripts/token.ts', 'alice'], { env: startEnv }));
    const book = (authorization?: string) =>
      fetch(`http://127.0.0.1:${gatewayPort}/api/v1/booking`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
        body: JSON.stringify({ userId: 1, eventId: 2, ticketCount: 1 }),
      });
    assert.equal((await book()).status, 401);
    assert.equal((await book(`Bearer ${token.trim()}`)).status, 201);
  } finally {
    start.kill('SIGINT');
    const [code] = (await once(start, 'exit')) as [number | null];
    assert.equal(code, 0, output);
  }
});

async function stdoutOf(child: ChildProcessWithoutNullStreams): Promise<string> {
  let text = '';
  child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.equal(code, 0);
  return text;
}
