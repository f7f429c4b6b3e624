import pg from 'pg';

// What the database says happened to a burst's bookings. Every read uses a
// connection of its own: the database may just have been restarted.

async function query<R extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3_000, query_timeout: 10_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A fresh event for one burst, with more tickets than it can sell. */
export async function createEvent(url: string, tickets: number): Promise<number> {
  const rows = await query<{ event_id: number }>(
    url,
    `INSERT INTO events (name, venue_id, total_capacity, left_capacity, ticket_price)
     VALUES ($1, (SELECT min(venue_id) FROM venues), $2, $2, 10) RETURNING event_id`,
    [`Chaos ${new Date().toISOString()}`, tickets],
  );
  return rows[0]!.event_id;
}

/**
 * How many of the accepted bookings are CONFIRMED now, and how many outbox
 * rows of the event are unpublished; undefined while the database does not answer.
 */
export async function progress(url: string, eventId: number, bookingIds: string[]): Promise<{ confirmed: number; unpublished: number } | undefined> {
  try {
    const rows = await query<{ confirmed: number; unpublished: number }>(
      url,
      `SELECT (SELECT count(*)::int FROM bookings WHERE status = 'CONFIRMED' AND booking_id = ANY($2::uuid[])) AS confirmed,
              (SELECT count(*)::int FROM outbox WHERE published_at IS NULL
                  AND message_key IN (SELECT booking_id::text FROM bookings WHERE event_id = $1)) AS unpublished`,
      [eventId, bookingIds],
    );
    return rows[0];
  } catch {
    return undefined;
  }
}

export interface Ledger {
  /** Bookings of the event in the bookings table. */
  inDatabase: number;
  /** Accepted bookings that are CONFIRMED. */
  confirmed: number;
  /** Orders beyond one per booking, and bookings beyond one per Idempotency-Key. */
  doubled: number;
  /** Outbox rows of the event's bookings still unpublished. */
  stuckOutbox: number;
}

export async function ledger(url: string, eventId: number, acceptedIds: string[]): Promise<Ledger> {
  const bookings = await query<{ booking_id: string; status: string; idempotency_key: string | null; orders: number }>(
    url,
    `SELECT b.booking_id::text, b.status, b.idempotency_key,
            (SELECT count(*)::int FROM orders o WHERE o.booking_id = b.booking_id) AS orders
       FROM bookings b WHERE b.event_id = $1`,
    [eventId],
  );
  const [{ n: stuckOutbox }] = (await query<{ n: number }>(
    url,
    'SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL AND message_key = ANY($1::text[])',
    [bookings.map((b) => b.booking_id)],
  )) as [{ n: number }];
  const accepted = new Set(acceptedIds);
  const keys = new Set(bookings.map((b) => b.idempotency_key));
  return {
    inDatabase: bookings.length,
    confirmed: bookings.filter((b) => accepted.has(b.booking_id) && b.status === 'CONFIRMED').length,
    doubled: bookings.reduce((extra, b) => extra + Math.max(0, b.orders - 1), 0) + (bookings.length - keys.size),
    stuckOutbox,
  };
}
