import { Agent, createServer, request, type ClientRequestArgs, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Socket, type NetConnectOpts } from 'node:net';
import { pipeline } from 'node:stream';
import { problems, sendProblem } from '../shared/errors.js';
import { matchPath, type Route } from '../shared/route.js';
import { acceptRequestId } from '../shared/request-id.js';

/** Where the gateway sends a public route: a function's base URL. */
export interface Upstream {
  route: Route;
  target: string;
}


/**
 * The local stand-in for the edge proxy: it maps the public `/api/v1`
 * paths onto the function that serves each and streams the exchange through
 * unchanged, and serves the OpenAPI document at /openapi.json. Routes are
 * matched by path and method, so functions may share a path; a method no
 * function of that path serves is a 405 naming those that do.
 * Every answer carries an X-Request-Id, the caller's if sensible, which the function is given too.
 * In the compose stack nginx plays this part (deploy/nginx/boxoffice.conf), in
 * OpenFaaS an nginx edge of the same generated routes (deploy/nginx/openfaas.conf).
 */
export function createGateway(upstreams: Upstream[], openapi: object = {}): Server {
  const document = JSON.stringify(openapi);
  const agent = new UpstreamAgent({ keepAlive: true });
  const server = createServer((req, res) => {
    const requestId = acceptRequestId(req.headers['x-request-id']);
    req.headers['x-request-id'] = requestId;
    res.setHeader('X-Request-Id', requestId);
    const target = req.url ?? '';
    // Only an origin-form target (`/path`) names a path of ours; `*` and absolute-form (`http://host/path`) are not routed.
    if (!target.startsWith('/')) return void sendProblem(res, problems.routeNotFound(target));
    const path = target.split('?')[0] as string;
    if (path === '/_/health' || path === '/openapi.json') {
      res.setHeader('Content-Type', 'application/json');
      return void res.end(path === '/openapi.json' ? document : '{"status":"ok"}');
    }
    const onPath = upstreams.filter((u) => matchesPath(u.route.path, path));
    if (onPath.length === 0) return void sendProblem(res, problems.routeNotFound(path));
    // Functions may share a path (GET and PATCH of an event): the method picks one; HEAD is GET's.
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    const upstream = onPath.find((u) => u.route.method === method);
    if (!upstream) return void sendProblem(res, problems.methodNotAllowed(req.method ?? '', allowedOn(onPath)));
    forward(req, res, upstream, agent);
  });
  server.on('close', () => agent.destroy());
  return server;
}

/**
 * Streams the request to the function and its answer back. A function may
 * answer before it has read the whole body (413) and close: that answer,
 * `Connection: close` included, is the caller's, and the rest of the body
 * is dropped (see AnswerKeepingSocket).
 */
function forward(req: IncomingMessage, res: ServerResponse, upstream: Upstream, agent: Agent): void {
  const outgoing = request(upstream.target, {
    agent,
    path: req.url,
    method: req.method,
    headers: { ...req.headers, 'x-forwarded-host': req.headers.host ?? '' },
  });
  outgoing.on('response', (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    // An answer cut short upstream is cut short to the caller: nothing to add.
    pipeline(answer, res, () => undefined);
  });
  // Once an answer has begun, sendProblem writes nothing: the pipeline ends or cuts that answer.
  outgoing.on('error', () => sendProblem(res, problems.upstreamUnavailable(`${upstream.route.path} is not answering`)));
  res.on('close', () => {
    if (!res.writableFinished) outgoing.destroy();
  });
  req.pipe(outgoing);
}

/**
 * A function that refuses a body answers and closes while the body is
 * still coming; its kernel then resets the connection, and the next write
 * fails (EPIPE, ECONNRESET) before the answer, already received, is read.
 * Node's HTTP client would drop the connection on that write error and the
 * answer with it. These sockets drop the rest of the body instead and keep
 * reading, so the answer, or the end of the connection, decides.
 */
class AnswerKeepingSocket extends Socket {
  override _write(chunk: unknown, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    super._write(chunk, encoding, (error) => callback(peerStoppedReading(error) ? null : error));
  }

  override _writev(chunks: Array<{ chunk: unknown; encoding: BufferEncoding }>, callback: (error?: Error | null) => void): void {
    super._writev!(chunks, (error) => callback(peerStoppedReading(error) ? null : error));
  }
}

function peerStoppedReading(error: Error | null | undefined): boolean {
  const code = (error as NodeJS.ErrnoException | null | undefined)?.code;
  return code === 'EPIPE' || code === 'ECONNRESET';
}

class UpstreamAgent extends Agent {
  override createConnection(options: ClientRequestArgs): Socket {
    return new AnswerKeepingSocket().connect(options as NetConnectOpts);
  }
}


/** The methods the functions of one path answer, as an Allow header lists them. */
function allowedOn(upstreams: Upstream[]): string[] {
  const methods = upstreams.map((u) => u.route.method);
  return methods.includes('GET') ? [...methods, 'HEAD'] : methods;
}

function matchesPath(pattern: string, path: string): boolean {
  try {
    return matchPath(pattern, path) !== undefined;
  } catch {
    // An undecodable path is still this route's; the function says why it is bad.
    return true;
  }
}
