import { createServer, request, type Server } from 'node:http';
import { problems, sendProblem } from '../shared/errors.js';
import { matchPath, type Route } from '../shared/route.js';

/** Where the gateway sends a public route: a function's base URL. */
export interface Upstream {
  route: Route;
  target: string;
}

/**
 * The local stand-in for the edge proxy: it maps the public `/api/v1`
 * paths onto the function that serves each and streams the exchange through
 * unchanged, and serves the OpenAPI document at /openapi.json. The function, not the gateway, answers a wrong method (405).
 * In the compose stack nginx plays this part, in OpenFaaS its gateway does.
 */
export function createGateway(upstreams: Upstream[], openapi: object = {}): Server {
  const document = JSON.stringify(openapi);
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path === '/_/health' || path === '/openapi.json') {
      res.setHeader('Content-Type', 'application/json');
      return void res.end(path === '/openapi.json' ? document : '{"status":"ok"}');
    }
    const upstream = upstreams.find((u) => matchesPath(u.route.path, path));
    if (!upstream) return void sendProblem(res, problems.routeNotFound(path));

    const outgoing = request(
      new URL(req.url ?? '/', upstream.target),
      { method: req.method, headers: { ...req.headers, 'x-forwarded-host': req.headers.host ?? '' } },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    outgoing.on('error', () => sendProblem(res, problems.upstreamUnavailable(`${upstream.route.path} is not answering`)));
    req.pipe(outgoing);
  });
}

function matchesPath(pattern: string, path: string): boolean {
  try {
    return matchPath(pattern, path) !== undefined;
  } catch {
    // An undecodable path is still this route's; the function says why it is bad.
    return true;
  }
}
