import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { freePort, untilReady } from '../functions.js';

/** A process of the run, serving on `url`, started as its container would run it. */
export interface Started {
  name: string;
  pid: number;
  url: string;
  stop(): Promise<void>;
}

/** A process just spawned, maybe not serving yet. */
export interface Spawned extends Started {
  /** performance.now() right before the spawn. */
  spawnedAt: number;
  /** Rejects once the process exits, for whatever reason. */
  exited: Promise<never>;
}

/**
 * Starts `node --import tsx <args>` with `env` and PORT on a free port, and
 * resolves once it answers /_/ready. Its output goes to this terminal.
 */
export async function startProcess(name: string, args: string[], env: NodeJS.ProcessEnv): Promise<Started> {
  const started = await spawnNode(name, ['--import', 'tsx', ...args], env);
  try {
    await Promise.race([untilReady(started.url), started.exited]);
  } catch (error) {
    await started.stop();
    throw error;
  }
  return started;
}

/** Spawns `node <args>` with `env` and PORT on a free port, and answers at once. Its output goes to this terminal. */
export async function spawnNode(name: string, args: string[], env: NodeJS.ProcessEnv): Promise<Spawned> {
  const port = await freePort();
  const spawnedAt = performance.now();
  const child = spawn(process.execPath, args, {
    env: { ...process.env, LOG_LEVEL: 'warn', ...env, PORT: String(port) },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const exited = once(child, 'exit').then(([code, signal]): never => {
    throw new Error(`${name} exited (${signal ?? code}) before it answered`);
  });
  // Only a caller racing it cares: the exit that stop() causes is no failure.
  exited.catch(() => undefined);
  return { name, pid: child.pid!, url: `http://127.0.0.1:${port}`, spawnedAt, exited, stop: () => stopChild(child) };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exit = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exit;
  clearTimeout(timer);
}
