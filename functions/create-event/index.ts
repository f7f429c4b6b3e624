import { requireAdmin } from '../../shared/auth.js';
import { insertEvent, readEvent, type OnSale } from '../../shared/catalogue.js';
import { transaction } from '../../shared/db.js';
import { httpFunction } from '../../shared/http-function.js';
import { eventFields, futureInstant, priceText } from '../../shared/schemas.js';

interface EventRequest {
  event: string;
  venueId: number;
  capacity: number;
  /** A float here: only ever read through its exact text (priceText). */
  ticketPrice: number;
  maxTicketsPerCustomer?: number;
  onSale?: OnSale;
}

/**
 * POST /api/v1/inventory/events (admin): a new event at a venue it fits
 * in, all its tickets left, answered as get-event shows it.
 */
export default httpFunction<Record<string, never>, Record<string, never>, EventRequest>({
  name: 'create-event',
  route: { method: 'POST', path: '/api/v1/inventory/events' },
  access: 'token',
  success: 201,
  schemas: {
    body: { type: 'object', properties: eventFields, required: ['event', 'venueId', 'capacity', 'ticketPrice'], additionalProperties: false },
  },
  async handle({ body, bodyText, principal }) {
    requireAdmin(principal);
    const fields = {
      event: body.event,
      venueId: body.venueId,
      capacity: body.capacity,
      ticketPrice: priceText(body.ticketPrice, bodyText, 'ticketPrice'),
      maxTicketsPerCustomer: body.maxTicketsPerCustomer ?? null,
      onSale: body.onSale ? { ...body.onSale, startsAt: futureInstant(body.onSale.startsAt, 'onSale/startsAt') } : null,
    };
    const event = await transaction(async (db) => readEvent(db, await insertEvent(db, fields)));
    return { headers: { Location: `/api/v1/inventory/event/${event!.eventId}` }, body: event };
  },
});
