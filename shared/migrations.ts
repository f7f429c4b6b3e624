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
    throw new DatabaseUnreachable(databaseUrl, error);
  }
  try {
    await migrate({ client }, migrationsDir, { logger: () => undefined });
    if (options.demoData) await client.query(await readFile(`${migrationsDir}/demo/demo-data.sql`, 'utf8'));
  } finally {
    await client.end();
  }
}

/** The migration could not open a connection, so nothing was changed; `reason` says why in a few words. */
export class DatabaseUnreachable extends Error {
  override name = 'DatabaseUnreachable';
  readonly reason: string;

  constructor(
    readonly databaseUrl: string,
    cause: unknown,
  ) {
    // Happy eyeballs (a host with several addresses) fails with an AggregateError whose own message is empty.
    const first = (cause instanceof AggregateError ? cause.errors[0] : cause) as NodeJS.ErrnoException & { hostname?: string };
    super(`cannot connect to the database at ${where(databaseUrl)} to migrate it: ${first?.message}`, { cause });
    this.reason = connectFailure(first);
  }
}

/** Why a connection could not be opened, as its user would act on it. */
function connectFailure(error: NodeJS.ErrnoException & { hostname?: string }): string {
  switch (error?.code) {
    case 'ECONNREFUSED':
      return 'connection refused (is Postgres running there?)';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `unknown host ${error.hostname ?? ''}`.trim();
    case '3D000': // invalid_catalog_name: the database does not exist
      return `${error.message} (create it, or name another)`;
    case '28P01':
    case '28000': // invalid password, invalid authorization
      return `${error.message} (check the user and password)`;
  }
  // pg's own connect timeout (connectionTimeoutMillis) says only "timeout".
  if (/timeout/i.test(error?.message ?? '')) return `no answer within ${config.databaseConnectTimeoutMs} ms (DATABASE_CONNECT_TIMEOUT_MS)`;
  return error?.message || String(error);
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
