import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Server } from 'node:http';
import { createServer } from 'node:net';
import { devIssuer, signingKey, startDevIssuer, type DevIssuer } from './dev-issuer.js';
import { functionNames, loadDefinitions, untilReady } from './functions.js';
import { createGateway, type Upstream } from './gateway.js';
import type { LocalPostgres } from './local-postgres.js';
import { openApiDocument } from './openapi.js';
import { createSupervisor } from './supervisor.js';

// `npm start`: the whole system on one machine, each function in its own
// process on its own port as its container would run, behind a gateway.
// Children that die are restarted; Ctrl-C or SIGTERM stops everything.
// Every setting, then every port, is checked before any work: a mistake is
// one line and exit 1, with nothing started or changed.
const say = (line: string) => console.log(`[boxoffice] ${line}`);
const stopSignals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

interface Running {
  stop(): Promise<void>;
}

/** A port npm start will listen on, what listens there, and the setting that moves it. */
interface PortUse {
  port: number;
  what: string;
  setting: string;
}

// npm start decides these for every child, before any setting is read, so
// the checks below see what the children will. Nothing it runs listens
// beyond this machine (a container listens on every interface, as it must).
process.env.HOST = '127.0.0.1';
if (process.env.PORT) {
  say('PORT is not used by npm start: each function gets its own from FUNCTIONS_BASE_PORT, and GATEWAY_PORT is the gateway\'s');
  delete process.env.PORT;
}

const settings = await checkedSettings().catch(refuse);
await checkPorts(settings.ports).catch(refuse);

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
  const databaseUrl = settings.database?.url ?? (await embeddedDatabase(settings.postgresPort));
  await migrate(databaseUrl, settings.database?.setting);
  say('database migrated, demo data loaded');

  const { definitions, firstPort } = settings;
  const names = definitions.map((definition) => definition.name);
  const portOf = (name: string) => firstPort + names.indexOf(name);
  if (settings.issuerPort !== undefined) {
    const clients = settings.deliverer ? [settings.deliverer] : [];
    issuer = await startDevIssuer(await signingKey(devIssuer.keyFile), settings.issuerPort, { urlFile: devIssuer.urlFile, clients });
  }
  const oidcIssuer = process.env.OIDC_ISSUER || issuer?.issuer;
  say(issuer ? `OIDC_ISSUER is not set: dev token issuer at ${issuer.issuer} (key in ${devIssuer.keyFile})` : `tokens from ${oidcIssuer}`);
  const env = { ...process.env, DATABASE_URL: databaseUrl, OIDC_ISSUER: oidcIssuer };
  const launch = (name: string, args: string[], port: number, role: string) => {
    const pid = supervisor.launch({ name, args: ['--import', 'tsx', ...args], env: { ...env, PORT: String(port) } });
    say(`${name.padEnd(14)} http://127.0.0.1:${port}  ${role}  (pid ${pid})`);
  };

  const { kafka } = settings;
  if (kafka) say(`Kafka at ${settings.brokers.join(',')}: the relay publishes to it, the trigger delivers to consume-order`);
  else say('KAFKA_BROKERS is not set: the relay sends outbox events straight to consume-order (same CloudEvent contract)');

  const upstreams: Upstream[] = [];
  for (const definition of definitions) {
    const { name, route } = definition;
    launch(name, ['shared/run.ts', name], portOf(name), route ? `serves ${route.method} ${route.path}` : '(triggered by booking events)');
    if (route) upstreams.push({ route, target: `http://127.0.0.1:${portOf(name)}` });
  }
  const relayPort = firstPort + names.length;
  launch('relay', ['relay/main.ts'], relayPort, `publishes the outbox to ${kafka ? 'Kafka' : 'consume-order'}`);
  if (kafka) launch('trigger', ['trigger/main.ts'], relayPort + 1, 'consumes booking, delivers to consume-order');
  launch('admitter', ['admitter/main.ts'], firstPort + settings.children.indexOf('admitter'), 'admits customers through the waiting rooms');

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
    say(`start-up failed: ${oneLine(error)}`);
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

