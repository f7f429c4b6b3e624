import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { DELIVERER_ROLE } from '../../shared/auth.js';
import { createKafka } from '../../shared/kafka.js';
import { DELIVERER_CLIENT_ID } from '../../shared/service-token.js';
import { demoUsers, signingKey, signToken, startDevIssuer, type DevIssuer } from '../dev-issuer.js';
import { freePort } from '../functions.js';
import { localPostgres, type LocalPostgres } from '../local-postgres.js';
import { kafkaForTests } from '../services.js';
import { alive, commandLine } from './processes.js';

// The dependencies the harness owns, so that it can take each away and
// bring it back: an embedded Postgres, the token issuer, and Kafka when this
// run started it.

const KAFKA_PID_FILE = '.cache/kafka/kafka.pid';

/** An embedded Postgres in a data dir of this run's, which can be stopped and started again. */
export interface OwnedPostgres {
  readonly adminUrl: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Ends every connection to `database` but the caller's; returns how many. */
  terminateConnections(database: string): Promise<number>;
  close(): Promise<void>;
}

/**
 * Removes the data dirs of earlier runs whose harness is gone (a run killed
 * with -9 cannot clean up), unless their Postgres still runs.
 */
function removeStaleRuns(root: string): void {
  if (!existsSync(root)) return;
  for (const entry of readdirSync(root)) {
    const owner = /^chaos-(\d+)-/.exec(entry);
    if (!owner || alive(Number(owner[1]))) continue;
    const pidFile = join(root, entry, 'postgres', 'postmaster.pid');
    const postmaster = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').split('\n')[0]) : 0;
    if (postmaster && alive(postmaster) && commandLine(postmaster).join(' ').includes(entry)) continue;
    rmSync(join(root, entry), { recursive: true, force: true });
  }
}

export function runDirectory(runId: string): string {
  removeStaleRuns('.data');
  return join('.data', `chaos-${process.pid}-${runId}`);
}

export async function ownPostgres(dataDir: string): Promise<OwnedPostgres> {
  const port = await freePort();
  let server: LocalPostgres | undefined = await localPostgres({ dataDir, port, preferMachine: false });
  const adminUrl = server.adminUrl;
  let closed = false;
  return {
    adminUrl,
    async stop() {
      await server?.stop();
      server = undefined;
    },
    async start() {
      if (!closed) server ??= await localPostgres({ dataDir, port, preferMachine: false });
    },
    async terminateConnections(database) {
      const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 2_000 });
      await client.connect();
      try {
        const { rowCount } = await client.query(
          'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
          [database],
        );
        return rowCount ?? 0;
      } finally {
        await client.end();
      }
    },
    async close() {
      closed = true;
      await server?.stop();
      server = undefined;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The token issuer, on a fixed port so it can go away and come back at the same address. */
export interface OwnedIssuer {
  readonly issuer: string;
  /** `Authorization` header of demo customer 1, 2 or 3. */
  bearer(customerId: number): Promise<string>;
  /** The deliverers' client settings, for the relay and the trigger `npm start` runs. */
  delivererEnv: Record<string, string>;
  takeAway(): Promise<void>;
  bringBack(): Promise<void>;
  close(): Promise<void>;
}

export async function ownIssuer(): Promise<OwnedIssuer> {
  const key = await signingKey();
  const port = await freePort();
  const clients = [{ clientId: DELIVERER_CLIENT_ID, secret: randomBytes(16).toString('hex'), roles: [DELIVERER_ROLE] }];
  let server: DevIssuer | undefined = await startDevIssuer(key, port, { clients });
  const issuer = server.issuer;
  let closed = false;
  const users = Object.entries(demoUsers).filter(([, user]) => user.customerId !== undefined);
  return {
    issuer,
    async bearer(customerId) {
      const [subject, user] = users.find(([, u]) => u.customerId === customerId)!;
      return `Bearer ${await signToken(key, { subject, ...user, issuer })}`;
    },
    delivererEnv: { DELIVERER_CLIENT_ID: clients[0]!.clientId, DELIVERER_CLIENT_SECRET: clients[0]!.secret },
    async takeAway() {
      await server?.stop();
      server = undefined;
    },
    async bringBack() {
      if (!closed) server ??= await startDevIssuer(key, port, { clients });
    },
    async close() {
      closed = true;
      await server?.stop();
      server = undefined;
    },
  };
}

/** The broker: KAFKA_BROKERS, else the project's, which this run may kill only when it started it. */
export interface KafkaUnderTest {
  readonly brokers: string[];
  /** Why the harness may not kill the broker, or undefined when it may. */
  readonly notOwned?: string;
  kill(): number;
  restart(): Promise<void>;
  /** Messages in `topic` now (0 when it does not exist). */
  countMessages(topic: string): Promise<number>;
  close(): Promise<void>;
}

function runScript(script: string): Promise<number> {
  return new Promise((resolve) => {
    spawn('bash', [script], { stdio: ['ignore', 'ignore', 'inherit'] }).on('exit', (code) => resolve(code ?? 1));
  });
}

function brokerPid(): number {
  const pid = existsSync(KAFKA_PID_FILE) ? Number(readFileSync(KAFKA_PID_FILE, 'utf8').trim()) : 0;
  return pid && alive(pid) && commandLine(pid).includes('kafka.Kafka') ? pid : 0;
}

export async function kafkaUnderTest(): Promise<KafkaUnderTest> {
  const fromEnvironment = Boolean(process.env.KAFKA_BROKERS);
  const runningBefore = brokerPid() !== 0;
  const service = await kafkaForTests();
  if (!service) throw new Error('no Kafka: KAFKA_BROKERS is unset and scripts/kafka/start.sh failed');
  const brokers = service.env.KAFKA_BROKERS!.split(',').filter(Boolean);
  const notOwned = fromEnvironment
    ? 'the broker is KAFKA_BROKERS, not this run'
    : runningBefore
      ? `the broker (${KAFKA_PID_FILE}) was running before this run`
      : undefined;
  const kafka = createKafka('boxoffice-chaos', brokers);
  return {
    brokers,
    notOwned,
    kill() {
      const pid = brokerPid();
      if (notOwned || !pid) throw new Error(notOwned ?? 'the broker is not running');
      process.kill(pid, 'SIGKILL');
      return pid;
    },
    async restart() {
      if (notOwned) throw new Error(notOwned);
      const code = await runScript('scripts/kafka/start.sh');
      if (code !== 0) throw new Error(`scripts/kafka/start.sh exited ${code}`);
    },
    async countMessages(topic) {
      const admin = kafka.admin();
      await admin.connect();
      try {
        if (!(await admin.listTopics()).includes(topic)) return 0;
        const offsets = await admin.fetchTopicOffsets(topic);
        return offsets.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
      } finally {
        await admin.disconnect();
      }
    },
    close: () => service.stop(),
  };
}
