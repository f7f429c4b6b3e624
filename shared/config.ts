import { readFileSync } from 'node:fs';

/** A setting that cannot be used; start-up prints it and exits 1. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** An integer setting from the environment, or `fallback`; anything else is a ConfigError. */
export function integerSetting(name: string, fallback: number, min = 0): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < min) throw new ConfigError(`${name} must be an integer >= ${min}, got "${raw}"`);
  return value;
}

/** A secret from the file `<name>_FILE` names (OpenFaaS, Docker secrets), else from `<name>`. */
function secret(name: string): string | undefined {
  const file = process.env[`${name}_FILE`];
  if (!file) return process.env[name] || undefined;
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (error) {
    throw new ConfigError(`${name}_FILE names ${file}, which cannot be read: ${(error as Error).message}`);
  }
}

/** Every setting a function reads, from the environment, checked once. */
export const config = {
  port: integerSetting('PORT', 8080, 0),
  databaseUrl: secret('DATABASE_URL') ?? 'postgres://postgres@127.0.0.1:5432/boxoffice',
  databasePoolSize: integerSetting('DATABASE_POOL_SIZE', 10, 1),
  /** How long opening a connection (or waiting for a free one in the pool) may take. */
  databaseConnectTimeoutMs: integerSetting('DATABASE_CONNECT_TIMEOUT_MS', 5_000, 1),
  /** Server side: a statement running longer is cancelled (0: no limit). */
  databaseStatementTimeoutMs: integerSetting('DATABASE_STATEMENT_TIMEOUT_MS', 5_000, 0),
  /** Server side: a statement waiting longer for a lock is cancelled (0: no limit). */
  databaseLockTimeoutMs: integerSetting('DATABASE_LOCK_TIMEOUT_MS', 2_000, 0),
  /** Server side: a session idle this long inside a transaction is ended (0: no limit). */
  databaseIdleInTransactionTimeoutMs: integerSetting('DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS', 10_000, 0),
  /** Client side: how long a query may wait for its answer, so a hung server or link cannot hold a request; above the statement timeout. */
  databaseQueryTimeoutMs: integerSetting('DATABASE_QUERY_TIMEOUT_MS', 10_000, 1),
  /** Statement and lock timeout of the migrations, which may rewrite tables. */
  databaseMigrationTimeoutMs: integerSetting('DATABASE_MIGRATION_TIMEOUT_MS', 60_000, 1),
  /** Largest request body read before the function runs; larger ones get 413. */
  bodyLimitBytes: integerSetting('BODY_LIMIT_BYTES', 64 * 1024, 1),
  /** Requests served at once before new ones are shed with 503 + Retry-After. */
  maxInflight: integerSetting('MAX_INFLIGHT', 256, 1),
  /** How long SIGTERM waits for in-flight requests before closing anyway. */
  drainTimeoutMs: integerSetting('DRAIN_TIMEOUT_MS', 10_000, 0),
  logLevel: process.env.LOG_LEVEL || 'info',
};
