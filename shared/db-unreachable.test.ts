import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { after, test } from 'node:test';

// The pool reads DATABASE_URL on import, so this file points it at a loopback
// port before importing anything that opens it: first nothing listens there
// (refused), then a server that accepts connections and never says a word.
const port = await closedPort();
const databaseUrl = `postgres://postgres@127.0.0.1:${port}/boxoffice`;
process.env.DATABASE_URL = databaseUrl;
process.env.DATABASE_CONNECT_TIMEOUT_MS = '300';

const { migrateDatabase } = await import('./migrations.js');
const { pool } = await import('./db.js');
const { serve } = await import('./test-support/index.js');
const { default: getEvent } = await import('../functions/get-event/index.js');

const fn = await serve(getEvent);
const silent = new Set<Socket>();
const silentServer = createServer((socket) => {
  silent.add(socket);
  socket.on('close', () => silent.delete(socket));
});
let accepted = 0;
silentServer.on('connection', () => (accepted += 1));

after(async () => {
  await fn.stop();
  for (const socket of silent) socket.destroy();
  silentServer.close();
  await pool.end();
});

/** A loopback port nothing listens on: one the system handed out, then closed. */
async function closedPort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port: free } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return free;
}

async function assertDatabaseUnavailable(res: Response): Promise<void> {
  assert.equal(res.status, 503);
  assert.ok(res.headers.get('retry-after'), 'a 503 says when to retry');
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
  assert.equal(((await res.json()) as { type: string }).type, 'urn:boxoffice:problem:database-unavailable');
}

test('with nothing listening at the database port, a function answers 503 problem+json with Retry-After, and is not ready', async () => {
  await assertDatabaseUnavailable(await fetch(`${fn.url}/api/v1/inventory/event/1`));
  assert.equal((await fetch(`${fn.url}/_/ready`)).status, 503);
});

test('migrating a database nothing listens for fails with a clear error', async () => {
  await assert.rejects(migrateDatabase(databaseUrl), { message: new RegExp(`^cannot connect to the database at 127\\.0\\.0\\.1:${port}/boxoffice to migrate it: .*ECONNREFUSED`) });
});

test('with a database that accepts connections and never answers, a function answers 503 once the connect timeout passes', async () => {
  silentServer.listen(port, '127.0.0.1');
  await once(silentServer, 'listening');
  const before = accepted;

  await assertDatabaseUnavailable(await fetch(`${fn.url}/api/v1/inventory/event/1`));
  assert.ok(accepted > before, 'the pool reached the silent server');
});

test('migrating a database that accepts connections and never answers fails with a clear error instead of hanging', { timeout: 30_000 }, async () => {
  assert.ok(silentServer.listening);
  const before = accepted;

  await assert.rejects(migrateDatabase(databaseUrl), { message: new RegExp(`^cannot connect to the database at 127\\.0\\.0\\.1:${port}/boxoffice to migrate it: .*timeout`) });
  assert.ok(accepted > before, 'the migration reached the silent server');
});
