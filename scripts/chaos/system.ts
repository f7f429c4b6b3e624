import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { functionNames } from '../functions.js';
import { alive, groupAlive, processesOf, type NamedProcess } from './processes.js';

/** What the harness hands `npm start`: everything it depends on is the harness's. */
export interface SystemSettings {
  databaseUrl: string;
  brokers: string[];
  issuer: string;
  /** The deliverers' client at that issuer (DELIVERER_CLIENT_ID, DELIVERER_CLIENT_SECRET). */
  delivererEnv: Record<string, string>;
  topic: string;
  group: string;
  ports: { gateway: number; functions: number; devIssuer: number };
  logFile: string;
}

/** A child exit that the harness did not cause. */
export interface Crash {
  name: string;
  pid?: number;
  how: string;
}

/**
 * `npm start` (scripts/start.ts) run as a process group of the harness's
 * own, watched: its log says which port each child serves and when a child
 * exits; /proc says which pids are its children. Every exit the harness did
 * not cause with kill() is a crash.
 */
export interface RunningSystem {
  readonly gateway: string;
  readonly pid: number;
  /** Children found when the system was first ready: the ones that must be back after a fault. */
  readonly children: string[];
  processes(): NamedProcess[];
  running(): boolean;
  /** Signals every process named `name`; an exit that follows is the harness's doing. */
  kill(name: string, signal: NodeJS.Signals): number[];
  crashes(): Crash[];
  /** 500 answers the functions logged. */
  serverErrors(): number;
  /** Children that are not running or not ready now. */
  notReady(): Promise<string[]>;
  tail(): string;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const START_TIMEOUT_MS = 180_000;

// The process groups of every npm start that has not been stopped yet.
const groups = new Set<number>();

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // The group is gone already.
  }
}

/** Kills every npm start group at once, synchronously: for a harness that is exiting. */
export function killSystemsNow(): void {
  for (const pgid of groups) {
    signalGroup(pgid, 'SIGCONT');
    signalGroup(pgid, 'SIGKILL');
  }
  groups.clear();
}
process.once('exit', killSystemsNow);

async function answers(url: string): Promise<boolean> {
  return fetch(url, { signal: AbortSignal.timeout(2_000) }).then(
    async (response) => {
      await response.body?.cancel();
      return response.ok;
    },
    () => false,
  );
}

