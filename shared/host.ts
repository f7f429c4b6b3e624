import type { getTestServer } from '@google-cloud/functions-framework/testing';
import { randomUUID } from 'node:crypto';
import { STATUS_CODES, createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import type { Duplex } from 'node:stream';
import { parse as parseQuery } from 'node:querystring';
import { ConfigError, config } from './config.js';
import { databaseIsUp, pool } from './db.js';
import { problemText, problems, sendProblem, type Problem } from './errors.js';
import { callHandler, isJson, routeLabel, type CallHandler, type FunctionDefinition } from './http-function.js';
import { flushLog, log } from './log.js';
import { httpDuration, httpRequests, inflightShed, labelRegistry } from './metrics.js';
import { answerProbe } from './probes.js';
import { acceptRequestId } from './request-id.js';


/** The host's limits; each defaults to its setting in config. */
export interface Limits {
  maxInflight: number;
  bodyLimitBytes: number;
  drainTimeoutMs: number;
  requestHeadersTimeoutMs: number;
  requestTimeoutMs: number;
}

/**
 * What serves a function's requests once the host has checked them. `lean`:
 * the function's own handler, called straight from node:http.
 * `framework`: the functions-framework's Express app, unmodified, exactly as
 * its own server would run the function.
 */
export type FunctionServer = 'lean' | 'framework';

/** The server chosen by FUNCTION_SERVER, `lean` unless set. */
export function functionServerSetting(): FunctionServer {
  const value = process.env.FUNCTION_SERVER || 'lean';
  if (value !== 'lean' && value !== 'framework') throw new ConfigError(`FUNCTION_SERVER must be lean or framework, got "${value}"`);
  return value;
}

export interface HostOptions extends Limits {
  server: FunctionServer;
}

export interface FunctionHost {
  server: Server;
  /** What serves the function: the one chosen. */
  serving: FunctionServer;
  /** Stops taking requests and waits (bounded) for those in flight. */
  drain(): Promise<void>;
}

// Paths browsers and crawlers ask any server for. No function serves them,
// and the framework's app would answer them (in any case, and any path
// below them) with an empty 404.
const NOT_SERVED = ['/favicon.ico', '/robots.txt'];

function notServed(path: string): boolean {
  const lower = path.toLowerCase();
  return NOT_SERVED.some((served) => lower === served || lower.startsWith(`${served}/`));
}

/**
 * Puts a registered functions-framework function behind the things the
 * framework does not give: probes at `/_/health` and `/_/ready`, `/metrics`,
 * a small body limit enforced before any parsing, deadlines for a request to
 * arrive, load shedding, a request id and one log line per request, and a
 * drain on shutdown. The framework itself answers SIGTERM by exiting at
 * once, so its server, when used, is built here from its testing entry and
 * never through its own CLI.
 */
export function createFunctionHost(definition: FunctionDefinition, options: Partial<HostOptions> = {}): FunctionHost {
  const { maxInflight, bodyLimitBytes, drainTimeoutMs, requestHeadersTimeoutMs, requestTimeoutMs, server: chosen } = {
    ...config,
    server: functionServerSetting(),
    ...options,
  };
  labelRegistry(definition.name);
  log.setBindings({ function: definition.name });
  const { serving, pass } = passOn(definition.name, chosen);
  // Only work holds one of the maxInflight slots: a request still arriving
  // holds none however slow it is, and its deadline bounds it instead. A
  // drain waits for every request taken, arriving or working.
  let working = 0;
  let open = 0;
  let draining = false;
  let idle: (() => void) | undefined;
  // The answer to each socket's request while its body is still arriving, so
  // that a client error on that socket (too slow, malformed) belongs to it.
  const receiving = new WeakMap<Duplex, ServerResponse>();

  // Node's own deadlines, counted from a request's first byte: headersTimeout
  // and requestTimeout (the whole request, body included), checked every
  // connectionsCheckingInterval; each ends in a client error answered below.
  const server = createServer(
    {
      headersTimeout: requestHeadersTimeoutMs,
      requestTimeout: requestTimeoutMs,
      connectionsCheckingInterval: Math.min(1_000, requestHeadersTimeoutMs),
    },
    (req, res) => {
      if (hasBody(req)) {
        receiving.set(req.socket, res);
        req.once('end', () => receiving.delete(req.socket));
      }
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      if (answerProbe(path, res, notReady)) return;

      const started = process.hrtime.bigint();
      const method = req.method ?? '';
      const requestId = acceptRequestId(req.headers['x-request-id']);
      req.headers['x-request-id'] = requestId;
      res.setHeader('X-Request-Id', requestId);
      res.once('finish', () => observe(method, res, path, requestId, started));

      if (draining) return void sendProblem(res, problems.notReady('shutting down'));
      // The framework's router answers an undecodable path with an HTML 400.
      if (!decodable(path)) return void sendProblem(res, problems.validation([{ name: 'path', reason: 'is not valid percent-encoding' }]));
      if (notServed(path)) return void sendProblem(res, problems.routeNotFound(path));

      open += 1;
      res.once('close', () => {
        open -= 1;
        if (open === 0) idle?.();
      });
      readBody(req, bodyLimitBytes)
        .then((raw) => {
          if (working >= maxInflight) {
            inflightShed.inc();
            throw problems.overloaded(1);
          }
          working += 1;
          res.once('close', () => (working -= 1));
          // HEAD is GET without a body; Node leaves out the body of a HEAD answer itself.
          if (method === 'HEAD' && definition.route?.method === 'GET') {
            req.method = 'GET';
            lengthOfUnsentBody(res);
          }
          return pass(req, res, path, parseBody(req, raw));
        })
        .catch((error: unknown) => {
          // The rest of a body refused unread (too large, wrongly encoded) is not worth reading.
          if (!req.complete && !res.headersSent) res.setHeader('Connection', 'close');
          sendProblem(res, error);
        });
    },
  );

  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    const res = receiving.get(socket);
    // A client gone, or one answered already (its body refused unread), gets nothing more.
    if (!socket.writable || res?.headersSent) return void socket.destroy();
    const problem = clientProblem(error, requestTimeoutMs);
    if (res) return void sendProblem(res, problem);
    // The request never arrived whole enough to become one, so there is no response to answer with.
    const requestId = randomUUID();
    log.info({ requestId, status: problem.status, err: error.code }, 'request not received');
    socket.end(rawProblem(problem, requestId), () => socket.destroy());
  });

  async function notReady(): Promise<string | undefined> {
    if (draining) return 'shutting down';
    return (await databaseIsUp()) ? undefined : 'database unreachable';
  }

  async function drain(): Promise<void> {
    draining = true;
    const closed = once(server, 'close');
    server.close();
    server.closeIdleConnections();
    if (open > 0) {
      await Promise.race([
        new Promise<void>((resolve) => (idle = resolve)),
        new Promise((resolve) => setTimeout(resolve, drainTimeoutMs).unref()),
      ]);
    }
    server.closeAllConnections();
    await closed;
  }

  return { server, serving, drain };
}

