import { requireAdmin } from '../../shared/auth.js';
import { insertVenue, readVenue, type VenueFields } from '../../shared/catalogue.js';
import { transaction } from '../../shared/db.js';
import { httpFunction } from '../../shared/http-function.js';
import { venueFields } from '../../shared/schemas.js';

/** POST /api/v1/inventory/venues (admin): a new venue, answered as get-venue shows it. */
export default httpFunction<Record<string, never>, Record<string, never>, VenueFields>({
  name: 'create-venue',
  route: { method: 'POST', path: '/api/v1/inventory/venues' },
  access: 'token',
  success: 201,
  schemas: {
    body: { type: 'object', properties: venueFields, required: ['venueName', 'address', 'totalCapacity'], additionalProperties: false },
  },
  async handle({ body, principal }) {
    requireAdmin(principal);
    const venue = await transaction(async (db) => readVenue(db, await insertVenue(db, body)));
    return { headers: { Location: `/api/v1/inventory/venue/${venue!.venueId}` }, body: venue };
  },
});