export async function startSystem(settings: SystemSettings): Promise<RunningSystem> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: settings.databaseUrl,
    KAFKA_BROKERS: settings.brokers.join(','),
    BOOKING_TOPIC: settings.topic,
    TRIGGER_GROUP: settings.group,
    OIDC_ISSUER: settings.issuer,
    ...settings.delivererEnv,
    GATEWAY_PORT: String(settings.ports.gateway),
    FUNCTIONS_BASE_PORT: String(settings.ports.functions),
    DEV_ISSUER_PORT: String(settings.ports.devIssuer),
    // The request lines are how 500s are counted.
    LOG_LEVEL: 'info',
  };
  for (const name of ['DATABASE_URL_FILE', 'CONSUME_ORDER_URL', 'OIDC_JWKS_URL', 'TRIGGER_TOPIC', 'TRIGGER_DEAD_LETTER_TOPIC', 'DELIVERER_CLIENT_SECRET_FILE', 'DELIVERER_TOKEN_URL']) delete env[name];
  // detached: a process group of its own, so the harness can stop all of it and nothing else.
  const start = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts'], { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = start.pid!;
  groups.add(pid);
  const exited = once(start, 'exit');
  const log = createWriteStream(settings.logFile);
  let tail = '';
  const ports = new Map<string, number>();
  const logExits = new Map<string, number>();
  const harnessKills = new Map<string, number>();
  const killedPids = new Set<number>();
  const watchedCrashes: Crash[] = [];
  let serverErrors = 0;
  let stopping = false;

  const keep = (line: string) => {
    log.write(`${line}\n`);
    tail = `${tail}${line}\n`.slice(-16_000);
  };
  createInterface({ input: start.stdout }).on('line', (line) => {
    keep(line);
    // `[boxoffice] book  http://127.0.0.1:8084 ...`, in whatever words surround it.
    const port = /^\[boxoffice\] ([\w-]+)\b[^:]*?http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
    if (port) ports.set(port[1]!, Number(port[2]));
    const exit = /^\[boxoffice\] ([\w-]+) exited\b/.exec(line);
    if (exit) logExits.set(exit[1]!, (logExits.get(exit[1]!) ?? 0) + 1);
    if (/^\[boxoffice\] stopping\b/.test(line)) stopping = true;
    if (line.startsWith('{') && line.includes('"status":5')) {
      try {
        if ((JSON.parse(line) as { status?: number }).status === 500) serverErrors += 1;
      } catch {
        // Not a log record after all.
      }
    }
  });
  createInterface({ input: start.stderr }).on('line', keep);

  // /proc is watched too: a child that dies and is back before its exit line is read still counts.
  let known = new Map<number, string>();
  const watch = setInterval(() => {
    const now = new Map(processesOf(pid).map((p) => [p.pid, p.name]));
    for (const [gone, name] of known) {
      if (now.has(gone) || killedPids.has(gone) || stopping || !alive(pid)) continue;
      watchedCrashes.push({ name, pid: gone, how: 'exited' });
    }
    known = now;
  }, 200);

  const running = () => start.exitCode === null && start.signalCode === null;
  const processes = () => processesOf(pid);
  const readyOf = async (name: string) => {
    if (!processes().some((p) => p.name === name)) return false;
    const port = ports.get(name);
    return port === undefined || answers(`http://127.0.0.1:${port}/_/ready`);
  };
  const gateway = `http://127.0.0.1:${settings.ports.gateway}`;

  async function stop(): Promise<void> {
    stopping = true;
    clearInterval(watch);
    if (running()) {
      // A stopped child would never see the SIGTERM.
      signalGroup(pid, 'SIGCONT');
      start.kill('SIGTERM');
      for (let waited = 0; (running() || groupAlive(pid)) && waited < 20_000; waited += 200) await sleep(200);
    }
    if (groupAlive(pid)) signalGroup(pid, 'SIGKILL');
    if (start.exitCode === null && start.signalCode === null) await exited;
    for (let waited = 0; groupAlive(pid) && waited < 5_000; waited += 100) await sleep(100);
    groups.delete(pid);
    await new Promise((resolve) => log.end(resolve));
  }

  const system: RunningSystem = {
    gateway,
    pid,
    children: [],
    processes,
    running,
    kill(name, signal) {
      const pids = processes().filter((p) => p.name === name).map((p) => p.pid);
      for (const target of pids) {
        if (signal === 'SIGKILL' || signal === 'SIGTERM') {
          killedPids.add(target);
          harnessKills.set(name, (harnessKills.get(name) ?? 0) + 1);
        }
        process.kill(target, signal);
      }
      return pids;
    },
    crashes() {
      // The log and /proc may both see one exit: per name, the larger count of the two.
      const names = new Set([...logExits.keys(), ...watchedCrashes.map((c) => c.name)]);
      return [...names].flatMap((name) => {
        const watched = watchedCrashes.filter((c) => c.name === name);
        const logged = Math.max(0, (logExits.get(name) ?? 0) - (harnessKills.get(name) ?? 0));
        const extra = Math.max(0, logged - watched.length);
        return [...watched, ...Array.from({ length: extra }, () => ({ name, how: 'exit logged by npm start' }))];
      });
    },
    serverErrors: () => serverErrors,
    async notReady() {
      const ready = await Promise.all(system.children.map(readyOf));
      return system.children.filter((_, i) => !ready[i]);
    },
    tail: () => tail,
    stop,
  };

  try {
    for (let waited = 0; !(await answers(`${gateway}/_/health`)); waited += 250) {
      if (!running()) throw new Error(`npm start exited (${start.exitCode ?? start.signalCode}) before its gateway was ready:\n${tail}`);
      if (waited > START_TIMEOUT_MS) throw new Error(`npm start's gateway was not ready after ${START_TIMEOUT_MS / 1000} s:\n${tail}`);
      await sleep(250);
    }
    for (let waited = 0; ; waited += 250) {
      const names = [...new Set(processes().map((p) => p.name))];
      const ready = await Promise.all(names.map(readyOf));
      if (functionNames().every((name) => names.includes(name)) && ready.every(Boolean)) {
        system.children.push(...names.sort());
        break;
      }
      if (waited > 60_000) throw new Error(`npm start's children were not all ready (${names.join(', ')}):\n${tail}`);
      await sleep(250);
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return system;
}
