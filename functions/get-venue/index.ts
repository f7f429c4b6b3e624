import { pool } from '../../shared/db.js';
import { problems } from '../../shared/errors.js';
import { httpFunction } from '../../shared/http-function.js';
import { idSchema } from '../../shared/schemas.js';

interface VenueRow {
  venue_id: number;
  name: string;
  address: string;
  total_capacity: number;
}

/** GET /api/v1/inventory/venue/{venueId}: a venue, in the original service's shape. */
export default httpFunction<{ venueId: number }>({
  name: 'get-venue',
  route: { method: 'GET', path: '/api/v1/inventory/venue/:venueId' },
  schemas: {
    path: { type: 'object', properties: { venueId: idSchema }, required: ['venueId'], additionalProperties: false },
  },
  async handle({ params }) {
    const { rows } = await pool.query<VenueRow>(
      'SELECT venue_id, name, address, total_capacity FROM venues WHERE venue_id = $1',
      [params.venueId],
    );
    const venue = rows[0];
    if (!venue) throw problems.notFound(`Venue ${params.venueId} does not exist`);
    return { body: { venueId: venue.venue_id, venueName: venue.name, totalCapacity: venue.total_capacity, address: venue.address } };
  },
});
