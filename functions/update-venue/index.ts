import { requireAdmin } from '../../shared/auth.js';
import { changeVenue, readVenue, type VenueFields } from '../../shared/catalogue.js';
import { transaction } from '../../shared/db.js';
import { httpFunction } from '../../shared/http-function.js';
import { idSchema, venueFields } from '../../shared/schemas.js';

/**
 * PATCH /api/v1/inventory/venue/{venueId} (admin): changes the fields
 * given. Name and address may be put right at any time; the capacity may
 * not drop below any of the venue's events' (409). Answers the venue as
 * get-venue shows it.
 */
export default httpFunction<{ venueId: number }, Record<string, never>, Partial<VenueFields>>({
  name: 'update-venue',
  route: { method: 'PATCH', path: '/api/v1/inventory/venue/:venueId' },
  access: 'token',
  schemas: {
    path: { type: 'object', properties: { venueId: idSchema }, required: ['venueId'], additionalProperties: false },
    body: { type: 'object', properties: venueFields, minProperties: 1, additionalProperties: false },
  },
  async handle({ params, body, principal }) {
    requireAdmin(principal);
    const venue = await transaction(async (db) => {
      await changeVenue(db, params.venueId, body);
      return readVenue(db, params.venueId);
    });
    return { body: venue };
  },
});
