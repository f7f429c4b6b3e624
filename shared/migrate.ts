import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { migrate } from 'postgres-migrations';

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
if (process.argv[1] && fileURLToPath(import.meta.url).replace(/\.ts$/, '') === process.argv[1].replace(/\.(ts|js)$/, '')) {
  const url = process.env.DATABASE_URL;
  if (!url) {
    console.error('boxoffice: set DATABASE_URL to migrate');
    process.exit(1);
  }
  await migrateDatabase(url, { demoData: process.argv.includes('--demo') });
  console.log('migrations applied');
}
