import { catalogueReads } from '../../shared/catalogue.js';
import { pool } from '../../shared/db.js';
import { problems } from '../../shared/errors.js';
import { httpFunction } from '../../shared/http-function.js';
import { idSchema } from '../../shared/schemas.js';

// Shared answers, at most CATALOGUE_MAX_AGE_MS old: a hot event costs one query per max age, not one per request.
const catalogue = catalogueReads(pool);

/** GET /api/v1/inventory/event/{eventId}: one event with its venue and what is left. */
export default httpFunction<{ eventId: number }>({
  name: 'get-event',
  route: { method: 'GET', path: '/api/v1/inventory/event/:eventId' },
  schemas: {
    path: { type: 'object', properties: { eventId: idSchema }, required: ['eventId'], additionalProperties: false },
  },
  async handle({ params }) {
    const event = await catalogue.findEvent(params.eventId);
    if (!event) throw problems.notFound(`Event ${params.eventId} does not exist`);
    return { body: event };
  },
});
