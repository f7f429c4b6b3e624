import autocannon from 'autocannon';
import type pg from 'pg';
import { loadAverage, round, snapshotPostgres, snapshotProcesses, watchCpu, type CpuSnapshot } from './cpu.js';
import type { Request } from './scenarios.js';

/** One server under load: the function or a baseline. */
export interface Target {
  name: string;
  url: string;
  /** The processes whose CPU counts for this target (name → pid). */
  processes: () => Record<string, number>;
  /** The request of the next round (book makes a fresh event for each). */
  prepare: () => Promise<Request>;
  /** Runs once the load stopped, inside the CPU window (book waits for its orders there). */
  settle?: (measured: autocannon.Result, loadStoppedAt: number) => Promise<Record<string, unknown>>;
}

export interface Round {
  target: string;
  warmUp: boolean;
  requests: number;
  requestsPerSecond: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  non2xx: number;
  accepted: number;
  loadAverage: [number, number, number];
  /** CPU seconds by process (Postgres backends as `postgres:<application_name>`). */
  cpuSeconds: Record<string, number>;
  [extra: string]: unknown;
}

export interface Load {
  seconds: number;
  connections: number;
  rounds: number;
  /** Connected to another database than the one under load, to read pg_stat_activity. */
  admin: pg.Client;
  database: string;
}

/**
 * A warm-up round of every target, then `rounds` rounds of each in turn
 * (A, B, C, A, B, C), so that a noisy machine weighs on all of them alike.
 */
export async function interleave(targets: Target[], load: Load): Promise<Round[]> {
  const results: Round[] = [];
  for (let index = 0; index <= load.rounds; index++) {
    for (const target of targets) results.push(await measure(target, load, index === 0));
  }
  return results;
}

async function measure(target: Target, load: Load, warmUp: boolean): Promise<Round> {
  const request = await target.prepare();
  const snapshot = async (): Promise<CpuSnapshot> => new Map([...snapshotProcesses(target.processes()), ...(await snapshotPostgres(load.admin, load.database))]);
  const cpu = await watchCpu(snapshot);
  const measured = await autocannon({
    url: `${target.url}${request.path}`,
    method: request.method,
    headers: request.headers,
    body: request.body,
    connections: load.connections,
    duration: warmUp ? Math.min(load.seconds, 2) : load.seconds,
  });
  const extra = (await target.settle?.(measured, Date.now())) ?? {};
  const cpuSeconds = await cpu.stop();
  return {
    target: target.name,
    warmUp,
    requests: measured.requests.total,
    requestsPerSecond: Math.round(measured.requests.average),
    latencyP50Ms: measured.latency.p50,
    latencyP99Ms: measured.latency.p99,
    non2xx: measured.non2xx,
    accepted: measured['2xx'],
    loadAverage: loadAverage(),
    cpuSeconds,
    ...extra,
  };
}

/** The median of `values` (the mean of the middle two for an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : round((sorted[middle - 1]! + sorted[middle]!) / 2, 1);
}
