import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
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
  const start = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts'], {
    env: { ...process.env, DATABASE_URL: databaseUrl, GATEWAY_PORT: String(gatewayPort), FUNCTIONS_BASE_PORT: '18081' },
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
  } finally {
    start.kill('SIGINT');
    const [code] = (await once(start, 'exit')) as [number | null];
    assert.equal(code, 0, output);
  }
});
