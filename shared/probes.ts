import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { problems, sendProblem } from './errors.js';
import { registry } from './metrics.js';

/**
 * The HTTP face of a long-running worker (the relay, the trigger): liveness
 * at `/_/health`, readiness at `/_/ready` (503 with the reason `notReady`
 * gives, while it gives one), and `/metrics`. Listens on `port`.
 */
export async function serveProbes(port: number, notReady: () => Promise<string | undefined>, host?: string): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      void registry.metrics().then((text) => {
        res.setHeader('Content-Type', registry.contentType);
        res.end(text);
      });
      return;
    }
    if (path === '/_/health') return void json(res, { status: 'ok' });
    if (path === '/_/ready') {
      void notReady().then(
        (reason) => (reason ? sendProblem(res, problems.notReady(reason)) : json(res, { status: 'ready' })),
        (error: unknown) => sendProblem(res, problems.notReady((error as Error).message)),
      );
      return;
    }
    sendProblem(res, problems.routeNotFound(path ?? '/'));
  });
  server.listen(port, host);
  await once(server, 'listening');
  return server;
}

function json(res: import('node:http').ServerResponse, body: unknown): void {
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify(body));
}
