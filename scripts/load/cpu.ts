import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type pg from 'pg';
import { procStat } from '../proc.js';

/** Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`, 100 on Linux). */
const clockTick = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds (user + system) `pid` has used so far; undefined once it is gone or unreadable. */
export function cpuSeconds(pid: number): number | undefined {
  const ticks = procStat(pid)?.cpuTicks;
  return ticks === undefined ? undefined : ticks / clockTick;
}

/** The 1-, 5- and 15-minute load averages. */
export function loadAverage(): [number, number, number] {
  const [one, five, fifteen] = readFileSync('/proc/loadavg', 'utf8').split(' ').map(Number);
  return [one!, five!, fifteen!];
}

/** A snapshot of CPU seconds per process, to subtract from a later one. */
export type CpuSnapshot = Map<number, { name: string; seconds: number }>;

/**
 * Samples `snapshot` now, every `everyMs` and when stopped; `stop` answers
 * the CPU seconds used meanwhile by process name. Each process counts up to
 * its last sample, so a pooled backend that closes mid-window (idle timeout)
 * keeps what it used until then.
 */
export async function watchCpu(snapshot: () => Promise<CpuSnapshot>, everyMs = 1_000): Promise<{ stop(): Promise<Record<string, number>> }> {
  const first = await snapshot();
  const latest: CpuSnapshot = new Map(first);
  let failure: unknown;
  let sampling = Promise.resolve();
  const sample = () =>
    (sampling = sampling
      .then(snapshot)
      .then((taken) => void taken.forEach((value, pid) => latest.set(pid, value)))
      .catch((error: unknown) => void (failure ??= error)));
  const timer = setInterval(sample, everyMs);
  return {
    async stop() {
      clearInterval(timer);
      await sample();
      if (failure) throw failure;
      return cpuUsed(first, latest);
    },
  };
}

/** CPU seconds used between two snapshots, summed by process name. */
function cpuUsed(before: CpuSnapshot, after: CpuSnapshot): Record<string, number> {
  const used: Record<string, number> = {};
  for (const [pid, now] of after) {
    // A process born between the snapshots used all its CPU inside the window.
    const delta = now.seconds - (before.get(pid)?.seconds ?? 0);
    used[now.name] = round((used[now.name] ?? 0) + delta);
  }
  return used;
}

/** CPU seconds of `processes` (name → pid) right now. */
export function snapshotProcesses(processes: Record<string, number>): CpuSnapshot {
  const snapshot: CpuSnapshot = new Map();
  for (const [name, pid] of Object.entries(processes)) {
    const seconds = cpuSeconds(pid);
    if (seconds !== undefined) snapshot.set(pid, { name, seconds });
  }
  return snapshot;
}

/**
 * CPU seconds of every Postgres backend connected to `database` right now,
 * named `postgres:<application_name>`. `admin` must be connected to another
 * database so that it is not counted.
 */
export async function snapshotPostgres(admin: pg.Client, database: string): Promise<CpuSnapshot> {
  const { rows } = await admin.query<{ pid: number; application_name: string }>(
    'SELECT pid, application_name FROM pg_stat_activity WHERE datname = $1',
    [database],
  );
  const snapshot: CpuSnapshot = new Map();
  for (const { pid, application_name } of rows) {
    const seconds = cpuSeconds(pid);
    if (seconds !== undefined) snapshot.set(pid, { name: `postgres:${application_name || 'other'}`, seconds });
  }
  return snapshot;
}

export const round = (value: number, digits = 3) => Number(value.toFixed(digits));