/** A mistake found before anything started: one line, exit 1. */
function refuse(error: unknown): never {
  say(`start-up failed: ${oneLine(error)}`);
  process.exit(1);
}

function oneLine(error: unknown): string {
  const text = error instanceof Error ? error.message || error.name : String(error);
  return text.replace(/\s*\n\s*/g, ' ');
}

/**
 * Reads and checks every setting of npm start and of what it runs. The
 * modules that read their settings as they load (shared/config.ts, auth,
 * the host, the trigger's) are first loaded here, so a bad setting is a
 * ConfigError caught by the caller rather than a stack trace from an import.
 */
async function checkedSettings() {
  const { ConfigError, config, integerSetting, portSetting } = await import('../shared/config.js');
  const brokers = (await import('../shared/kafka.js')).kafkaBrokers();
  const kafka = brokers.length > 0;
  const names = functionNames();
  const children = [...names, 'relay', ...(kafka ? ['trigger'] : []), 'admitter'];
  const gatewayPort = portSetting('GATEWAY_PORT', 8080);
  const firstPort = portSetting('FUNCTIONS_BASE_PORT', 8081);
  if (firstPort + children.length - 1 > 65_535) throw new ConfigError(`FUNCTIONS_BASE_PORT must leave ${children.length} ports below 65536, got ${firstPort}`);
  const databaseSetting = process.env.DATABASE_URL_FILE ? 'DATABASE_URL_FILE' : process.env.DATABASE_URL ? 'DATABASE_URL' : undefined;
  const issuerPort = process.env.OIDC_ISSUER ? undefined : portSetting('DEV_ISSUER_PORT', 8079);
  const postgresPort = databaseSetting ? undefined : portSetting('EMBEDDED_POSTGRES_PORT', 54329);
  process.env.CONSUME_ORDER_URL = `http://127.0.0.1:${firstPort + names.indexOf('consume-order')}`;
  const deliverer = (await import('./deliverer.js')).wireDeliverer(issuerPort, say);
  wireQueuePassKey((await import('../shared/queue-pass.js')).queuePassKey);

  // Loading every function reads the settings its modules read (auth's
  // among them); the host's, the trigger's, the relay's and the admitter's are read as they will be.
  const definitions = await loadDefinitions();
  (await import('../shared/host.js')).functionServerSetting();
  if (kafka) (await import('../trigger/settings.js')).triggerSettings();
  (await import('../relay/settings.js')).relaySettings();
  (await import('../admitter/settings.js')).admitterSettings([]);

  const ports: PortUse[] = [
    { port: gatewayPort, what: 'the gateway', setting: 'GATEWAY_PORT' },
    ...children.map((name, index) => ({ port: firstPort + index, what: name, setting: 'FUNCTIONS_BASE_PORT' })),
    ...(issuerPort === undefined ? [] : [{ port: issuerPort, what: 'the dev token issuer', setting: 'DEV_ISSUER_PORT' }]),
    ...(postgresPort === undefined ? [] : [{ port: postgresPort, what: 'the embedded Postgres', setting: 'EMBEDDED_POSTGRES_PORT' }]),
  ];
  for (const [index, use] of ports.entries()) {
    const other = ports.slice(0, index).find((earlier) => earlier.port === use.port);
    if (other) throw new ConfigError(`${other.setting} and ${use.setting} both give port ${use.port} (to ${other.what} and ${use.what}): move one`);
  }
  return {
    definitions,
    children,
    brokers,
    kafka,
    gatewayPort,
    firstPort,
    issuerPort,
    deliverer,
    postgresPort,
    ports,
    database: databaseSetting ? { url: config.databaseUrl, setting: databaseSetting } : undefined,
    stopTimeoutMs: integerSetting('STOP_TIMEOUT_MS', 15_000, 0),
    restart: {
      maxCrashes: integerSetting('RESTART_LIMIT', 5, 1),
      crashWindowMs: integerSetting('RESTART_WINDOW_MS', 60_000, 1),
    },
  };
}

