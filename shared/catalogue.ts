import type { Queryable } from './db.js';
import { problems } from './errors.js';
import { Decimal } from './json.js';

/**
 * An event as the original inventory service answered it (`capacity` is
 * what is left), plus what an operator may set: each present only when set.
 */
export interface EventView {
  eventId: number;
  event: string;
  capacity: number;
  ticketPrice: Decimal;
  venue: { id: number; name: string; address: string; totalCapacity: number };
  maxTicketsPerCustomer?: number;
  onSale?: OnSale;
}

/** How a waiting room runs an event's sale; `startsAt` an ISO instant in UTC. */
export interface OnSale {
  startsAt: string;
  admitPerMinute: number;
  maxActive: number;
  passMinutes: number;
}

/** A venue as get-venue answers it. */
export interface VenueView {
  venueId: number;
  venueName: string;
  totalCapacity: number;
  address: string;
}

/**
 * How long one answer of the catalogue is shared, counted from the moment
 * its query started. The promise to buyers is that capacity left never lags
 * a sale by more than a second; a quarter of that leaves room for a slow
 * query and a slow network, while a hot event read thousands of times a
 * second costs one query per quarter second instead of one per request. A
 * constant, not a setting: it is part of that promise.
 */
export const CATALOGUE_MAX_AGE_MS = 250;

// Event ids and pages come from clients: unknown ids and odd pages must not
// grow memory. A page holds up to 500 events, hence fewer of them.
const MAX_EVENTS_KEPT = 1_000;
const MAX_PAGES_KEPT = 32;

export interface CatalogueReads {
  /** One event, or undefined if there is none with that id. */
  findEvent(eventId: number): Promise<EventView | undefined>;
  /** Events in id order, one page at a time. */
  listEvents(page: { limit: number; offset: number }): Promise<EventView[]>;
}

export interface CatalogueOptions {
  maxAgeMs?: number;
  maxEvents?: number;
  maxPages?: number;
  /** A monotonic clock in milliseconds; tests pass their own. */
  now?: () => number;
}

/**
 * The catalogue's reads over `db`, each answer (an event, a missing event,
 * a page) shared by every caller for at most `maxAgeMs` (see
 * `CATALOGUE_MAX_AGE_MS`). The views are shared too: callers only read them.
 */
export function catalogueReads(db: Queryable, options: CatalogueOptions = {}): CatalogueReads {
  const { maxAgeMs = CATALOGUE_MAX_AGE_MS, maxEvents = MAX_EVENTS_KEPT, maxPages = MAX_PAGES_KEPT, now } = options;
  const events = recentAnswers<number, EventView | undefined>({ maxAgeMs, maxEntries: maxEvents, now });
  const pages = recentAnswers<string, EventView[]>({ maxAgeMs, maxEntries: maxPages, now });
  return {
    findEvent: (eventId) => events.get(eventId, () => readEvent(db, eventId)),
    listEvents: (page) => pages.get(`${page.limit}:${page.offset}`, () => listEvents(db, page)),
  };
}

export interface RecentAnswers<K, V> {
  /** The answer for `key`: a recent one, or `load`'s. */
  get(key: K, load: () => Promise<V>): Promise<V>;
  /** How many answers are kept. */
  readonly size: number;
}

/**
 * Answers by key, each shared by every caller for `maxAgeMs` from the
 * moment its load started: concurrent misses wait for one load,
 * and an answer is never handed out once older (not even a load still in
 * flight), so it reflects the database as of at most `maxAgeMs` ago. A
 * failure reaches those already waiting for that load and is then
 * forgotten. At most `maxEntries` answers are kept.
 */
export function recentAnswers<K, V>(
  { maxAgeMs, maxEntries, now = () => performance.now() }: { maxAgeMs: number; maxEntries: number; now?: (() => number) | undefined },
): RecentAnswers<K, V> {
  const entries = new Map<K, { startedAt: number; answer: Promise<V> }>();
  return {
    get(key, load) {
      const at = now();
      const kept = entries.get(key);
      if (kept && at - kept.startedAt < maxAgeMs) return kept.answer;
      entries.delete(key);
      // A map iterates in insertion order, so the oldest answers come first:
      // drop those that have expired, and the oldest when full.
      for (const [oldKey, old] of entries) {
        if (entries.size < maxEntries && at - old.startedAt < maxAgeMs) break;
        entries.delete(oldKey);
      }
      const entry = { startedAt: at, answer: load() };
      entries.set(key, entry);
      entry.answer.catch(() => {
        if (entries.get(key) === entry) entries.delete(key);
      });
      return entry.answer;
    },
    get size() {
      return entries.size;
    },
  };
}

interface OnSaleColumns {
  on_sale_starts_at: Date | null;
  on_sale_admit_per_minute: number | null;
  on_sale_max_active: number | null;
  on_sale_pass_minutes: number | null;
}

