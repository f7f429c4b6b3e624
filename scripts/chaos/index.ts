import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, freePortBlock, functionNames } from '../functions.js';
import { dropDatabase, ensureDatabase } from '../local-postgres.js';
import { book, type BurstResult } from './clients.js';
import { kafkaUnderTest, ownIssuer, ownPostgres, runDirectory, type KafkaUnderTest, type OwnedIssuer, type OwnedPostgres } from './dependencies.js';
import { FaultNotInjected, type EndFault, type Fault } from './faults.js';
import { createEvent, ledger, progress as progressOf } from './ledger.js';
import { killSystemsNow, startSystem, type RunningSystem } from './system.js';

export { faults, type Fault } from './faults.js';

/**
 * The fault suite (issue 8: an outage of any dependency costs time, never a
 * booking). Each scenario runs `npm start` afresh on a database and topic
 * of its own, books a burst through the gateway, injects its fault
 * mid-burst, ends it, waits (bounded) for the system to recover by itself,
 * then counts what happened to every booking, Jepsen-style.
 */

/** The dependencies every scenario shares, owned by the harness. */
export interface Harness {
  readonly dir: string;
  readonly runId: string;
  readonly postgres: OwnedPostgres;
  readonly issuer: OwnedIssuer;
  readonly kafka: KafkaUnderTest;
  /** Aborted when the harness closes: scenarios still running end early. */
  readonly closing: AbortSignal;
  /** Keeps `work` (a scenario) so that close() waits for it. */
  track<T>(work: Promise<T>): Promise<T>;
  close(): Promise<void>;
  /** For a signal handler: stops what must not outlive the harness, synchronously. */
  closeNow(): void;
}

