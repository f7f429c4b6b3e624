import { createServer, type Server, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import { config } from './config.js';
import { problems, sendProblem } from './errors.js';
import { registry } from './metrics.js';

/** Why the process cannot take work now, or undefined when it can. */
export type NotReady = () => Promise<string | undefined>;

/**
 * Answers the probes every process serves: liveness at `/_/health`,
 * readiness at `/_/ready` (503 with the reason `notReady` gives, while it
 * gives one) and `/metrics`. False for any other path, left to the caller.
 */
export function answerProbe(path: string, res: ServerResponse, notReady: NotReady): boolean {
  if (path === '/_/health') {
    json(res, { status: 'ok' });
  } else if (path === '/_/ready') {
    void notReady().then(
      (reason) => (reason ? sendProblem(res, problems.notReady(reason)) : json(res, { status: 'ready' })),
      (error: unknown) => sendProblem(res, problems.notReady((error as Error).message)),
    );
  } else if (path === '/metrics') {
    void registry.metrics().then((text) => {
      res.setHeader('Content-Type', registry.contentType);
      res.end(text);
    });
  } else {
    return false;
  }
  return true;
}

/** The HTTP face of a long-running worker (the relay, the trigger): its probes on `port`, nothing else. */
export async function serveProbes(port: number, notReady: NotReady, host?: string): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (!answerProbe(path, res, notReady)) sendProblem(res, problems.routeNotFound(path));
  });
  server.listen(port, host ?? config.host);
  await once(server, 'listening');
  return server;
}

function json(res: ServerResponse, body: unknown): void {
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify(body));
}
