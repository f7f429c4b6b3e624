import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, untilReady } from '../functions.js';
import type { KafkaUnderTest, OwnedIssuer, OwnedPostgres } from './dependencies.js';
import type { RunningSystem } from './system.js';

/** What a fault may touch. */
export interface FaultContext {
  system: RunningSystem;
  postgres: OwnedPostgres;
  issuer: OwnedIssuer;
  kafka: KafkaUnderTest;
  database: string;
  databaseUrl: string;
  /** A line for the report (what was done, what was seen). */
  note(text: string): void;
  /** What the fault expected to see and did not: the row fails. */
  unmet(text: string): void;
}

/** Ends the fault (SIGCONT, start again, bring back); resolves when done. */
export type EndFault = () => Promise<void>;

export interface Fault {
  name: string;
  what: string;
  /** Part of the CI subset (scripts/chaos.test.ts). */
  ci: boolean;
  /** How long the fault lasts before it is ended, in seconds. */
  holdSeconds: { full: number; quick: number };
  /**
   * The bound issue 8 sets on recovery, in seconds from the fault's end (or
   * the last 201), where it sets one tighter than the sizing's.
   */
  recoverWithinSeconds?: number;
  /** Why this run cannot inject it, if it cannot. */
  unavailable?(kafka: KafkaUnderTest): string | undefined;
  inject(context: FaultContext): Promise<EndFault>;
}

const nothingToEnd: EndFault = async () => undefined;

/** Thrown when the fault could not be injected: the row fails, it proves nothing. */
export class FaultNotInjected extends Error {}

function killChild(name: string): Fault {
  return {
    name: `kill-${name}`,
    what: `kill -9 ${name}; npm start must restart it`,
    ci: name === 'consume-order' || name === 'relay',
    holdSeconds: { full: 0, quick: 0 },
    async inject({ system, note }) {
      const pids = system.kill(name, 'SIGKILL');
      if (!pids.length) throw new FaultNotInjected(`npm start runs no ${name} process (children: ${system.children.join(', ')})`);
      note(`killed ${name} (pid ${pids.join(', ')})`);
      return nothingToEnd;
    },
  };
}

/**
 * What a function that has never fetched the keys answers while the issuer
 * is away: a fresh get-booking process, asked for a booking with a valid token.
 */
async function coldFunctionAnswer(context: FaultContext): Promise<string> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'shared/run.ts', 'get-booking'], {
    env: { ...process.env, PORT: String(port), DATABASE_URL: context.databaseUrl, OIDC_ISSUER: context.issuer.issuer, KAFKA_BROKERS: '', LOG_LEVEL: 'silent' },
    stdio: 'ignore',
  });
  const exited = once(child, 'exit');
  try {
    await untilReady(`http://127.0.0.1:${port}`);
    const response = await fetch(`http://127.0.0.1:${port}/api/v1/booking/00000000-0000-4000-8000-000000000000`, {
      headers: { authorization: await context.issuer.bearer(1) },
      signal: AbortSignal.timeout(15_000),
    });
    const body = (await response.json().catch(() => ({}))) as { type?: string };
    const retryAfter = response.headers.get('retry-after');
    return `${response.status}${body.type ? ` ${body.type}` : ''}${retryAfter ? `, Retry-After ${retryAfter}` : ''}`;
  } catch (error) {
    return `no answer (${(error as Error).message})`;
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  }
}

export const faults: Fault[] = [
  killChild('book'),
  killChild('relay'),
  killChild('trigger'),
  killChild('consume-order'),
  {
    name: 'stop-consume-order',
    what: 'SIGSTOP consume-order, then SIGCONT',
    ci: true,
    holdSeconds: { full: 60, quick: 15 },
    recoverWithinSeconds: 30,
    async inject({ system, note }) {
      const pids = system.kill('consume-order', 'SIGSTOP');
      if (!pids.length) throw new FaultNotInjected('npm start runs no consume-order process');
      note(`stopped consume-order (pid ${pids.join(', ')})`);
      return async () => {
        for (const pid of pids) process.kill(pid, 'SIGCONT');
      };
    },
  },
  {
    name: 'kill-kafka',
    what: 'kill -9 the Kafka broker, restart it (scripts/kafka/start.sh)',
    ci: false,
    holdSeconds: { full: 10, quick: 10 },
    unavailable: (kafka) => kafka.notOwned && `not run: ${kafka.notOwned}`,
    async inject({ kafka, note }) {
      note(`killed the broker (pid ${kafka.kill()})`);
      return async () => {
        await kafka.restart();
        note('broker restarted');
      };
    },
  },
  {
    name: 'restart-postgres',
    what: 'stop Postgres and start it again at once',
    ci: false,
    holdSeconds: { full: 0, quick: 0 },
    async inject({ postgres }) {
      await postgres.stop();
      await postgres.start();
      return nothingToEnd;
    },
  },
  {
    name: 'stop-postgres',
    what: 'stop Postgres, start it again after a while',
    ci: true,
    holdSeconds: { full: 20, quick: 10 },
    async inject({ postgres }) {
      await postgres.stop();
      return () => postgres.start();
    },
  },
  {
    name: 'terminate-connections',
    what: "pg_terminate_backend every connection to the system's database, every second",
    ci: true,
    holdSeconds: { full: 10, quick: 6 },
    async inject({ postgres, database, note }) {
      let terminated = 0;
      let rounds = 0;
      const stop = new AbortController();
      const loop = (async () => {
        while (!stop.signal.aborted) {
          terminated += await postgres.terminateConnections(database);
          rounds += 1;
          await sleep(1_000, undefined, { signal: stop.signal }).catch(() => undefined);
        }
      })();
      return async () => {
        stop.abort();
        await loop;
        note(`terminated ${terminated} connections in ${rounds} rounds`);
      };
    },
  },
  {
    name: 'issuer-away',
    what: 'take the token issuer (its key endpoint) away, keys cached; bring it back',
    ci: true,
    holdSeconds: { full: 20, quick: 10 },
    async inject(context) {
      await context.issuer.takeAway();
      const cold = coldFunctionAnswer(context);
      return async () => {
        const answer = await cold;
        context.note(`a cold function (fresh get-booking, no keys cached) answered: ${answer}`);
        if (!answer.startsWith('503 ') || !answer.includes('Retry-After')) context.unmet(`a cold function answered ${answer}, not 503 with Retry-After`);
        await context.issuer.bringBack();
      };
    },
  },
];
