import { catalogueReads } from '../../shared/catalogue.js';
import { pool } from '../../shared/db.js';
import { httpFunction } from '../../shared/http-function.js';
import { eventPageQuerySchema } from '../../shared/schemas.js';

// Shared answers, at most CATALOGUE_MAX_AGE_MS old: a page read often costs one query per max age, not one per request.
const catalogue = catalogueReads(pool);

interface Page {
  limit: number;
  offset: number;
}

/** GET /api/v1/inventory/events: the catalogue, public, a page at a time. */
export default httpFunction<Record<string, never>, Page>({
  name: 'list-events',
  route: { method: 'GET', path: '/api/v1/inventory/events' },
  schemas: {
    query: eventPageQuerySchema,
  },
  async handle({ query }) {
    return { body: await catalogue.listEvents(query) };
  },
});
