import pg from 'pg';
import { config } from './config.js';
import { log } from './log.js';

// numeric (money) and bigint stay strings: exact, never a binary float.
export const pool = new pg.Pool({
  connectionString: config.databaseUrl,
  max: config.databasePoolSize,
  connectionTimeoutMillis: 5_000,
  idleTimeoutMillis: 30_000,
  // Idle connections alone never keep a process alive (scripts, test files).
  allowExitOnIdle: true,
});

export type Queryable = Pick<pg.PoolClient, 'query'>;

/** Runs `work` in one transaction: committed if it returns, rolled back if it throws. */
export async function transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
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

// An idle client losing its connection must not crash the process; the pool
// replaces it on the next checkout.
pool.on('error', (error) => log.warn({ err: error }, 'idle database connection failed'));