interface EventRow extends OnSaleColumns {
  event_id: number;
  name: string;
  left_capacity: number;
  ticket_price: string;
  venue_id: number;
  venue_name: string;
  venue_address: string;
  venue_total_capacity: number;
  max_tickets_per_customer: number | null;
}

const selectEvents = `
  SELECT e.event_id, e.name, e.left_capacity, e.ticket_price,
         v.venue_id, v.name AS venue_name, v.address AS venue_address, v.total_capacity AS venue_total_capacity,
         e.max_tickets_per_customer,
         e.on_sale_starts_at, e.on_sale_admit_per_minute, e.on_sale_max_active, e.on_sale_pass_minutes
    FROM events e
    JOIN venues v USING (venue_id)`;

async function listEvents(db: Queryable, page: { limit: number; offset: number }): Promise<EventView[]> {
  const { rows } = await db.query<EventRow>(`${selectEvents} ORDER BY e.event_id LIMIT $1 OFFSET $2`, [page.limit, page.offset]);
  return rows.map(toView);
}

/** One event as it stands, not a shared answer: what a writer answers after its write. */
export async function readEvent(db: Queryable, eventId: number): Promise<EventView | undefined> {
  const { rows } = await db.query<EventRow>(`${selectEvents} WHERE e.event_id = $1`, [eventId]);
  return rows[0] && toView(rows[0]);
}

function toView(row: EventRow): EventView {
  const onSale = onSaleOf(row);
  return {
    eventId: row.event_id,
    event: row.name,
    capacity: row.left_capacity,
    ticketPrice: new Decimal(row.ticket_price),
    venue: { id: row.venue_id, name: row.venue_name, address: row.venue_address, totalCapacity: row.venue_total_capacity },
    ...(row.max_tickets_per_customer === null ? {} : { maxTicketsPerCustomer: row.max_tickets_per_customer }),
    ...(onSale ? { onSale } : {}),
  };
}

// The database holds the four columns all set or all NULL (events_on_sale_all_or_none).
function onSaleOf(row: OnSaleColumns): OnSale | undefined {
  if (row.on_sale_starts_at === null) return undefined;
  return {
    startsAt: row.on_sale_starts_at.toISOString(),
    admitPerMinute: row.on_sale_admit_per_minute!,
    maxActive: row.on_sale_max_active!,
    passMinutes: row.on_sale_pass_minutes!,
  };
}

/** One venue as it stands, as get-venue answers it. */
export async function readVenue(db: Queryable, venueId: number): Promise<VenueView | undefined> {
  const { rows } = await db.query<{ venue_id: number; name: string; address: string; total_capacity: number }>(
    'SELECT venue_id, name, address, total_capacity FROM venues WHERE venue_id = $1',
    [venueId],
  );
  const venue = rows[0];
  return venue && { venueId: venue.venue_id, venueName: venue.name, totalCapacity: venue.total_capacity, address: venue.address };
}

// --- The operator's writes, each inside the caller's transaction. ---
//
// Locks are taken in one order, so no two writers deadlock: an event's row
// (FOR UPDATE, which also waits for book's FOR NO KEY UPDATE), then a venue's. An event writer holds its
// venue FOR SHARE, a venue writer FOR UPDATE: an event's capacity and its
// venue's never change past each other.

/** An event as an operator writes it: `capacity` is its total, `ticketPrice` exact decimal text. */
export interface EventFields {
  event: string;
  venueId: number;
  capacity: number;
  ticketPrice: string;
  maxTicketsPerCustomer: number | null;
  onSale: OnSale | null;
}

export interface VenueFields {
  venueName: string;
  address: string;
  totalCapacity: number;
}

/** Stores a new event, all its tickets left; its id. 404 for an unknown venue, 409 if the event does not fit in it. */
export async function insertEvent(db: Queryable, fields: EventFields): Promise<number> {
  await holdVenueFor(db, fields.venueId, fields.capacity);
  const { rows } = await db.query<{ event_id: number }>(
    `INSERT INTO events (name, venue_id, total_capacity, left_capacity, ticket_price, max_tickets_per_customer,
                         on_sale_starts_at, on_sale_admit_per_minute, on_sale_max_active, on_sale_pass_minutes)
     VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, $9)
     RETURNING event_id`,
    [fields.event, fields.venueId, fields.capacity, fields.ticketPrice, fields.maxTicketsPerCustomer, ...onSaleColumns(fields.onSale)],
  );
  return rows[0]!.event_id;
}

/**
 * Changes an event before its sale starts: while no booking has ever been
 * made for it and, with on-sale settings, before their start (else 409).
 * Under the event's row lock, which every booking batch takes too: a
 * booking either comes first, and this is a 409, or sees the change. A new
 * capacity moves what is left by as much. 404 for an unknown event or venue.
 */
