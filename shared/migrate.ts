import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { migrate } from 'postgres-migrations';
import { config } from './config.js';
import { clientSettings } from './db.js';

// From the source tree (shared/) and the built one (dist/shared/) alike.
const migrationsDir = [new URL('../migrations', import.meta.url), new URL('../../migrations', import.meta.url)]
  .map((url) => fileURLToPath(url))
  .find((dir) => existsSync(dir));

/**
 * Brings the database at `databaseUrl` to the newest schema (postgres-
 * migrations takes an advisory lock, so concurrent starts are safe) and,
 * when asked, loads the demo catalogue and customers.
 */
export async function migrateDatabase(databaseUrl: string, options: { demoData?: boolean } = {}): Promise<void> {
  if (!migrationsDir) throw new Error('migrations folder not found');
  const timeout = config.databaseMigrationTimeoutMs;
  // Migrations may rewrite tables: longer statement and lock timeouts than
  // requests get. The advisory lock that serialises concurrent starts is not
  // bound by them (postgres-migrations polls pg_try_advisory_lock).
  const client = new pg.Client(
    clientSettings(databaseUrl, {
      statement_timeout: timeout,
      lock_timeout: timeout,
      idle_in_transaction_session_timeout: timeout,
      query_timeout: timeout + config.databaseConnectTimeoutMs,
      application_name: 'boxoffice-migrate',
    }),
  );
  // A broken connection also fails the query in flight; unheard, it would crash the process.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    throw new Error(`cannot connect to the database at ${where(databaseUrl)} to migrate it: ${(error as Error).message}`, { cause: error });
  }
  try {
    await migrate({ client }, migrationsDir, { logger: () => undefined });
    if (options.demoData) await client.query(await readFile(`${migrationsDir}/demo/demo-data.sql`, 'utf8'));
  } finally {
    await client.end();
  }
}

/** Host, port and database of a URL, without its credentials. */
function where(databaseUrl: string): string {
  try {
    const url = new URL(databaseUrl);
    return `${url.host}${url.pathname}`;
  } catch {
    return 'DATABASE_URL';
  }
}

// `node shared/migrate.js [--demo]`: the one-shot migration step of a deployment.
const withoutExtension = (path: string) => path.replace(/\.(ts|js)$/, '');
if (process.argv[1] && withoutExtension(fileURLToPath(import.meta.url)) === withoutExtension(process.argv[1])) {
  const url = config.databaseUrl;
  await migrateDatabase(url, { demoData: process.argv.includes('--demo') });
  console.log('migrations applied');
}
