import { pool } from '../../shared/db.js';
import { httpFunction } from '../../shared/http-function.js';
import { idSchema } from '../../shared/schemas.js';
import { customerFor, joinLine, placeInLine, whyNoPlace } from '../../shared/waiting-room.js';

/**
 * POST /api/v1/queue/{eventId}: the customer joins the event's waiting room
 * (their token's, or `userId` for an admin) and is told where they are,
 * as queue-position tells it. Before the start they get a random place
 * among everyone who came before it; after it, the back of the line.
 * Joining again changes nothing and answers the same place (200, not 201).
 */
export default httpFunction<{ eventId: number }, { userId?: number }>({
  name: 'join-queue',
  route: { method: 'POST', path: '/api/v1/queue/:eventId' },
  access: 'token',
  success: 201,
  schemas: {
    path: { type: 'object', properties: { eventId: idSchema }, required: ['eventId'], additionalProperties: false },
    query: { type: 'object', properties: { userId: { ...idSchema, description: 'The customer to join for (an admin); the token\'s customer by default' } }, additionalProperties: false },
  },
  async handle({ params: { eventId }, query, principal }) {
    const customerId = customerFor(principal, query.userId);
    const joined = await joinLine(pool, eventId, customerId);
    const place = await placeInLine(pool, eventId, customerId);
    if (!place) throw await whyNoPlace(pool, eventId, customerId);
    return { status: joined ? 201 : 200, headers: { Location: `/api/v1/queue/${eventId}` }, body: place };
  },
});
