import type autocannon from 'autocannon';
import type pg from 'pg';
import { round } from './cpu.js';
import { startProcess, type Started } from './processes.js';

/**
 * The order pipeline as `npm start` runs it: consume-order, the relay and,
 * with Kafka, the trigger between them, each its own process.
 */
export async function startPipeline(env: NodeJS.ProcessEnv, kafka: boolean): Promise<Started[]> {
  const started: Started[] = [];
  try {
    const consumeOrder = await startProcess('consume-order', ['shared/run.ts', 'consume-order'], { ...env, FUNCTION_NAME: 'consume-order' });
    started.push(consumeOrder);
    const target = { CONSUME_ORDER_URL: consumeOrder.url };
    if (kafka) started.push(await startProcess('trigger', ['trigger/main.ts'], { ...env, ...target }));
    started.push(await startProcess('relay', ['relay/main.ts'], { ...env, ...(kafka ? {} : target) }));
    return started;
  } catch (error) {
    await Promise.all(started.map((process) => process.stop()));
    throw error;
  }
}

/** A fresh event of `capacity` tickets, so each round sells on its own. */
export async function createEvent(db: pg.Client, capacity: number): Promise<number> {
  const { rows } = await db.query<{ event_id: number }>(
    "INSERT INTO events (name, venue_id, total_capacity, left_capacity, ticket_price) VALUES ('Load test', 1, $1, $1, 10) RETURNING event_id",
    [capacity],
  );
  return rows[0]!.event_id;
}

/** What the database holds for one event after its round. */
export interface EventCheck {
  capacity: number;
  ticketsSold: number;
  leftCapacity: number;
  /** Tickets of bookings beyond the capacity; must be 0. */
  oversold: number;
  /** left_capacity = capacity - tickets of bookings, and never negative. */
  capacityConsistent: boolean;
  bookings: number;
  /**
   * Every 201 of the round is a booking row. There may be more rows: the
   * load stops with requests in flight whose answers it never counts.
   */
  acceptedAreBookings: boolean;
  orders: number;
  confirmed: number;
  /** Every booking has exactly one order and is CONFIRMED. */
  allConfirmed: boolean;
}

export async function checkEvent(db: pg.Client | pg.Pool, eventId: number, accepted: number): Promise<EventCheck> {
  const { rows } = await db.query<{ capacity: number; left_capacity: number; sold: string; bookings: string; orders: string; confirmed: string; one_order_each: boolean }>(
    `SELECT e.total_capacity AS capacity, e.left_capacity,
            coalesce(sum(b.ticket_count), 0) AS sold, count(b.booking_id) AS bookings,
            count(o.order_id) AS orders, count(*) FILTER (WHERE b.status = 'CONFIRMED') AS confirmed,
            bool_and(o.order_id IS NOT NULL) AS one_order_each
       FROM events e
       LEFT JOIN bookings b ON b.event_id = e.event_id
       LEFT JOIN orders o ON o.booking_id = b.booking_id
      WHERE e.event_id = $1
      GROUP BY e.event_id`,
    [eventId],
  );
  const row = rows[0]!;
  const [sold, bookings, orders, confirmed] = [row.sold, row.bookings, row.orders, row.confirmed].map(Number) as [number, number, number, number];
  return {
    capacity: row.capacity,
    ticketsSold: sold,
    leftCapacity: row.left_capacity,
    oversold: Math.max(0, sold - row.capacity),
    capacityConsistent: row.left_capacity >= 0 && row.left_capacity === row.capacity - sold,
    bookings,
    acceptedAreBookings: bookings >= accepted,
    orders,
    confirmed,
    allConfirmed: bookings === orders && orders === confirmed && (bookings === 0 || row.one_order_each),
  };
}

async function ordersOf(db: pg.Client, eventId: number): Promise<number> {
  const { rows } = await db.query<{ count: string }>('SELECT count(*) FROM orders WHERE event_id = $1', [eventId]);
  return Number(rows[0]!.count);
}

async function pendingOf(db: pg.Client, eventId: number): Promise<number> {
  const { rows } = await db.query<{ count: string }>("SELECT count(*) FROM bookings WHERE event_id = $1 AND status = 'PENDING'", [eventId]);
  return Number(rows[0]!.count);
}

/**
 * After a booking round: the orders made while the load ran, the time the
 * pipeline takes to confirm the rest (polled, up to `drainTimeoutMs`), and
 * the checks of the event's rows.
 */
export async function settleBookings(db: pg.Client, eventId: number, measured: autocannon.Result, loadStoppedAt: number, drainTimeoutMs: number) {
  const ordersDuringLoad = await ordersOf(db, eventId);
  while ((await pendingOf(db, eventId)) > 0 && Date.now() - loadStoppedAt < drainTimeoutMs) await new Promise((resolve) => setTimeout(resolve, 100));
  const drained = (await pendingOf(db, eventId)) === 0;
  const seconds = measured.duration;
  const check = await checkEvent(db, eventId, measured['2xx']);
  return {
    eventId,
    ticketsPerSecond: Math.round(check.ticketsSold / seconds),
    ordersPerSecond: Math.round(ordersDuringLoad / seconds),
    drainSeconds: drained ? round((Date.now() - loadStoppedAt) / 1000, 2) : null,
    ...check,
  };
}
