import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { dropDatabase, ensureDatabase } from '../scripts/local-postgres.js';

// `node shared/migrate.js`, the migration step of a deployment, as an
// operator meets it: one line of output and an exit status, never a stack trace.

const run = promisify(execFile);

async function query(databaseUrl: string, sql: string): Promise<Record<string, string>> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return (await client.query<Record<string, string>>(sql)).rows[0]!;
  } finally {
    await client.end();
  }
}

async function migrate(env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(process.execPath, ['--import', 'tsx', 'shared/migrate.ts'], { env: { ...process.env, ...env }, timeout: 60_000 })
    .then(({ stdout, stderr }) => ({ code: 0, stdout, stderr }))
    .catch((error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }));
}

test('a bad setting is one line naming it and exit 1', async () => {
  for (const [env, named] of [
    [{ DATABASE_URL: 'nonsense' }, /^boxoffice migrate: DATABASE_URL must be a URL like postgres:/],
    [{ DATABASE_MIGRATION_TIMEOUT_MS: 'soon' }, /^boxoffice migrate: DATABASE_MIGRATION_TIMEOUT_MS/],
  ] as const) {
    const { code, stderr } = await migrate(env);
    assert.equal(code, 1, stderr);
    assert.match(stderr, named);
    assert.equal(stderr.trim().split('\n').length, 1, stderr);
  }
});

test('a database nothing listens for is one line naming it, without its password, and exit 1', async () => {
  const { code, stderr } = await migrate({ DATABASE_URL: 'postgres://boxoffice:s3cret@127.0.0.1:1/boxoffice' });
  assert.equal(code, 1, stderr);
  assert.match(stderr, /^boxoffice migrate: cannot connect to .*127\.0\.0\.1:1\/boxoffice.*: connection refused/);
  assert.doesNotMatch(stderr, /s3cret/);
  assert.equal(stderr.trim().split('\n').length, 1, stderr);
});

test('a fresh database is migrated with the demo data, and migrating it again succeeds and adds no second copy', async () => {
  const adminUrl = new URL(process.env.DATABASE_URL ?? '');
  adminUrl.pathname = '/postgres';
  const name = `boxoffice_migrate_cli_${process.pid}`;
  const databaseUrl = await ensureDatabase(adminUrl.toString(), name);
  const events: number[] = [];
  try {
    for (let round = 0; round < 2; round++) {
      const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'shared/migrate.ts', '--demo'], { env: { ...process.env, DATABASE_URL: databaseUrl }, timeout: 60_000 });
      assert.equal(stdout.trim(), 'migrations applied', stderr);
      events.push(Number((await query(databaseUrl, 'SELECT count(*) AS n FROM events')).n));
    }
    assert.ok(events[0]! > 0, 'the demo events are there');
    assert.equal(events[1], events[0]);
  } finally {
    await dropDatabase(adminUrl.toString(), name);
  }
});