/**
 * Listens on `port`, and on SIGTERM or SIGINT drains requests, then exits.
 */
export async function serveFunction(definition: FunctionDefinition, port: number): Promise<FunctionHost> {
  const host = createFunctionHost(definition);
  host.server.listen(port, config.host);
  await once(host.server, 'listening');
  log.info({ port, route: definition.route, server: host.serving }, `${definition.name} listening`);
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      log.info({ signal }, 'draining');
      host
        .drain()
        .then(() => pool.end())
        .then(
          () => 0,
          (error: unknown) => {
            log.error({ err: error }, 'drain failed');
            return 1;
          },
        )
        // Logging is asynchronous: the last lines are written before exiting.
        .then((code) => flushLog().then(() => process.exit(code)));
    });
  }
  return host;
}

type Pass = (req: IncomingMessage, res: ServerResponse, path: string, body: unknown) => unknown;

/** How a checked request, its body read, reaches the function under the chosen server. */
function passOn(name: string, server: FunctionServer): { serving: FunctionServer; pass: Pass } {
  const direct: CallHandler | undefined = server === 'lean' ? callHandler(name) : undefined;
  if (direct) {
    const pass: Pass = (req, res, path, body) => {
      const at = (req.url ?? '').indexOf('?');
      // The same parser as Express' default (`query parser: simple`), so both servers see one query.
      const query = at < 0 ? {} : parseQuery((req.url ?? '').slice(at + 1));
      const { rawBody } = req as IncomingMessage & { rawBody?: Buffer };
      return direct({ method: req.method ?? 'GET', path, query, headers: req.headers, body, rawBody }, res);
    };
    return { serving: 'lean', pass };
  }
  const framework = frameworkApp(name);
  const pass: Pass = (req, res, _path, body) => {
    // The body is read already, so the framework's own parsers (1 GB limit) skip it.
    if (body !== undefined) Object.assign(req, { body });
    return framework(req, res);
  };
  return { serving: 'framework', pass };
}

const require = createRequire(import.meta.url);

/**
 * The framework's Express app for a registered function. Loaded only when
 * it serves: it brings Express and node:domain, whose async hooks and
 * event-emitter wrapper tax every request of a process that loads them.
 */
