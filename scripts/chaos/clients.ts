import { setTimeout as sleep } from 'node:timers/promises';

/** A burst of bookings, spread evenly over `seconds`, at most `concurrency` at a time. */
export interface Burst {
  gateway: string;
  eventId: number;
  count: number;
  seconds: number;
  concurrency: number;
  /**
   * How long one booking is retried (503/429/5xx/network) before its client
   * gives up; no client goes on longer than this after the burst's end.
   */
  retryForMs: number;
  /** Unique per burst: the Idempotency-Keys are `<keyPrefix>-<n>`. */
  keyPrefix: string;
  bearer(customerId: number): Promise<string>;
  /** Stops the burst: no new bookings, no more retries. */
  signal?: AbortSignal;
}

export interface BurstResult {
  /** Every answer by status, retries included; `net` for a network error or timeout. */
  statuses: Record<string, number>;
  /** Idempotency-Key → the booking the system answered 201 for. */
  accepted: Map<string, string>;
  /** Keys answered 201 with two different bookings: the same request booked twice. */
  doubledKeys: number;
  /** Bookings finally refused with a 4xx (none of this load's bookings is invalid). */
  refused: Record<string, number>;
  /** Bookings whose client gave up (still failing when its retry time ran out, or the burst was stopped). */
  gaveUp: number;
  /** When the last 201 came. */
  lastAcceptedAt: number;
}

const ATTEMPT_TIMEOUT_MS = 10_000;
const RETRYABLE = new Set([429, 500, 502, 503, 504]);

/** Seconds from a Retry-After header (only the delta-seconds form is used here), bounded. */
function retryAfterMs(header: string | null): number {
  const seconds = Number(header);
  const base = Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds, 5) * 1000 : 500;
  return base * (0.5 + Math.random() / 2);
}

/**
 * Clients that behave like real ones: each booking keeps its own
 * Idempotency-Key, and a 503/429 (after its Retry-After), another 5xx or a
 * network error is sent again with the same key until it succeeds or the
 * client's patience (`retryForMs`) runs out. A 201 is an accepted booking.
 */
export async function book(burst: Burst): Promise<BurstResult> {
  const result: BurstResult = { statuses: {}, accepted: new Map(), doubledKeys: 0, refused: {}, gaveUp: 0, lastAcceptedAt: 0 };
  const tokens = new Map<number, string>();
  for (const customerId of [1, 2, 3]) tokens.set(customerId, await burst.bearer(customerId));
  const count = (status: string) => (result.statuses[status] = (result.statuses[status] ?? 0) + 1);

  const started = Date.now();
  const burstDeadline = started + burst.seconds * 1000 + burst.retryForMs;

  async function oneBooking(n: number): Promise<void> {
    const customerId = (n % 3) + 1;
    const key = `${burst.keyPrefix}-${n}`;
    const giveUpAt = Math.min(Date.now() + burst.retryForMs, burstDeadline);
    const attemptSignal = () => (burst.signal ? AbortSignal.any([burst.signal, AbortSignal.timeout(ATTEMPT_TIMEOUT_MS)]) : AbortSignal.timeout(ATTEMPT_TIMEOUT_MS));
    for (;;) {
      let wait: number;
      try {
        const response = await fetch(`${burst.gateway}/api/v1/booking`, {
          method: 'POST',
          headers: { authorization: tokens.get(customerId)!, 'content-type': 'application/json', 'idempotency-key': key },
          body: JSON.stringify({ userId: customerId, eventId: burst.eventId, ticketCount: 1 }),
          signal: attemptSignal(),
        });
        const text = await response.text();
        count(String(response.status));
        if (response.status === 201) {
          const { bookingId } = JSON.parse(text) as { bookingId: string };
          const earlier = result.accepted.get(key);
          if (earlier && earlier !== bookingId) result.doubledKeys += 1;
          result.accepted.set(key, bookingId);
          result.lastAcceptedAt = Date.now();
          return;
        }
        if (!RETRYABLE.has(response.status)) {
          result.refused[response.status] = (result.refused[response.status] ?? 0) + 1;
          return;
        }
        wait = retryAfterMs(response.headers.get('retry-after'));
      } catch {
        count('net');
        wait = retryAfterMs(null);
      }
      if (Date.now() + wait > giveUpAt || burst.signal?.aborted) {
        result.gaveUp += 1;
        return;
      }
      await sleep(wait, undefined, { signal: burst.signal }).catch(() => undefined);
    }
  }

  // Arrivals at an even pace; a booking waits for a free client when all are busy.
  const inFlight = new Set<Promise<void>>();
  for (let n = 0; n < burst.count && !burst.signal?.aborted; n++) {
    const due = started + (n * burst.seconds * 1000) / burst.count;
    if (due > Date.now()) await sleep(due - Date.now(), undefined, { signal: burst.signal }).catch(() => undefined);
    while (inFlight.size >= burst.concurrency) await Promise.race(inFlight);
    const booking = oneBooking(n).finally(() => inFlight.delete(booking));
    inFlight.add(booking);
  }
  await Promise.all(inFlight);
  return result;
}
