import { readdirSync, readFileSync } from 'node:fs';
import { procStat } from '../proc.js';

/** A process of the system under test, named after what it runs. */
export interface NamedProcess {
  pid: number;
  name: string;
}

export function commandLine(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

/**
 * What a process of `npm start` runs: `shared/run.ts <function>` is the
 * function, `<worker>/main.ts` a worker (trigger, relay).
 */
export function processName(args: string[]): string | undefined {
  const run = args.findIndex((arg) => arg.endsWith('shared/run.ts') || arg.endsWith('shared/run.js'));
  if (run >= 0 && args[run + 1]) return args[run + 1];
  for (const arg of args) {
    const worker = /(?:^|\/)([\w-]+)\/main\.[jt]s$/.exec(arg);
    if (worker) return worker[1];
  }
  return undefined;
}

/** Whether `pid` is alive (a zombie is not). */
export function alive(pid: number): boolean {
  const state = procStat(pid)?.state;
  return state !== undefined && state !== 'Z';
}

/**
 * The named processes that `root` started: its children and every other
 * member of its process group (a supervisor may spawn through a helper).
 */
export function processesOf(root: number): NamedProcess[] {
  const found: NamedProcess[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const info = procStat(pid);
    if (!info || pid === root || (info.ppid !== root && info.pgrp !== root)) continue;
    const name = processName(commandLine(pid));
    if (name && alive(pid)) found.push({ pid, name });
  }
  return found;
}

/** Whether any process is still in process group `pgid`. */
export function groupAlive(pgid: number): boolean {
  return readdirSync('/proc').some((entry) => /^\d+$/.test(entry) && procStat(Number(entry))?.pgrp === pgid && alive(Number(entry)));
}