/**
 * The key of the waiting room's passes, shared by every function through
 * process.env: QUEUE_PASS_KEY (or its _FILE) as set and checked, else a
 * fresh one for this run, like the deliverers' secret (passes of an earlier
 * run are then refused).
 */
function wireQueuePassKey(queuePassKey: () => Uint8Array | undefined): void {
  if (!queuePassKey()) process.env.QUEUE_PASS_KEY = randomBytes(32).toString('base64url');
}

/**
 * Throws, naming each port something already holds and the setting that
 * moves it: a second npm start must not migrate, nor take another's
 * functions for its own at the readiness check.
 */
async function checkPorts(ports: PortUse[]): Promise<void> {
  const found = await Promise.all(ports.map(async (use) => ({ ...use, why: await cannotListen(use.port) })));
  const held = found.filter((use): use is PortUse & { why: string } => use.why !== undefined);
  if (!held.length) return;
  // One clause per setting to change: `ports 8082 (book), 8085 (get-venue) are already in use: set ...`.
  const groups = new Map<string, typeof held>();
  for (const use of held) groups.set(`${use.setting} ${use.why}`, [...(groups.get(`${use.setting} ${use.why}`) ?? []), use]);
  const lines = [...groups.values()].map((uses) => {
    const { setting, why } = uses[0]!;
    const which = `${uses.length > 1 ? 'ports' : 'port'} ${uses.map((use) => `${use.port} (${use.what})`).join(', ')}`;
    const remedy = setting === 'FUNCTIONS_BASE_PORT' ? `set ${setting} to the first of ${ports.filter((use) => use.setting === setting).length} free ports in a row` : `set ${setting} to a free port`;
    return `${which} ${uses.length > 1 ? 'are' : 'is'} ${why}: ${remedy}`;
  });
  const another = held.some((use) => use.why.includes('in use')) ? ' (is another npm start running?)' : '';
  throw new Error(`${lines.join('; ')}${another}`);
}

/** Why nothing can listen on 127.0.0.1:`port`, as every process of npm start does; undefined when it can. */
function cannotListen(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) => {
      const why: Record<string, string> = { EADDRINUSE: 'already in use', EACCES: 'not open to this user (below 1024 needs root)' };
      resolve(why[error.code ?? ''] ?? `unusable (${error.message})`);
    });
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(undefined)));
  });
}

async function migrate(databaseUrl: string, setting: string | undefined): Promise<void> {
  const { migrateDatabase, DatabaseUnreachable } = await import('../shared/migrations.js');
  const { withoutPassword } = await import('../shared/config.js');
  try {
    await migrateDatabase(databaseUrl, { demoData: true });
  } catch (error) {
    if (!(error instanceof DatabaseUnreachable) || !setting) throw error;
    const fix = setting === 'DATABASE_URL' ? 'fix DATABASE_URL, or unset it for an embedded Postgres' : `fix the URL in ${process.env.DATABASE_URL_FILE}`;
    throw new Error(`cannot connect to the database at ${withoutPassword(databaseUrl)} (${setting}): ${error.reason}; ${fix}`, { cause: error });
  }
}

async function embeddedDatabase(port = 54329): Promise<string> {
  const { ensureDatabase, localPostgres, PostgresCannotEnter } = await import('./local-postgres.js');
  say('DATABASE_URL is not set: starting an embedded Postgres (data in .data/postgres)');
  const before = new Map(stopSignals.map((signal) => [signal, process.listeners(signal)]));
  let server: LocalPostgres;
  try {
    database = server = await localPostgres({ dataDir: '.data/postgres', port, preferMachine: false });
  } catch (error) {
    if (error instanceof PostgresCannotEnter) throw error;
    throw new Error(`the embedded Postgres did not start on port ${port} (data in .data/postgres): ${oneLine(error)}`, { cause: error });
  } finally {
    // embedded-postgres, once imported, stops Postgres and exits on these
    // signals at once; here Postgres stops last, after the functions drained.
    for (const signal of stopSignals) {
      for (const listener of process.listeners(signal)) if (!before.get(signal)?.includes(listener)) process.off(signal, listener);
    }
  }
  return ensureDatabase(server.adminUrl, 'boxoffice');
}
