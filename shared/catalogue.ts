import type { Queryable } from './db.js';
import { Decimal } from './json.js';

/** An event as the original inventory service answered it; `capacity` is what is left. */
export interface EventView {
  eventId: number;
  event: string;
  capacity: number;
  ticketPrice: Decimal;
  venue: { id: number; name: string; address: string; totalCapacity: number };
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
    findEvent: (eventId) => events.get(eventId, () => findEvent(db, eventId)),
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

interface EventRow {
  event_id: number;
  name: string;
  left_capacity: number;
  ticket_price: string;
  venue_id: number;
  venue_name: string;
  venue_address: string;
  venue_total_capacity: number;
}

const selectEvents = `
  SELECT e.event_id, e.name, e.left_capacity, e.ticket_price,
         v.venue_id, v.name AS venue_name, v.address AS venue_address, v.total_capacity AS venue_total_capacity
    FROM events e
    JOIN venues v USING (venue_id)`;

async function listEvents(db: Queryable, page: { limit: number; offset: number }): Promise<EventView[]> {
  const { rows } = await db.query<EventRow>(`${selectEvents} ORDER BY e.event_id LIMIT $1 OFFSET $2`, [page.limit, page.offset]);
  return rows.map(toView);
}

async function findEvent(db: Queryable, eventId: number): Promise<EventView | undefined> {
  const { rows } = await db.query<EventRow>(`${selectEvents} WHERE e.event_id = $1`, [eventId]);
  return rows[0] && toView(rows[0]);
}

function toView(row: EventRow): EventView {
  return {
    eventId: row.event_id,
    event: row.name,
    capacity: row.left_capacity,
    ticketPrice: new Decimal(row.ticket_price),
    venue: { id: row.venue_id, name: row.venue_name, address: row.venue_address, totalCapacity: row.venue_total_capacity },
  };
}
