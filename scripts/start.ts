import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { kafkaBrokers } from '../shared/kafka.js';
import { migrateDatabase } from '../shared/migrate.js';
import { devIssuer, signingKey, startDevIssuer } from './dev-issuer.js';
import { loadDefinitions, untilReady } from './functions.js';
import { createGateway, type Upstream } from './gateway.js';
import { openApiDocument } from './openapi.js';
import { ensureDatabase, localPostgres } from './local-postgres.js';

// `npm start`: the whole system on one machine, each function in its own
// process on its own port as its container would run, behind a gateway.
const gatewayPort = Number(process.env.GATEWAY_PORT ?? 8080);
const firstPort = Number(process.env.FUNCTIONS_BASE_PORT ?? 8081);

const say = (line: string) => console.log(`[boxoffice] ${line}`);

const database = process.env.DATABASE_URL
  ? { url: process.env.DATABASE_URL, stop: async () => undefined }
  : await embeddedDatabase();
await migrateDatabase(database.url, { demoData: true });
say('database migrated, demo data loaded');

const definitions = await loadDefinitions();
const names = definitions.map((definition) => definition.name);
const children: ChildProcess[] = [];
const upstreams: Upstream[] = [];
let stopping = false;
const portOf = (name: string) => firstPort + names.indexOf(name);
const issuer = process.env.OIDC_ISSUER
  ? { issuer: process.env.OIDC_ISSUER, stop: async () => undefined }
  : await startDevIssuer(await signingKey(devIssuer.keyFile), devIssuer.port);
say(process.env.OIDC_ISSUER ? `tokens from ${issuer.issuer}` : `OIDC_ISSUER is not set: dev token issuer at ${issuer.issuer} (key in ${devIssuer.keyFile})`);
const env = {
  ...process.env,
  DATABASE_URL: database.url,
  OIDC_ISSUER: issuer.issuer,
  CONSUME_ORDER_URL: `http://127.0.0.1:${portOf('consume-order')}`,
};

if (kafkaBrokers().length) say(`Kafka at ${kafkaBrokers().join(',')}: book publishes to it, the trigger delivers to consume-order`);
else say('KAFKA_BROKERS is not set: book sends outbox events straight to consume-order (same CloudEvent contract)');

for (const definition of definitions) {
  const { name } = definition;
  const port = portOf(name);
  launch(name, ['shared/run.ts', name], port);
  if (definition.route) upstreams.push({ route: definition.route, target: `http://127.0.0.1:${port}` });
  say(`${name.padEnd(14)} http://127.0.0.1:${port}${definition.route ? `  serves ${definition.route.method} ${definition.route.path}` : '  (triggered by booking events)'}`);
}
if (kafkaBrokers().length) {
  const port = firstPort + names.length;
  launch('trigger', ['trigger/main.ts'], port);
  say(`${'trigger'.padEnd(14)} http://127.0.0.1:${port}  consumes booking, delivers to consume-order`);
}

await Promise.all(upstreams.map((u) => untilReady(u.target)));
const gateway = createGateway(upstreams, openApiDocument(definitions));
gateway.listen(gatewayPort, '127.0.0.1');
await once(gateway, 'listening');
say(`gateway ready at http://localhost:${gatewayPort}`);
say(`try: curl http://localhost:${gatewayPort}/api/v1/inventory/events`);
say(`a token: npm run token -- alice   (demo users alice, bob, carol: customers 1-3; admin-ana: admin)`);
say(`then:    curl -H "Authorization: Bearer $(npm run -s token -- alice)" -H 'content-type: application/json' \\`);
say(`           -d '{"userId":1,"eventId":2,"ticketCount":2}' http://localhost:${gatewayPort}/api/v1/booking`);

for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void shutdown(0));

function launch(name: string, args: string[], port: number): void {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], { env: { ...env, PORT: String(port) }, stdio: ['ignore', 'inherit', 'inherit'] });
  child.once('exit', (code) => {
    if (!stopping) {
      say(`${name} exited (${code}); stopping everything`);
      void shutdown(1);
    }
  });
  children.push(child);
}

async function shutdown(code: number): Promise<never> {
  stopping = true;
  say('stopping');
  gateway?.close();
  await Promise.all(
    children.filter((child) => child.exitCode === null).map((child) => {
      child.kill('SIGTERM');
      return once(child, 'exit');
    }),
  );
  await issuer.stop();
  await database.stop();
  process.exit(code);
}

async function embeddedDatabase(): Promise<{ url: string; stop: () => Promise<void> }> {
  say('DATABASE_URL is not set: starting an embedded Postgres (data in .data/postgres)');
  const server = await localPostgres({ dataDir: '.data/postgres', port: Number(process.env.EMBEDDED_POSTGRES_PORT ?? 54329), preferMachine: false });
  return { url: await ensureDatabase(server.adminUrl, 'boxoffice'), stop: server.stop };
}
