// `node shared/migrate.js [--demo]`: the one-shot migration step of a
// deployment. Settings are checked as their module loads, so this entry
// imports what reads them inside its error handling: a bad setting is one
// line and exit 1, never a stack trace.
try {
  const { config, withoutPassword } = await import('./config.js');
  const { migrateDatabase, DatabaseUnreachable } = await import('./migrations.js');
  await migrateDatabase(config.databaseUrl, { demoData: process.argv.includes('--demo') }).catch((error: unknown) => {
    throw error instanceof DatabaseUnreachable ? new Error(`cannot connect to ${withoutPassword(error.databaseUrl)}: ${error.reason}`) : error;
  });
  console.log('migrations applied');
} catch (error) {
  console.error(`boxoffice migrate: ${(error as Error).message}`);
  process.exit(1);
}
