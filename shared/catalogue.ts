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

/** Events in id order, one page at a time. */
export async function listEvents(db: Queryable, page: { limit: number; offset: number }): Promise<EventView[]> {
  const { rows } = await db.query<EventRow>(`${selectEvents} ORDER BY e.event_id LIMIT $1 OFFSET $2`, [page.limit, page.offset]);
  return rows.map(toView);
}

export async function findEvent(db: Queryable, eventId: number): Promise<EventView | undefined> {
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