export async function startHarness(): Promise<Harness> {
  const runId = randomBytes(3).toString('hex');
  const dir = runDirectory(runId);
  mkdirSync(dir, { recursive: true });
  const closers: (() => Promise<void>)[] = [];
  const closing = new AbortController();
  const running = new Set<Promise<unknown>>();
  const close = async () => {
    closing.abort();
    await Promise.allSettled(running);
    const failures: unknown[] = [];
    for (const closer of closers.reverse()) await closer().catch((error: unknown) => failures.push(error));
    closers.length = 0;
    if (failures.length) throw new AggregateError(failures, 'the harness did not stop cleanly');
  };
  try {
    const kafka = await kafkaUnderTest();
    closers.push(() => kafka.close());
    const postgres = await ownPostgres(join(dir, 'postgres'));
    closers.push(() => postgres.close());
    const issuer = await ownIssuer();
    closers.push(() => issuer.close());
    return {
      dir,
      runId,
      postgres,
      issuer,
      kafka,
      closing: closing.signal,
      track(work) {
        running.add(work);
        void work.finally(() => running.delete(work)).catch(() => undefined);
        return work;
      },
      close,
      closeNow() {
        killSystemsNow();
        if (!kafka.notOwned) spawnSync('bash', ['scripts/kafka/stop.sh'], { stdio: 'inherit' });
      },
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/** How big a scenario is. */
export interface Sizing {
  quick: boolean;
  bookings: number;
  concurrency: number;
  /** Seconds of burst before the fault and after it. */
  leadSeconds: number;
  tailSeconds: number;
  /**
   * All accepted bookings must be CONFIRMED this long after the fault ended
   * (or the last 201). Above the relay's 30 s lease (RELAY_LEASE_MS): rows a
   * killed relay had claimed wait that long.
   */
  recoverSeconds: number;
}

export const sizing = {
  full: { quick: false, bookings: 2000, concurrency: 32, leadSeconds: 5, tailSeconds: 5, recoverSeconds: 60 },
  quick: { quick: true, bookings: 300, concurrency: 16, leadSeconds: 3, tailSeconds: 3, recoverSeconds: 45 },
} satisfies Record<string, Sizing>;

/** One line of the table. */
export interface Row {
  scenario: string;
  what: string;
  /** Why it did not run, when it did not. */
  skipped?: string;
  statuses: Record<string, number>;
  /** 201s the clients saw (distinct bookings). */
  accepted: number;
  inDatabase: number;
  confirmed: number;
  /** Accepted, not CONFIRMED by the deadline. */
  lost: number;
  doubled: number;
  stuckOutbox: number;
  deadLetters: number;
  crashed: string[];
  serverErrors: number;
  /** Valid bookings finally refused with a 4xx. */
  refused: number;
  /** Bookings whose client never got an answer in its patience. */
  gaveUp: number;
  recovered: boolean;
  /** From the end of the fault to every accepted booking confirmed, the outbox drained and every child ready. */
  recoverySeconds?: number;
  /** What the fault expected to see and did not. */
  unmet: string[];
  notes: string[];
}

/** Why a row fails; empty when it passes (or did not run). */
export function failures(row: Row): string[] {
  if (row.skipped) return [];
  const found: string[] = [];
  if (row.lost) found.push(`${row.lost} lost`);
  if (row.doubled) found.push(`${row.doubled} doubled`);
  if (row.deadLetters) found.push(`${row.deadLetters} dead letters`);
  if (row.crashed.length) found.push(`${row.crashed.length} crashed`);
  if (row.serverErrors) found.push(`${row.serverErrors} 500s`);
  if (row.refused) found.push(`${row.refused} valid bookings refused`);
  if (row.gaveUp) found.push(`${row.gaveUp} clients gave up`);
  if (!row.recovered) found.push('not recovered');
  found.push(...row.unmet);
  if (row.notes.some((note) => note.startsWith('fault not injected') || note.startsWith('harness error'))) found.push('fault not injected or run not finished');
  return found;
}

function emptyRow(fault: Fault): Row {
  return { scenario: fault.name, what: fault.what, statuses: {}, accepted: 0, inDatabase: 0, confirmed: 0, lost: 0, doubled: 0, stuckOutbox: 0, deadLetters: 0, crashed: [], serverErrors: 0, refused: 0, gaveUp: 0, recovered: false, unmet: [], notes: [] };
}

/** Waits until every accepted booking is CONFIRMED, the outbox drained and the system whole, or the deadline. */
async function recovery(system: RunningSystem, databaseUrl: string, eventId: number, bookingIds: string[], deadline: number, signal: AbortSignal): Promise<{ at?: number; notReady: string[] }> {
  for (;;) {
    const now = await progressOf(databaseUrl, eventId, bookingIds);
    const notReady = system.running() ? await system.notReady() : ['npm start'];
    if (now?.confirmed === bookingIds.length && now.unpublished === 0 && notReady.length === 0) return { at: Date.now(), notReady };
    if (Date.now() > deadline || signal.aborted) return { notReady };
    await sleep(500);
  }
}

export interface ScenarioOptions {
  /** Ends the scenario early (a test's timeout): the fault is ended and everything stopped. */
  signal?: AbortSignal;
  progress?: (line: string) => void;
}

/** Runs one scenario from a fresh `npm start` to its row; every process it started is stopped. */
export function runScenario(harness: Harness, fault: Fault, size: Sizing, options: ScenarioOptions = {}): Promise<Row> {
  return harness.track(scenario(harness, fault, size, options));
}

async function scenario(harness: Harness, fault: Fault, size: Sizing, options: ScenarioOptions): Promise<Row> {
  const row = emptyRow(fault);
  const unavailable = fault.unavailable?.(harness.kafka);
  if (unavailable) return { ...row, skipped: unavailable };
  const signal = AbortSignal.any([options.signal ?? new AbortController().signal, harness.closing]);
  // Every client's attempt and wait listens to it.
  setMaxListeners(0, signal);
  const progress = (line: string) => options.progress?.(`${fault.name}: ${line}`);
  const wait = (seconds: number) => sleep(seconds * 1000, undefined, { signal }).catch(() => undefined);

  const database = `chaos_${fault.name.replace(/\W/g, '_')}`;
  const databaseUrl = await ensureDatabase(harness.postgres.adminUrl, database);
  const topic = `chaos-${harness.runId}-${fault.name}`;
  let system: RunningSystem | undefined;
  let burst: Promise<BurstResult> | undefined;
  let end: EndFault | undefined;
  try {
    progress('starting npm start');
    system = await startSystem({
      databaseUrl,
      brokers: harness.kafka.brokers,
      issuer: harness.issuer.issuer,
      delivererEnv: harness.issuer.delivererEnv,
      topic,
      group: topic,
      ports: { gateway: await freePort(), functions: await freePortBlock(functionNames().length + 3), devIssuer: await freePort() },
      logFile: join(harness.dir, `${fault.name}.log`),
    });
    const eventId = await createEvent(databaseUrl, size.bookings * 2);
    const holdSeconds = size.quick ? fault.holdSeconds.quick : fault.holdSeconds.full;
    progress(`children ${system.children.join(', ')}; ${size.bookings} bookings over ${size.leadSeconds + holdSeconds + size.tailSeconds} s`);
    burst = book({
      gateway: system.gateway,
      eventId,
      count: size.bookings,
      seconds: size.leadSeconds + holdSeconds + size.tailSeconds,
      concurrency: size.concurrency,
      retryForMs: (holdSeconds + 60) * 1000,
      keyPrefix: topic,
      bearer: (customerId) => harness.issuer.bearer(customerId),
      signal,
    });

    await wait(size.leadSeconds);
    if (signal.aborted) throw new Error('aborted');
    progress(fault.what);
    const context = {
      system,
      postgres: harness.postgres,
      issuer: harness.issuer,
      kafka: harness.kafka,
      database,
      databaseUrl,
      note: (text: string) => row.notes.push(text),
      unmet: (text: string) => row.unmet.push(text),
    };
    try {
      end = await fault.inject(context);
    } catch (error) {
      row.notes.push(`fault not injected: ${error instanceof FaultNotInjected ? error.message : String(error)}`);
    }
    await wait(holdSeconds);
    const ending = end;
    end = undefined;
    await ending?.();
    const faultEnded = Date.now();
    progress('fault ended; waiting for the burst');

    const clients = await burst;
    const bookingIds = [...new Set(clients.accepted.values())];
    const recoverSeconds = Math.min(size.recoverSeconds, fault.recoverWithinSeconds ?? Infinity);
    const deadline = Math.max(faultEnded, clients.lastAcceptedAt) + recoverSeconds * 1000;
    progress(`${bookingIds.length} accepted; waiting up to ${Math.round((deadline - Date.now()) / 1000)} s for all of them to be confirmed`);
    const recovered = await recovery(system, databaseUrl, eventId, bookingIds, deadline, signal);
    const counted = await ledger(databaseUrl, eventId, bookingIds);

    row.statuses = clients.statuses;
    row.accepted = bookingIds.length;
    row.inDatabase = counted.inDatabase;
    row.confirmed = counted.confirmed;
    row.lost = bookingIds.length - counted.confirmed;
    row.doubled = counted.doubled + clients.doubledKeys;
    row.stuckOutbox = counted.stuckOutbox;
    row.deadLetters = await harness.kafka.countMessages(`${topic}.dead-letter`);
    row.crashed = system.crashes().map((crash) => `${crash.name}${crash.pid ? ` (pid ${crash.pid})` : ''}`);
    row.serverErrors = Math.max(clients.statuses['500'] ?? 0, system.serverErrors());
    row.refused = Object.values(clients.refused).reduce((a, b) => a + b, 0);
    row.gaveUp = clients.gaveUp;
    row.recovered = recovered.at !== undefined && clients.gaveUp === 0;
    if (recovered.at !== undefined) row.recoverySeconds = Math.max(0, (recovered.at - faultEnded) / 1000);
    if (Object.keys(clients.refused).length) row.notes.push(`refused: ${formatCounts(clients.refused)}`);
    if (recovered.notReady.length) row.notes.push(`not running or not ready at the deadline: ${recovered.notReady.join(', ')}`);
    if (!system.running()) row.notes.push('npm start is no longer running');
    if (signal.aborted) row.notes.push('harness error: aborted before the deadline');
    return row;
  } catch (error) {
    row.notes.push(`harness error: ${(error as Error).message.split('\n')[0]}`);
    return row;
  } finally {
    // Whatever happened, the fault ends and nothing of this scenario outlives it.
    await end?.().catch((error: unknown) => row.notes.push(`ending the fault failed: ${String(error)}`));
    await burst?.catch(() => undefined);
    await system?.stop();
    if (!harness.closing.aborted) {
      await harness.postgres.start();
      await harness.issuer.bringBack();
    }
    await dropDatabase(harness.postgres.adminUrl, database).catch(() => undefined);
    row.notes.push(`log: ${join(harness.dir, `${fault.name}.log`)}`);
  }
}

export function formatCounts(counts: Record<string, number>): string {
  return Object.entries(counts)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([status, n]) => `${status}:${n}`)
    .join(' ');
}

/** The table, one row per scenario, then each row's notes. */
export function formatTable(rows: Row[]): string {
  const header = ['scenario', 'requests by status', 'accepted (db)', 'confirmed', 'lost', 'doubled', 'stuck outbox', 'dead letters', 'crashed', '500s', 'recovered', 'verdict'];
  const lines = rows.map((row) =>
    row.skipped
      ? [row.scenario, row.skipped, '', '', '', '', '', '', '', '', '', 'skipped']
      : [
          row.scenario,
          formatCounts(row.statuses) || '-',
          `${row.accepted} (${row.inDatabase})`,
          String(row.confirmed),
          String(row.lost),
          String(row.doubled),
          String(row.stuckOutbox),
          String(row.deadLetters),
          String(row.crashed.length),
          String(row.serverErrors),
          row.recovered ? `yes, ${row.recoverySeconds!.toFixed(1)} s` : 'no',
          failures(row).length ? `FAIL: ${failures(row).join(', ')}` : 'ok',
        ],
  );
  const widths = header.map((title, i) => Math.max(title.length, ...lines.map((line) => line[i]!.length)));
  const format = (cells: string[]) => `| ${cells.map((cell, i) => cell.padEnd(widths[i]!)).join(' | ')} |`;
  const notes = rows.flatMap((row) => [
    ...(row.crashed.length ? [`  ${row.scenario}: crashed: ${row.crashed.join(', ')}`] : []),
    ...row.notes.map((note) => `  ${row.scenario}: ${note}`),
  ]);
  return [format(header), format(widths.map((w) => '-'.repeat(w))), ...lines.map(format), '', ...notes].join('\n');
}
