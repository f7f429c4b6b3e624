import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { round } from './cpu.js';
import { median, type Round } from './rounds.js';

/** A figure over the measured rounds: the median and its range. */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

/** One line of load/results/<function>.jsonl. Lines of older runs lack the optional fields. */
export interface Result {
  at: string;
  function: string;
  scenario?: string;
  seconds: number;
  rounds?: number;
  connections: number;
  /** The function's figures: medians over the measured rounds. */
  requestsPerSecond: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  non2xx: number;
  requestsPerSecondSpread?: Spread;
  /** Same-run baselines: a functions-framework hello (its own server) and a raw node:http hello. */
  baselines?: Record<string, { requestsPerSecond: Spread; latencyP99Ms: number; requestsPerCpuSecond: number | null }>;
  ratioToFfHello?: number;
  ratioToRawHttp?: number;
  /** CPU seconds over the measured rounds of the function, by process. */
  cpuSeconds?: Record<string, number>;
  /** Requests of the function per CPU-second of its process and its own Postgres backends. */
  requestsPerCpuSecond?: number | null;
  loadAverage?: [number, number, number][];
  booking?: BookingSummary;
  measuredRounds?: Round[];
  /** Before same-run baselines: the ratio to the function's own /_/health. */
  ratioToBaseline?: number;
  baselineRequestsPerSecond?: number;
}

/** The booking scenario over its rounds: figures of the measured ones, checks of all. */
export interface BookingSummary {
  kafka: boolean;
  synchronousCommit: string;
  capacityPerRound: number;
  ticketsPerSecond: Spread;
  /** Orders created while the load ran, per second of load. */
  ordersPerSecond: Spread;
  /** From the end of the load until every booking was CONFIRMED; null when a round did not drain in time. */
  drainSeconds: Spread | null;
  /** Requests per CPU-second of every process of the system (the pipeline and all its Postgres backends). */
  requestsPerCpuSecondAllProcesses: number | null;
  oversold: number;
  capacityConsistent: boolean;
  acceptedAreBookings: boolean;
  allConfirmed: boolean;
  correct: boolean;
}

export function spread(values: number[]): Spread {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

/** Requests per CPU-second of the processes named by `counts` over `rounds`. */
export function perCpuSecond(rounds: Round[], counts: (process: string) => boolean): number | null {
  const requests = rounds.reduce((sum, r) => sum + r.requests, 0);
  const cpu = rounds.reduce((sum, r) => sum + Object.entries(r.cpuSeconds).reduce((s, [name, seconds]) => s + (counts(name) ? seconds : 0), 0), 0);
  return cpu > 0 ? Math.round(requests / cpu) : null;
}

/** CPU seconds by process, summed over `rounds`. */
export function cpuTotals(rounds: Round[]): Record<string, number> {
  const totals: Record<string, number> = {};
  for (const r of rounds) for (const [name, seconds] of Object.entries(r.cpuSeconds)) totals[name] = round((totals[name] ?? 0) + seconds);
  return totals;
}

/** Appends `result` to its file and prints it beside the previous line of that file. */
export async function keep(result: Result, dir: string): Promise<void> {
  const file = `${dir}/${result.function}.jsonl`;
  const previous = (await keptLines<Result>(file)).findLast((line) => scenarioOf(line) === scenarioOf(result));
  await keepLine(file, result);
  print(result);
  if (previous) console.log(`  ${comparison(previous, result)}`);
  console.log(`  kept in ${file}`);
}

/** The lines kept in `file` so far, oldest first; none when it does not exist yet. */
export async function keptLines<T>(file: string): Promise<T[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line) as T);
}

/** Appends `line` to `file` as one line of JSON. */
export async function keepLine(file: string, line: object): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await appendFile(file, `${JSON.stringify(line)}\n`);
}

function print(result: Result): void {
  const range = result.requestsPerSecondSpread;
  console.log(
    `${result.function}${result.scenario && result.scenario !== result.function ? ` (${result.scenario})` : ''}: ${result.requestsPerSecond} req/s` +
      `${range ? ` (${range.min}-${range.max})` : ''}, p50 ${result.latencyP50Ms} ms, p99 ${result.latencyP99Ms} ms, non-2xx ${result.non2xx}` +
      ` — ${result.connections} connections, ${result.rounds} rounds of ${result.seconds} s`,
  );
  for (const [name, baseline] of Object.entries(result.baselines ?? {})) {
    const b = baseline.requestsPerSecond;
    console.log(`  ${name}: ${b.median} req/s (${b.min}-${b.max}), p99 ${baseline.latencyP99Ms} ms, ${baseline.requestsPerCpuSecond ?? '?'} req per CPU-second`);
  }
  console.log(`  ratio to ff-hello ${result.ratioToFfHello}, to raw-http ${result.ratioToRawHttp} (same run, interleaved)`);
  const cpu = Object.entries(result.cpuSeconds ?? {}).map(([name, seconds]) => `${name} ${seconds}`).join(', ');
  console.log(`  CPU seconds: ${cpu}; ${result.requestsPerCpuSecond ?? '?'} req per CPU-second (function + its Postgres backends)`);
  console.log(`  load average per round: ${(result.loadAverage ?? []).map((l) => l[0]).join(' ')}`);
  const booking = result.booking;
  if (!booking) return;
  const spreadText = (s: Spread) => `${s.median} (${s.min}-${s.max})`;
  console.log(
    `  booking (${booking.kafka ? 'Kafka' : 'relay straight to consume-order'}, synchronous_commit ${booking.synchronousCommit}, ${booking.capacityPerRound} tickets per event):` +
      ` ${spreadText(booking.ticketsPerSecond)} tickets/s, ${spreadText(booking.ordersPerSecond)} orders/s while loading,` +
      ` drained ${booking.drainSeconds ? `${spreadText(booking.drainSeconds)} s` : 'NOT within the deadline'} after the load stopped;` +
      ` ${booking.requestsPerCpuSecondAllProcesses ?? '?'} req per CPU-second of every process`,
  );
  console.log(
    `  checks: ${booking.oversold} oversold, capacity ${booking.capacityConsistent ? 'consistent' : 'INCONSISTENT'},` +
      ` ${booking.acceptedAreBookings ? 'every 201 a booking' : 'SOME 201s WITHOUT A BOOKING'},` +
      ` ${booking.allConfirmed ? 'every booking exactly one CONFIRMED order' : 'NOT every booking has exactly one CONFIRMED order'}`,
  );
}

/** Lines from before scenarios were named ran book on an event that never sold out. */
const scenarioOf = (result: Result) => result.scenario ?? (result.function === 'book' ? 'hot' : result.function);

/** How `result` compares with the previous line, which may predate any field. */
export function comparison(previous: Result, result: Result): string {
  const change = (now: number, then: number) => `${((now / then - 1) * 100).toFixed(1)}%`;
  if (previous.ratioToFfHello && result.ratioToFfHello) {
    return `previous run (${previous.at}): ratio to ff-hello ${previous.ratioToFfHello}; change ${change(result.ratioToFfHello, previous.ratioToFfHello)}`;
  }
  return `previous run (${previous.at}, no same-run ff-hello baseline): ${previous.requestsPerSecond} req/s at ${previous.connections} connections; change in req/s ${change(result.requestsPerSecond, previous.requestsPerSecond)}`;
}
