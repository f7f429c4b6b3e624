import { once } from 'node:events';
import type { Server } from 'node:http';
import { ConfigError, integerSetting } from '../shared/config.js';
import { kafkaBrokers } from '../shared/kafka.js';
import { migrateDatabase } from '../shared/migrate.js';
import { devIssuer, signingKey, startDevIssuer, type DevIssuer } from './dev-issuer.js';
import { loadDefinitions, untilReady } from './functions.js';
import { createGateway, type Upstream } from './gateway.js';
import { openApiDocument } from './openapi.js';
import { ensureDatabase, localPostgres } from './local-postgres.js';
import { createSupervisor } from './supervisor.js';

// `npm start`: the whole system on one machine, each function in its own
// process on its own port as its container would run, behind a gateway.
// Children that die are restarted; Ctrl-C or SIGTERM stops everything.
const say = (line: string) => console.log(`[boxoffice] ${line}`);
const stopSignals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

interface Running {
  stop(): Promise<void>;
}

const settings = startSettings();
const supervisor = createSupervisor({ policy: settings.restart, stopTimeoutMs: settings.stopTimeoutMs, say });
let database: Running | undefined;
let issuer: DevIssuer | undefined;
let gateway: Server | undefined;
let stopping: Promise<never> | undefined;

// One Ctrl-C reaches this process more than once: from the terminal (the
// whole process group) and relayed by npm and tsx. Only a signal that comes
// a moment after the first is a second Ctrl-C.
let firstSignalAt = 0;
for (const signal of stopSignals) {
  process.on(signal, () => {
    if (!stopping) {
      firstSignalAt = Date.now();
      return void shutdown(0, signal);
    }
    if (Date.now() - firstSignalAt < 1_000) return;
    say(`${signal} again: killing every process now`);
    supervisor.kill();
    process.exit(1);
  });
}
// However this process exits (an uncaught error included), no child outlives it.
process.on('exit', () => supervisor.kill());
void supervisor.gaveUp.then(({ name, reason }) => {
  say(`giving up on ${name}: ${reason}`);
  void shutdown(1);
});

try {
  const databaseUrl = process.env.DATABASE_URL || (await embeddedDatabase());
  await migrateDatabase(databaseUrl, { demoData: true });
  say('database migrated, demo data loaded');

  const definitions = await loadDefinitions();
  const names = definitions.map((definition) => definition.name);
  const portOf = (name: string) => settings.firstPort + names.indexOf(name);
  if (!process.env.OIDC_ISSUER) issuer = await startDevIssuer(await signingKey(devIssuer.keyFile), devIssuer.port);
  const oidcIssuer = process.env.OIDC_ISSUER || issuer?.issuer;
  say(issuer ? `OIDC_ISSUER is not set: dev token issuer at ${issuer.issuer} (key in ${devIssuer.keyFile})` : `tokens from ${oidcIssuer}`);
  const env = {
    ...process.env,
    DATABASE_URL: databaseUrl,
    OIDC_ISSUER: oidcIssuer,
    CONSUME_ORDER_URL: `http://127.0.0.1:${portOf('consume-order')}`,
  };
  const launch = (name: string, args: string[], port: number, role: string) => {
    const pid = supervisor.launch({ name, args: ['--import', 'tsx', ...args], env: { ...env, PORT: String(port) } });
    say(`${name.padEnd(14)} http://127.0.0.1:${port}  ${role}  (pid ${pid})`);
  };

  const kafka = kafkaBrokers().length > 0;
  if (kafka) say(`Kafka at ${kafkaBrokers().join(',')}: the relay publishes to it, the trigger delivers to consume-order`);
  else say('KAFKA_BROKERS is not set: the relay sends outbox events straight to consume-order (same CloudEvent contract)');

  const upstreams: Upstream[] = [];
  for (const definition of definitions) {
    const { name, route } = definition;
    launch(name, ['shared/run.ts', name], portOf(name), route ? `serves ${route.method} ${route.path}` : '(triggered by booking events)');
    if (route) upstreams.push({ route, target: `http://127.0.0.1:${portOf(name)}` });
  }
  const relayPort = settings.firstPort + names.length;
  launch('relay', ['relay/main.ts'], relayPort, `publishes the outbox to ${kafka ? 'Kafka' : 'consume-order'}`);
  if (kafka) launch('trigger', ['trigger/main.ts'], relayPort + 1, 'consumes booking, delivers to consume-order');

  await Promise.all(upstreams.map((u) => untilReady(u.target)));
  gateway = createGateway(upstreams, openApiDocument(definitions));
  gateway.listen(settings.gatewayPort, '127.0.0.1');
  await once(gateway, 'listening');
  const base = `http://localhost:${settings.gatewayPort}`;
  say(`gateway ready at ${base}`);
  say(`try: curl ${base}/api/v1/inventory/events`);
  say(`a token: npm run token -- alice   (demo users alice, bob, carol: customers 1-3; admin-ana: admin)`);
  say(`then:    curl -H "Authorization: Bearer $(npm run -s token -- alice)" -H 'content-type: application/json' \\`);
  say(`           -d '{"userId":1,"eventId":2,"ticketCount":2}' ${base}/api/v1/booking`);
} catch (error) {
  // A signal or a give-up that stops everything also fails the start-up on its way.
  if (!stopping) {
    say(`start-up failed: ${error instanceof Error ? error.message : String(error)}`);
    void shutdown(1);
  }
}