export async function changeEvent(db: Queryable, eventId: number, change: Partial<EventFields>): Promise<void> {
  const { rows } = await db.query<OnSaleColumns & { name: string; venue_id: number; total_capacity: number; ticket_price: string; max_tickets_per_customer: number | null; on_sale_started: boolean }>(
    `SELECT name, venue_id, total_capacity, ticket_price, max_tickets_per_customer,
            on_sale_starts_at, on_sale_admit_per_minute, on_sale_max_active, on_sale_pass_minutes,
            coalesce(on_sale_starts_at <= clock_timestamp(), false) AS on_sale_started
       FROM events WHERE event_id = $1 FOR UPDATE`,
    [eventId],
  );
  const current = rows[0];
  if (!current) throw problems.notFound(`Event ${eventId} does not exist`);
  // A statement of its own, after the lock: its snapshot then holds every booking committed before it.
  const { rows: booked } = await db.query('SELECT 1 FROM bookings WHERE event_id = $1 LIMIT 1', [eventId]);
  if (booked.length > 0) throw problems.saleStarted(`Event ${eventId} has bookings: it can no longer be changed`);
  if (current.on_sale_started) throw problems.saleStarted(`The sale of event ${eventId} started at ${current.on_sale_starts_at!.toISOString()}: it can no longer be changed`);

  const next: EventFields = {
    event: current.name,
    venueId: current.venue_id,
    capacity: current.total_capacity,
    ticketPrice: current.ticket_price,
    maxTicketsPerCustomer: current.max_tickets_per_customer,
    onSale: onSaleOf(current) ?? null,
    ...change,
  };
  await holdVenueFor(db, next.venueId, next.capacity);
  await db.query(
    `UPDATE events
        SET name = $2, venue_id = $3, total_capacity = $4, left_capacity = left_capacity + $4 - total_capacity,
            ticket_price = $5, max_tickets_per_customer = $6,
            on_sale_starts_at = $7, on_sale_admit_per_minute = $8, on_sale_max_active = $9, on_sale_pass_minutes = $10
      WHERE event_id = $1`,
    [eventId, next.event, next.venueId, next.capacity, next.ticketPrice, next.maxTicketsPerCustomer, ...onSaleColumns(next.onSale)],
  );
}

/** Stores a new venue; its id. */
export async function insertVenue(db: Queryable, fields: VenueFields): Promise<number> {
  const { rows } = await db.query<{ venue_id: number }>(
    'INSERT INTO venues (name, address, total_capacity) VALUES ($1, $2, $3) RETURNING venue_id',
    [fields.venueName, fields.address, fields.totalCapacity],
  );
  return rows[0]!.venue_id;
}

/**
 * Changes a venue. Its name and address describe the place and may be put
 * right at any time; its capacity may not drop below any of its events'
 * (409). 404 for an unknown venue.
 */
export async function changeVenue(db: Queryable, venueId: number, change: Partial<VenueFields>): Promise<void> {
  const { rows } = await db.query<{ name: string; address: string; total_capacity: number }>(
    'SELECT name, address, total_capacity FROM venues WHERE venue_id = $1 FOR UPDATE',
    [venueId],
  );
  const current = rows[0];
  if (!current) throw problems.notFound(`Venue ${venueId} does not exist`);
  const next: VenueFields = { venueName: current.name, address: current.address, totalCapacity: current.total_capacity, ...change };
  if (next.totalCapacity < current.total_capacity) {
    const { rows: largest } = await db.query<{ event_id: number; total_capacity: number }>(
      'SELECT event_id, total_capacity FROM events WHERE venue_id = $1 AND total_capacity > $2 ORDER BY total_capacity DESC LIMIT 1',
      [venueId, next.totalCapacity],
    );
    const event = largest[0];
    if (event) {
      throw problems.capacityExceedsVenue(`Event ${event.event_id} at venue ${venueId} has ${event.total_capacity} tickets: the venue cannot hold fewer than that`);
    }
  }
  await db.query('UPDATE venues SET name = $2, address = $3, total_capacity = $4 WHERE venue_id = $1', [venueId, next.venueName, next.address, next.totalCapacity]);
}

/**
 * Holds venue `venueId` (FOR SHARE: no venue writer changes it until
 * commit) and checks an event of `capacity` tickets fits in it.
 */
async function holdVenueFor(db: Queryable, venueId: number, capacity: number): Promise<void> {
  const { rows } = await db.query<{ total_capacity: number }>('SELECT total_capacity FROM venues WHERE venue_id = $1 FOR SHARE', [venueId]);
  const venue = rows[0];
  if (!venue) throw problems.notFound(`Venue ${venueId} does not exist`);
  if (capacity > venue.total_capacity) {
    throw problems.capacityExceedsVenue(`An event of ${capacity} tickets does not fit in venue ${venueId}, which holds ${venue.total_capacity}`);
  }
}

function onSaleColumns(onSale: OnSale | null): [string | null, number | null, number | null, number | null] {
  return onSale ? [onSale.startsAt, onSale.admitPerMinute, onSale.maxActive, onSale.passMinutes] : [null, null, null, null];
}
