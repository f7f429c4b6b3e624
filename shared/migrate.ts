import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { migrate } from 'postgres-migrations';
import { config } from './config.js';

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
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await migrate({ client }, migrationsDir, { logger: () => undefined });
    if (options.demoData) await client.query(await readFile(`${migrationsDir}/demo/demo-data.sql`, 'utf8'));
  } finally {
    await client.end();
  }
}

// `node shared/migrate.js [--demo]`: the one-shot migration step of a deployment.
const withoutExtension = (path: string) => path.replace(/\.(ts|js)$/, '');
if (process.argv[1] && withoutExtension(fileURLToPath(import.meta.url)) === withoutExtension(process.argv[1])) {
  const url = config.databaseUrl;
  await migrateDatabase(url, { demoData: process.argv.includes('--demo') });
  console.log('migrations applied');
}
