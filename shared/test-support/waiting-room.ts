import { randomBytes } from 'node:crypto';
import { pool } from '../db.js';
import { createEvent } from './index.js';

/** Gives this process a key for waiting-room passes, as npm start gives its functions one. */
export function usePassKey(): void {
  process.env.QUEUE_PASS_KEY = randomBytes(32).toString('base64url');
}

export interface OnSale {
  startsAt: Date;
  admitPerMinute: number;
  maxActive: number;
  passMinutes: number;
}

/** An event sold through its waiting room (by default starting in an hour, 60 a minute, 100 active, 10-minute passes). */
export async function createOnSaleEvent(fields: Partial<OnSale> & { capacity?: number } = {}): Promise<number> {
  const { eventId } = await createEvent({ capacity: fields.capacity ?? 100 });
  await pool.query(
    `UPDATE events SET on_sale_starts_at = $2, on_sale_admit_per_minute = $3, on_sale_max_active = $4, on_sale_pass_minutes = $5
      WHERE event_id = $1`,
    [eventId, fields.startsAt ?? new Date(Date.now() + 3_600_000), fields.admitPerMinute ?? 60, fields.maxActive ?? 100, fields.passMinutes ?? 10],
  );
  return eventId;
}

/** `count` new customers, in id order. */
export async function createCustomers(count: number): Promise<number[]> {
  const tag = randomBytes(6).toString('hex');
  const { rows } = await pool.query<{ customer_id: number }>(
    `INSERT INTO customers (name, email)
     SELECT 'Queue Customer ' || i, 'queue-' || $2 || '-' || i || '@example.com' FROM generate_series(1, $1) AS i
     ORDER BY i
     RETURNING customer_id`,
    [count, tag],
  );
  return rows.map((r) => r.customer_id).sort((a, b) => a - b);
}

/** The sale starts now, by the database's clock: those who joined before it are early, anyone after is late. */
export async function startSaleNow(eventId: number): Promise<Date> {
  const { rows } = await pool.query<{ starts_at: Date }>('UPDATE events SET on_sale_starts_at = now() WHERE event_id = $1 RETURNING on_sale_starts_at AS starts_at', [eventId]);
  return rows[0]!.starts_at;
}

/** Runs `work` over `items`, at most `concurrency` at once, answers in the items' order. */
export async function inWaves<T, R>(items: T[], concurrency: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let i = 0; i < items.length; i += concurrency) results.push(...(await Promise.all(items.slice(i, i + concurrency).map(work))));
  return results;
}
