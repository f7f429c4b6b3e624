import { pool } from '../../shared/db.js';
import { httpFunction } from '../../shared/http-function.js';
import { idSchema } from '../../shared/schemas.js';
import { customerFor, placeInLine, whyNoPlace } from '../../shared/waiting-room.js';

/**
 * GET /api/v1/queue/{eventId}: where the customer stands in the event's
 * waiting room: WAITING with their position (null until the start draws
 * the line) and an estimated wait, or ADMITTED with the pass to book with
 * while their turn lasts (passExpiresAt), or why it ended (turnEnded).
 */
export default httpFunction<{ eventId: number }, { userId?: number }>({
  name: 'queue-position',
  route: { method: 'GET', path: '/api/v1/queue/:eventId' },
  access: 'token',
  schemas: {
    path: { type: 'object', properties: { eventId: idSchema }, required: ['eventId'], additionalProperties: false },
    query: { type: 'object', properties: { userId: { ...idSchema, description: 'The customer to look up (an admin); the token\'s customer by default' } }, additionalProperties: false },
  },
  async handle({ params: { eventId }, query, principal }) {
    const customerId = customerFor(principal, query.userId);
    const place = await placeInLine(pool, eventId, customerId);
    if (!place) throw await whyNoPlace(pool, eventId, customerId);
    return { body: place };
  },
});
