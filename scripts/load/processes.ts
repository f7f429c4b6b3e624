import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { freePort, untilReady } from '../functions.js';

/** A process of the run, serving on `url`, started as its container would run it. */
export interface Started {
  name: string;
  pid: number;
  url: string;
  stop(): Promise<void>;
}

/**
 * Starts `node --import tsx <args>` with `env` and PORT on a free port, and
 * resolves once it answers /_/ready. Its output goes to this terminal.
 */
export async function startProcess(name: string, args: string[], env: NodeJS.ProcessEnv): Promise<Started> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
    env: { ...process.env, LOG_LEVEL: 'warn', ...env, PORT: String(port) },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const started: Started = { name, pid: child.pid!, url: `http://127.0.0.1:${port}`, stop: () => stopChild(child) };
  const exited = once(child, 'exit').then(([code, signal]) => {
    throw new Error(`${name} exited (${signal ?? code}) before it was ready`);
  });
  try {
    await Promise.race([untilReady(started.url), exited]);
  } catch (error) {
    await started.stop();
    throw error;
  }
  return started;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exit = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exit;
  clearTimeout(timer);
}
