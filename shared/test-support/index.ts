import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { pool } from '../db.js';
import { createFunctionHost } from '../host.js';
import type { FunctionDefinition } from '../http-function.js';

export interface RunningFunction {
  url: string;
  stop(): Promise<void>;
}

/** Serves a function exactly as its container does, on a free loopback port. */
export async function serve(definition: FunctionDefinition): Promise<RunningFunction> {
  const host = createFunctionHost(definition);
  host.server.listen(0, '127.0.0.1');
  await once(host.server, 'listening');
  const { port } = host.server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, stop: () => host.drain() };
}

let unique = 0;
/** A name no other test uses, so tests never see each other's rows. */
export function uniqueName(prefix: string): string {
  unique += 1;
  return `${prefix} ${process.pid}-${Date.now()}-${unique}`;
}

export async function createVenue(fields: { totalCapacity?: number } = {}): Promise<{ venueId: number; name: string }> {
  const name = uniqueName('Venue');
  const { rows } = await pool.query<{ venue_id: number }>(
    'INSERT INTO venues (name, address, total_capacity) VALUES ($1, $2, $3) RETURNING venue_id',
    [name, '1 Test Street', fields.totalCapacity ?? 1000],
  );
  return { venueId: rows[0]!.venue_id, name };
}

export async function createEvent(fields: { capacity?: number; ticketPrice?: string; venueId?: number } = {}): Promise<{ eventId: number; venueId: number; name: string }> {
  const venueId = fields.venueId ?? (await createVenue()).venueId;
  const name = uniqueName('Event');
  const capacity = fields.capacity ?? 100;
  const { rows } = await pool.query<{ event_id: number }>(
    `INSERT INTO events (name, venue_id, total_capacity, left_capacity, ticket_price)
     VALUES ($1, $2, $3, $3, $4) RETURNING event_id`,
    [name, venueId, capacity, fields.ticketPrice ?? '10.00'],
  );
  return { eventId: rows[0]!.event_id, venueId, name };
}
