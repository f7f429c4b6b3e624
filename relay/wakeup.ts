import pg from 'pg';
import { clientSettings } from '../shared/db.js';
import { log } from '../shared/log.js';

export interface Wakeup {
  /** True while the listener holds its connection. */
  listening(): boolean;
  stop(): Promise<void>;
}

/**
 * Calls `wake` whenever a transaction that wrote to the outbox commits
 * (LISTEN outbox; the table's trigger notifies), and once after every
 * (re)connection, to catch up on what was committed meanwhile. The
 * connection is its own, outside the pool; when it is lost it is made
 * again with backoff, and the relay's sweep covers the gap.
 */
export function listenForOutbox(wake: () => void): Wakeup {
  let client: pg.Client | undefined;
  let stopped = false;
  let retryMs = 500;
  let timer: NodeJS.Timeout | undefined;

  async function connect(): Promise<void> {
    const next = new pg.Client(clientSettings(undefined, { application_name: 'boxoffice-relay-listener' }));
    next.on('error', (error) => log.warn({ err: error }, 'outbox listener connection failed'));
    next.on('end', () => {
      if (client === next) client = undefined;
      retryLater();
    });
    next.on('notification', () => wake());
    try {
      await next.connect();
      await next.query('LISTEN outbox');
    } catch (error) {
      log.warn({ err: error }, 'outbox listener cannot connect yet');
      await next.end().catch(() => undefined);
      retryLater();
      return;
    }
    if (stopped) return void (await next.end().catch(() => undefined));
    client = next;
    retryMs = 500;
    wake();
  }

  function retryLater(): void {
    if (stopped || timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      void connect();
    }, retryMs);
    retryMs = Math.min(retryMs * 2, 10_000);
  }

  void connect();
  return {
    listening: () => client !== undefined,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await client?.end().catch(() => undefined);
    },
  };
}