/**
 * Stops in the order a platform would: no new requests, every child drains
 * (SIGTERM, then SIGKILL after the stop timeout), then the issuer and the
 * database. Exits 0 only after a requested, clean stop.
 */
function shutdown(code: number, signal?: string): Promise<never> {
  stopping ??= (async () => {
    say(signal ? `stopping (${signal}; send it again to kill everything now)` : 'stopping');
    gateway?.close();
    const clean = [
      await supervisor.stop(),
      await stopWithin(issuer, 'the dev issuer'),
      await stopWithin(database, 'the embedded Postgres'),
    ].every(Boolean);
    say(clean ? 'stopped' : 'stopped, not cleanly');
    process.exit(clean ? code : 1);
  })();
  return stopping;
}

/** Stops `running` within the stop timeout; false when it failed or took longer. */
async function stopWithin(running: Running | undefined, what: string): Promise<boolean> {
  if (!running) return true;
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    running.stop().then(() => 'stopped', (error: unknown) => `failed to stop: ${(error as Error)?.message}`),
    new Promise<string>((resolve) => (timer = setTimeout(() => resolve(`did not stop within ${settings.stopTimeoutMs / 1000} s`), settings.stopTimeoutMs))),
  ]);
  clearTimeout(timer);
  if (outcome !== 'stopped') say(`${what} ${outcome}`);
  return outcome === 'stopped';
}

async function embeddedDatabase(): Promise<string> {
  say('DATABASE_URL is not set: starting an embedded Postgres (data in .data/postgres)');
  const port = integerSetting('EMBEDDED_POSTGRES_PORT', 54329, 1);
  const before = new Map(stopSignals.map((signal) => [signal, process.listeners(signal)]));
  const server = await localPostgres({ dataDir: '.data/postgres', port, preferMachine: false }).catch(() => {
    throw new Error(`the embedded Postgres did not start on port ${port} (data in .data/postgres)`);
  });
  database = server;
  // embedded-postgres, once imported, stops Postgres and exits on these
  // signals at once; here Postgres stops last, after the functions drained.
  for (const signal of stopSignals) {
    for (const listener of process.listeners(signal)) if (!before.get(signal)?.includes(listener)) process.off(signal, listener);
  }
  return ensureDatabase(server.adminUrl, 'boxoffice');
}

function startSettings() {
  try {
    return {
      gatewayPort: integerSetting('GATEWAY_PORT', 8080, 1),
      firstPort: integerSetting('FUNCTIONS_BASE_PORT', 8081, 1),
      stopTimeoutMs: integerSetting('STOP_TIMEOUT_MS', 15_000, 0),
      restart: {
        maxCrashes: integerSetting('RESTART_LIMIT', 5, 1),
        crashWindowMs: integerSetting('RESTART_WINDOW_MS', 60_000, 1),
      },
    };
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    say(`start-up failed: ${error.message}`);
    process.exit(1);
  }
}
