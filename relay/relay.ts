import { pool } from '../shared/db.js';
import { log } from '../shared/log.js';
import { outboxBacklog, outboxPublished } from '../shared/metrics.js';

/** One outbox row on its way out. */
export interface OutboxMessage {
  outboxId: string;
  topic: string;
  key: string;
  payload: string;
}

/** Where the relay sends outbox rows: Kafka, or straight to consume-order. */
export interface OutboxSink {
  readonly name: string;
  send(messages: OutboxMessage[]): Promise<void>;
  close(): Promise<void>;
}

export interface RelayOptions {
  /** How often the outbox is swept for rows nobody woke the relay for. */
  sweepMs?: number;
  /** Rows claimed and sent at once. */
  batch?: number;
  /** How long a claim keeps other relays off a row; longer than any send may take. */
  leaseMs?: number;
  /** A send that takes longer counts as failed (it may still arrive: downstream is idempotent). */
  sendTimeoutMs?: number;
}

export interface Relay {
  /** Publish what is pending now (coalesces with a run already going). */
  nudge(): void;
  /** One full pass over the outbox; resolves when it is empty or a send failed. */
  flush(): Promise<void>;
  stop(): Promise<void>;
}

// Claims unpublished rows whose lease is free, in one statement: it commits
// at once, so no row lock and no connection is held while the rows are sent.
// SKIP LOCKED lets any number of relays claim side by side.
const CLAIM = `
  UPDATE outbox SET claimed_until = now() + $2 * interval '1 millisecond'
   WHERE outbox_id IN (SELECT outbox_id FROM outbox
                        WHERE published_at IS NULL
                          AND (claimed_until IS NULL OR claimed_until < now())
                        ORDER BY outbox_id
                        LIMIT $1
                          FOR UPDATE SKIP LOCKED)
  RETURNING outbox_id AS "outboxId", topic, message_key AS key, payload::text AS payload`;
const MARK_PUBLISHED = 'UPDATE outbox SET published_at = now(), claimed_until = NULL WHERE outbox_id = ANY($1::bigint[])';
const RELEASE = 'UPDATE outbox SET claimed_until = NULL WHERE outbox_id = ANY($1::bigint[]) AND published_at IS NULL';

/**
 * The outbox relay: claims rows, sends them, marks them published. A send
 * that fails gives its rows back and the relay rests until the next sweep
 * (a nudge during an outage would only fail the same way). A relay that
 * dies mid-send leaves its rows claimed until the lease runs out; another
 * relay then sends them again, which the idempotent consumer absorbs.
 */
export function startRelay(sink: OutboxSink, options: RelayOptions = {}): Relay {
  const { sweepMs = 2_000, batch = 100, leaseMs = 15_000, sendTimeoutMs = 5_000 } = options;
  let running: Promise<void> | undefined;
  let again = false;
  let stopped = false;
  let restingUntil = 0;

  const sweep = setInterval(() => {
    restingUntil = 0;
    relay.nudge();
    measureBacklog().catch((error: unknown) => log.warn({ err: error }, 'outbox backlog not measured'));
  }, sweepMs);
  sweep.unref();

  async function publishBatch(): Promise<number> {
    const { rows } = await pool.query<OutboxMessage>(CLAIM, [batch, leaseMs]);
    if (rows.length === 0) return 0;
    const ids = rows.map((row) => row.outboxId);
    try {
      await withTimeout(sink.send(rows), sendTimeoutMs, `${sink.name} send took longer than ${sendTimeoutMs} ms`);
    } catch (error) {
      await pool.query(RELEASE, [ids]).catch(() => undefined);
      throw error;
    }
    await pool.query(MARK_PUBLISHED, [ids]);
    outboxPublished.inc(rows.length);
    return rows.length;
  }

  async function run(): Promise<void> {
    do {
      again = false;
      try {
        while ((await publishBatch()) === batch && !stopped);
      } catch (error) {
        again = false;
        restingUntil = Date.now() + sweepMs;
        log.warn({ err: error, sink: sink.name }, 'outbox publish failed; rows stay for the next sweep');
      }
    } while (again && !stopped);
  }

  const relay: Relay = {
    nudge() {
      if (stopped || Date.now() < restingUntil) return;
      if (running) {
        again = true;
        return;
      }
      running = run().finally(() => (running = undefined));
    },
    async flush() {
      await running;
      restingUntil = 0;
      relay.nudge();
      await running;
    },
    async stop() {
      stopped = true;
      clearInterval(sweep);
      await running;
      await sink.close();
    },
  };
  return relay;
}

async function measureBacklog(): Promise<void> {
  const { rows } = await pool.query<{ backlog: number }>('SELECT count(*)::int AS backlog FROM outbox WHERE published_at IS NULL');
  outboxBacklog.set(rows[0]?.backlog ?? 0);
}

function withTimeout<T>(work: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)));
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
