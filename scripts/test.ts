import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { migrateDatabase } from '../shared/migrations.js';
import { dropDatabase, ensureDatabase, localPostgres } from './local-postgres.js';
import { kafkaForTests, keycloakForTests } from './services.js';

// `npm test`: every test file against a real, freshly migrated Postgres
// database of its own: DATABASE_URL's server if set, else the machine's at
// 127.0.0.1:5432 if it answers, else an embedded one. The database is
// dropped afterwards, whatever the outcome. A real Kafka broker and a real
// Keycloak are started too (KAFKA_BROKERS / KEYCLOAK_URL, else the project's
// scripts); each run publishes to topics of its own. Without them their
// tests skip loudly, except under CI=true, where they fail.
// `npm test -- <file>...` runs only those files (the checks still run first).
const roots = ['functions', 'shared', 'migrations', 'scripts', 'trigger', 'relay', 'admitter'];
const chosen = process.argv.slice(2);
const files = chosen.length ? chosen : roots.flatMap((root) =>
  readdirSync(root, { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.test.ts'))
    .map((file) => join(root, file))
    .sort(),
);

const server = process.env.DATABASE_URL
  ? { adminUrl: process.env.DATABASE_URL, stop: async () => undefined }
  : await localPostgres({ dataDir: '.data/test-postgres', port: 54330, preferMachine: true });
const run = randomBytes(4).toString('hex');
const name = `boxoffice_test_${run}`;
const [kafka, keycloak] = await Promise.all([kafkaForTests(), keycloakForTests()]);
if (!kafka) console.warn('\n*** Kafka could not be started: the Kafka tests will SKIP (and fail under CI=true) ***\n');
if (!keycloak) console.warn('\n*** Keycloak could not be started: the Keycloak test will SKIP (and fail under CI=true) ***\n');
const databaseUrl = await ensureDatabase(server.adminUrl, name);
let code: number;
try {
  // The demo customers are the Keycloak realm's users' customers.
  await migrateDatabase(databaseUrl, { demoData: true });
  console.log(`tests use database ${name} on ${new URL(databaseUrl).host}`);
  code = await runTests(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', ...files], {
    ...process.env,
    ...kafka?.env,
    ...keycloak?.env,
    BOOKING_TOPIC: `booking-test-${run}`,
    DATABASE_URL: databaseUrl,
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent',
  });
} finally {
  await dropDatabase(server.adminUrl, name);
  await server.stop();
  await kafka?.stop();
  await keycloak?.stop();
}
process.exit(code);

function runTests(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve) => {
    spawn(command, args, { stdio: 'inherit', env }).on('exit', (status) => resolve(status ?? 1));
  });
}
