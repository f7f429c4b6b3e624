import { requireAdmin } from '../../shared/auth.js';
import { pool } from '../../shared/db.js';
import { httpFunction } from '../../shared/http-function.js';
import { eventPageQuerySchema } from '../../shared/schemas.js';

interface Page {
  limit: number;
  offset: number;
}

interface SummaryRow {
  event_id: number;
  name: string;
  total_capacity: number;
  left_capacity: number;
  sold: number;
  pending: number;
  starts_at: Date | null;
  admit_per_minute: number | null;
  max_active: number | null;
  waiting: number | null;
  active: number | null;
  admitted: number | null;
}

// Sold and pending are the tickets of CONFIRMED and PENDING bookings (a
// FAILED or CANCELLED one holds none); left is what can still be sold. The
// waiting-room figures are read only for events sold through one: a pass is
// active as the admitter counts it (admitted, unused, not yet expired).
const summarySql = `
  SELECT e.event_id, e.name, e.total_capacity, e.left_capacity,
         b.sold, b.pending,
         e.on_sale_starts_at AS starts_at, e.on_sale_admit_per_minute AS admit_per_minute, e.on_sale_max_active AS max_active,
         q.waiting, q.active, q.admitted
    FROM events e
    CROSS JOIN LATERAL (
      SELECT coalesce(sum(ticket_count) FILTER (WHERE status = 'CONFIRMED'), 0)::int AS sold,
             coalesce(sum(ticket_count) FILTER (WHERE status = 'PENDING'), 0)::int AS pending
        FROM bookings WHERE event_id = e.event_id
    ) b
    LEFT JOIN LATERAL (
      SELECT count(*) FILTER (WHERE admitted_at IS NULL)::int AS waiting,
             count(*) FILTER (WHERE admitted_at IS NOT NULL AND used_at IS NULL AND NOT expiry_counted AND expires_at > now())::int AS active,
             count(*) FILTER (WHERE admitted_at IS NOT NULL)::int AS admitted
        FROM queue_entries WHERE event_id = e.event_id
    ) q ON e.on_sale_starts_at IS NOT NULL
   ORDER BY e.event_id
   LIMIT $1 OFFSET $2`;

/** GET /api/v1/admin/events (admin): each event's tickets sold, pending and left, and its waiting room's state, a page at a time. */
export default httpFunction<Record<string, never>, Page>({
  name: 'event-summary',
  route: { method: 'GET', path: '/api/v1/admin/events' },
  access: 'token',
  schemas: {
    query: eventPageQuerySchema,
  },
  async handle({ query, principal }) {
    requireAdmin(principal);
    const { rows } = await pool.query<SummaryRow>(summarySql, [query.limit, query.offset]);
    return {
      body: rows.map((row) => ({
        eventId: row.event_id,
        event: row.name,
        capacity: row.total_capacity,
        sold: row.sold,
        pending: row.pending,
        left: row.left_capacity,
        ...(row.starts_at && {
          waitingRoom: {
            startsAt: row.starts_at.toISOString(),
            admitPerMinute: row.admit_per_minute,
            maxActive: row.max_active,
            waiting: row.waiting,
            activePasses: row.active,
            admitted: row.admitted,
          },
        }),
      })),
    };
  },
});