function frameworkApp(name: string): RequestListener {
  const testing = require('@google-cloud/functions-framework/testing') as { getTestServer: typeof getTestServer };
  return testing.getTestServer(name).listeners('request')[0] as RequestListener;
}

function decodable(path: string): boolean {
  try {
    decodeURIComponent(path);
    return true;
  } catch {
    return false;
  }
}


// The metric series of each method, route and status, looked up once
// rather than by hashing the labels on every request.
const series = new Map<string, { count: { inc(): void }; time: { observe(seconds: number): void } }>();

function seriesOf(labels: { method: string; route: string; status: string }) {
  const key = `${labels.method} ${labels.route} ${labels.status}`;
  let found = series.get(key);
  if (!found) series.set(key, (found = { count: httpRequests.labels(labels), time: httpDuration.labels(labels) }));
  return found;
}

function observe(method: string, res: ServerResponse, path: string, requestId: string, started: bigint): void {
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const labels = { method, route: routeLabel(res), status: String(res.statusCode) };
  const { count, time } = seriesOf(labels);
  count.inc();
  time.observe(seconds);
  log.info({ requestId, method, path, route: labels.route, status: res.statusCode, ms: Math.round(seconds * 1e4) / 10 }, 'request');
}

/** What a client error Node raises before or while a request arrives is. */
function clientProblem(error: NodeJS.ErrnoException, requestTimeoutMs: number): Problem {
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') return problems.requestTimeout(requestTimeoutMs);
  if (error.code === 'HPE_HEADER_OVERFLOW') return problems.headersTooLarge();
  return problems.malformedRequest(error.code === undefined ? 'The request could not be read' : `The request could not be read (${error.code})`);
}

/** A problem answer written straight to a socket, for a request Node never handed over. */
function rawProblem(problem: Problem, requestId: string): string {
  const body = problemText(problem);
  const headers = {
    ...problem.extra.headers,
    'Content-Type': 'application/problem+json',
    'Content-Length': String(Buffer.byteLength(body)),
    'X-Request-Id': requestId,
  };
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`);
  return `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status] ?? ''}\r\n${lines.join('')}\r\n${body}`;
}

/**
 * A HEAD answer carries the Content-Length its GET would (RFC 9110, 9.3.2);
 * Node drops the body of a HEAD answer without counting it.
 */
function lengthOfUnsentBody(res: ServerResponse): void {
  const end = res.end;
  res.end = function (this: ServerResponse, ...args: Parameters<typeof end>) {
    const [body] = args;
    if (!this.headersSent && !this.hasHeader('content-length') && (typeof body === 'string' || body instanceof Uint8Array)) {
      this.setHeader('Content-Length', Buffer.byteLength(body));
    }
    return end.apply(this, args);
  } as typeof end;
}

/** HTTP/1.1: without either header there is no body, and nothing to wait for. */
function hasBody(req: IncomingMessage): boolean {
  return req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
}

/**
 * Reads the body's bytes up to the limit, undefined when there are none.
 * The host decodes no content coding, and JSON only as UTF-8 (RFC 8259):
 * anything else is refused before a byte is read.
 */
async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  if (!hasBody(req)) return undefined;
  const coding = (req.headers['content-encoding'] ?? '').trim();
  if (coding !== '' && coding.toLowerCase() !== 'identity') throw problems.unsupportedContentEncoding(coding);
  const charset = charsetOf(req.headers['content-type']);
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8' && isJson(req.headers['content-type'])) throw problems.unsupportedCharset(charset);
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw problems.bodyTooLarge(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw problems.bodyTooLarge(limit);
    chunks.push(chunk);
  }
  return size === 0 ? undefined : Buffer.concat(chunks);
}

/** The body as the function reads it: JSON parsed, anything else kept as bytes, no body undefined. */
function parseBody(req: IncomingMessage, raw: Buffer | undefined): unknown {
  if (raw === undefined) return undefined;
  (req as IncomingMessage & { rawBody?: Buffer }).rawBody = raw;
  if (!isJson(req.headers['content-type'])) return raw;
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch (error) {
    throw problems.malformedJson((error as Error).message);
  }
}

/** The charset parameter of a Content-Type, lower case and unquoted. */
function charsetOf(contentType: string | undefined): string | undefined {
  for (const parameter of (contentType ?? '').split(';').slice(1)) {
    const [name, value] = parameter.split('=');
    if (name?.trim().toLowerCase() === 'charset') return (value ?? '').trim().replace(/^"(.*)"$/, '$1').toLowerCase();
  }
  return undefined;
}
