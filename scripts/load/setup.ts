import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { DELIVERER_ROLE } from '../../shared/auth.js';
import { migrateDatabase } from '../../shared/migrations.js';
import { DELIVERER_CLIENT_ID, serviceToken } from '../../shared/service-token.js';
import { demoUsers, signingKey, signToken, startDevIssuer } from '../dev-issuer.js';
import { dropDatabase, ensureDatabase, localPostgres } from '../local-postgres.js';

/** What every load scenario runs against; `close` drops and stops all of it. */
export interface LoadSetup {
  database: string;
  databaseUrl: string;
  /** The dev token issuer the functions trust (OIDC_ISSUER). */
  issuer: string;
  /** A bearer token of the demo user alice (customer 1). */
  authorization: string;
  /** The deliverers' bearer token (client credentials grant), as consume-order needs it. */
  delivererAuthorization: string;
  /** The settings of a deliverer process (the relay, the trigger) for this issuer. */
  delivererEnv: Record<string, string>;
  /** Connected to the server's admin database, to read pg_stat_activity of the load database. */
  admin: pg.Client;
  /** Connected to the load database, for the rows a scenario needs and its checks. */
  db: pg.Client;
  close(): Promise<void>;
}

/**
 * A database of the run's own (`boxoffice_load_<pid>`, with the demo data) on
 * DATABASE_URL's server, else the machine's or an embedded Postgres, and a
 * dev token issuer. Whatever fails on the way is stopped again.
 */
export async function openLoad(): Promise<LoadSetup> {
  const server = process.env.DATABASE_URL
    ? { adminUrl: process.env.DATABASE_URL, stop: async () => undefined }
    : await localPostgres({ dataDir: '.data/test-postgres', port: 54330, preferMachine: true });
  const database = `boxoffice_load_${process.pid}`;
  const closing: (() => Promise<unknown>)[] = [() => server.stop()];
  const close = async () => {
    for (const step of closing.reverse()) await step().catch((error: unknown) => console.error('load: cleaning up failed:', error));
  };
  try {
    const databaseUrl = await ensureDatabase(server.adminUrl, database);
    closing.push(() => dropDatabase(server.adminUrl, database));
    const key = await signingKey();
    // The deliverers' tokens outlive any run: autocannon sends one header throughout.
    const deliverer = { clientId: DELIVERER_CLIENT_ID, secret: randomBytes(16).toString('hex'), roles: [DELIVERER_ROLE], tokenLifetime: 86_400 };
    const issuer = await startDevIssuer(key, 0, { clients: [deliverer] });
    closing.push(() => issuer.stop());
    await migrateDatabase(databaseUrl, { demoData: true });
    const admin = new pg.Client({ connectionString: server.adminUrl, application_name: 'boxoffice-load' });
    const db = new pg.Client({ connectionString: databaseUrl, application_name: 'boxoffice-load' });
    closing.push(() => Promise.all([admin.end(), db.end()]));
    await Promise.all([admin.connect(), db.connect()]);
    const authorization = `Bearer ${await signToken(key, { subject: 'alice', ...demoUsers.alice!, issuer: issuer.issuer })}`;
    const delivererAuthorization = await serviceToken({ issuer: issuer.issuer, clientId: deliverer.clientId, clientSecret: deliverer.secret }).authorization();
    const delivererEnv = { DELIVERER_CLIENT_ID: deliverer.clientId, DELIVERER_CLIENT_SECRET: deliverer.secret };
    return { database, databaseUrl, issuer: issuer.issuer, authorization, delivererAuthorization, delivererEnv, admin, db, close };
  } catch (error) {
    await close();
    throw error;
  }
}
