import pg from 'pg';
import { config } from './config.js';
import { connectionUnusable } from './db-faults.js';
import { log } from './log.js';

export { databaseFault, isDatabaseUnavailable } from './db-faults.js';

/**
 * The connection settings every Postgres client of the project uses: a
 * bounded connect, server-side statement, lock and idle-in-transaction
 * timeouts, a client-side query timeout (a hung server or link cannot hold a
 * caller forever), TCP keep-alive and a name in pg_stat_activity.
 * `overrides` wins, e.g. longer timeouts for migrations.
 */
export function clientSettings(url: string = config.databaseUrl, overrides: Partial<pg.ClientConfig> = {}): pg.ClientConfig {
  return {
    connectionString: url,
    connectionTimeoutMillis: config.databaseConnectTimeoutMs,
    statement_timeout: config.databaseStatementTimeoutMs,
    lock_timeout: config.databaseLockTimeoutMs,
    idle_in_transaction_session_timeout: config.databaseIdleInTransactionTimeoutMs,
    query_timeout: config.databaseQueryTimeoutMs,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    application_name: process.env.FUNCTION_NAME ? `boxoffice-${process.env.FUNCTION_NAME}` : 'boxoffice',
    ...overrides,
  };
}

// numeric (money) and bigint stay strings: exact, never a binary float.
export const pool = new pg.Pool({
  ...clientSettings(),
  max: config.databasePoolSize,
  idleTimeoutMillis: 30_000,
  // Idle connections alone never keep a process alive (scripts, test files).
  allowExitOnIdle: true,
});

// pg-pool listens for errors only on idle clients: a connection that dies
// while its client is checked out (inside a transaction, between queries)
// would emit an unhandled 'error' and crash the process. Every client gets a
// listener of its own for its whole life; the query in flight, if any, fails
// on its own, and the pool drops the client on release.
pool.on('connect', (client) => {
  client.on('error', (error) => log.warn({ err: error }, 'database connection lost'));
});
// The pool re-emits an idle client's error, which the listener above has logged.
pool.on('error', () => undefined);

export type Queryable = Pick<pg.PoolClient, 'query'>;

/**
 * Runs `work` in one transaction: committed if it returns, rolled back if it
 * throws. A client whose connection broke, or that cannot roll back, is
 * destroyed on release, never handed out again.
 */
export async function transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    broken = connectionUnusable(error) || !(await rolledBack(client));
    throw error;
  } finally {
    client.release(broken);
  }
}

async function rolledBack(client: pg.PoolClient): Promise<boolean> {
  try {
    await client.query('ROLLBACK');
    return true;
  } catch {
    return false;
  }
}

/** True when the database answers a trivial query. */
export async function databaseIsUp(): Promise<boolean> {
  try {
    await pool.query('SELECT 1');
    return true;
  } catch {
    return false;
  }
}
