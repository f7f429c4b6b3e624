import { requireAdmin } from '../../shared/auth.js';
import { changeEvent, readEvent, type EventFields, type OnSale } from '../../shared/catalogue.js';
import { transaction } from '../../shared/db.js';
import { httpFunction } from '../../shared/http-function.js';
import { eventFields, futureInstant, idSchema, onSaleSchema, priceText } from '../../shared/schemas.js';

interface EventChange {
  event?: string;
  venueId?: number;
  capacity?: number;
  /** A float here: only ever read through its exact text (priceText). */
  ticketPrice?: number;
  maxTicketsPerCustomer?: number | null;
  onSale?: OnSale | null;
}

/**
 * PATCH /api/v1/inventory/event/{eventId} (admin): changes the fields
 * given (null removes the limit or the on-sale settings) before the sale
 * starts, that is while no booking has ever been made for the event and,
 * with on-sale settings, before they start; 409 after. Answers the event as
 * get-event shows it.
 */
export default httpFunction<{ eventId: number }, Record<string, never>, EventChange>({
  name: 'update-event',
  route: { method: 'PATCH', path: '/api/v1/inventory/event/:eventId' },
  access: 'token',
  schemas: {
    path: { type: 'object', properties: { eventId: idSchema }, required: ['eventId'], additionalProperties: false },
    body: {
      type: 'object',
      properties: {
        ...eventFields,
        maxTicketsPerCustomer: { ...eventFields.maxTicketsPerCustomer, type: ['integer', 'null'], description: 'Most tickets one customer may hold for the event; null: no limit' },
        onSale: { ...onSaleSchema, type: ['object', 'null'], description: 'null: no waiting room' },
      },
      minProperties: 1,
      additionalProperties: false,
    },
  },
  async handle({ params, body, bodyText, principal }) {
    requireAdmin(principal);
    const { ticketPrice, onSale, ...rest } = body;
    const change: Partial<EventFields> = {
      ...rest,
      ...(ticketPrice === undefined ? {} : { ticketPrice: priceText(ticketPrice, bodyText, 'ticketPrice') }),
      ...(onSale === undefined ? {} : { onSale: onSale && { ...onSale, startsAt: futureInstant(onSale.startsAt, 'onSale/startsAt') } }),
    };
    const event = await transaction(async (db) => {
      await changeEvent(db, params.eventId, change);
      return readEvent(db, params.eventId);
    });
    return { body: event };
  },
});
