import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';

// Settings are small functions over process.env rather than a schema (such
// as env-schema): each module reads its own where it uses them, with bounds
// and cross-checks in plain code and messages that name the variable and the
// value. The one place that checks them all is npm start's check
// (scripts/start.ts), which loads every module that reads one.

/** A setting that cannot be used; start-up prints it as one line and exits 1. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** An integer setting from the environment, or `fallback`; anything else is a ConfigError. */
export function integerSetting(name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (Number.isSafeInteger(value) && value >= min && value <= max) return value;
  const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
  throw new ConfigError(`${name} must be an integer ${range}, got "${raw}"`);
}

/** A TCP port setting (0, where `min` allows it, lets the system pick one). */
export function portSetting(name: string, fallback: number, min = 1): number {
  return integerSetting(name, fallback, min, 65_535);
}

/** A secret from the file `<name>_FILE` names (OpenFaaS, Docker secrets), else from `<name>`. */
export function secret(name: string): string | undefined {
  const file = process.env[`${name}_FILE`];
  if (!file) return process.env[name] || undefined;
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (error) {
    throw new ConfigError(`${name}_FILE names ${file}, which cannot be read: ${(error as Error).message}`);
  }
}

/** DATABASE_URL (or the file DATABASE_URL_FILE names), checked to be a Postgres URL; never echoed, as it may hold a password. */
function databaseUrlSetting(): string | undefined {
  const url = secret('DATABASE_URL');
  if (url === undefined || (URL.canParse(url) && /^(postgres|postgresql|socket):$/.test(new URL(url).protocol))) return url;
  const source = process.env.DATABASE_URL_FILE ? `the content of DATABASE_URL_FILE (${process.env.DATABASE_URL_FILE})` : 'DATABASE_URL';
  throw new ConfigError(`${source} must be a URL like postgres://user:password@host:5432/database`);
}

/** `url` without its password, to name a database in a message. */
export function withoutPassword(url: string): string {
  if (!URL.canParse(url)) return '(not a URL)';
  const parsed = new URL(url);
  parsed.password = '';
  return parsed.toString();
}

/**
 * Where to listen: HOST, or every interface when unset, as a container must.
 * `npm start` sets 127.0.0.1, so nothing it runs is reachable from the network.
 */
function hostSetting(): string | undefined {
  const host = process.env.HOST;
  if (!host || isIP(host) || /^[a-z\d]([a-z\d-]*[a-z\d])?(\.[a-z\d]([a-z\d-]*[a-z\d])?)*$/i.test(host)) return host || undefined;
  throw new ConfigError(`HOST must be an IP address or a host name, got "${host}"`);
}

const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function logLevelSetting(): string {
  const level = process.env.LOG_LEVEL || 'info';
  if (logLevels.includes(level)) return level;
  throw new ConfigError(`LOG_LEVEL must be one of ${logLevels.join(', ')}, got "${level}"`);
}

/**
 * Every setting a function reads, from the environment, checked as this
 * module loads: a bad one throws a ConfigError from the first import, which
 * is why entry points (shared/run.ts, scripts/start.ts) import what reads
 * settings only inside their error handling.
 */
export const config = {
  port: portSetting('PORT', 8080, 0),
  host: hostSetting(),
  databaseUrl: databaseUrlSetting() ?? 'postgres://postgres@127.0.0.1:5432/boxoffice',
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
  /** How long a request's headers may take to arrive, from its first byte; then 408. */
  requestHeadersTimeoutMs: integerSetting('REQUEST_HEADERS_TIMEOUT_MS', 5_000, 1),
  /** How long a whole request, headers and body, may take to arrive, from its first byte; then 408. */
  requestTimeoutMs: integerSetting('REQUEST_TIMEOUT_MS', 10_000, integerSetting('REQUEST_HEADERS_TIMEOUT_MS', 5_000, 1)),
  /** How long SIGTERM waits for in-flight requests before closing anyway. */
  drainTimeoutMs: integerSetting('DRAIN_TIMEOUT_MS', 10_000, 0),
  logLevel: logLevelSetting(),
};
