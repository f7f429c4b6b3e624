import { getTestServer } from '@google-cloud/functions-framework/testing';
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import { config } from './config.js';
import { databaseIsUp, pool } from './db.js';
import { Problem, problems, sendProblem } from './errors.js';
import { isJson, routeLabel, type FunctionDefinition } from './http-function.js';
import { log } from './log.js';
import { httpDuration, httpRequests, inflightShed, labelRegistry, registry } from './metrics.js';

const REQUEST_ID = /^[\w.:-]{1,128}$/;

/** The host's limits; each defaults to its setting in config. */
export interface Limits {
  maxInflight: number;
  bodyLimitBytes: number;
  drainTimeoutMs: number;
}

export interface FunctionHost {
  server: Server;
  /** Stops taking requests and waits (bounded) for those in flight. */
  drain(): Promise<void>;
}

/**
 * Puts a registered functions-framework function behind the things the
 * framework does not give: probes at `/_/health` and `/_/ready`, `/metrics`,
 * a small body limit enforced before any parsing, load shedding, a request
 * id and one log line per request, and a drain on shutdown. The framework
 * itself answers SIGTERM by exiting at once, so the server is built here
 * from its testing entry and never through its own CLI.
 */
export function createFunctionHost(definition: FunctionDefinition, limits: Partial<Limits> = {}): FunctionHost {
  const { maxInflight, bodyLimitBytes, drainTimeoutMs } = { ...config, ...limits };
  labelRegistry(definition.name);
  log.setBindings({ function: definition.name });
  const framework = getTestServer(definition.name).listeners('request')[0] as RequestListener;
  let inflight = 0;
  let draining = false;
  let idle: (() => void) | undefined;

  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path === '/_/health') return sendJson(res, 200, { status: 'ok' });
    if (path === '/_/ready') return void ready(res);
    if (path === '/metrics') return void metrics(res);

    const started = process.hrtime.bigint();
    const requestId = acceptRequestId(req.headers['x-request-id']);
    req.headers['x-request-id'] = requestId;
    res.setHeader('X-Request-Id', requestId);
    res.once('finish', () => observe(req, res, path, requestId, started));

    if (draining) return void sendProblem(res, problems.notReady('shutting down'));
    // The framework's router answers an undecodable path with an HTML 400.
    if (!decodable(path)) return void sendProblem(res, problems.validation([{ name: 'path', reason: 'is not valid percent-encoding' }]));
    if (inflight >= maxInflight) {
      inflightShed.inc();
      return void sendProblem(res, problems.overloaded(1));
    }
    inflight += 1;
    res.once('close', () => {
      inflight -= 1;
      if (inflight === 0) idle?.();
    });

    readBody(req, bodyLimitBytes)
      .then(() => framework(req, res))
      .catch((error: unknown) => {
        // The rest of an oversized body is not worth reading.
        if (error instanceof Problem && error.status === 413) res.setHeader('Connection', 'close');
        sendProblem(res, error);
      });
  });

  async function ready(res: ServerResponse): Promise<void> {
    if (draining) return void sendProblem(res, problems.notReady('shutting down'));
    if (!(await databaseIsUp())) return void sendProblem(res, problems.notReady('database unreachable'));
    sendJson(res, 200, { status: 'ready' });
  }

  async function drain(): Promise<void> {
    draining = true;
    const closed = once(server, 'close');
    server.close();
    server.closeIdleConnections();
    if (inflight > 0) {
      await Promise.race([
        new Promise<void>((resolve) => (idle = resolve)),
        new Promise((resolve) => setTimeout(resolve, drainTimeoutMs).unref()),
      ]);
    }
    server.closeAllConnections();
    await closed;
  }

  return { server, drain };
}

/**
 * Listens on `port`, and on SIGTERM or SIGINT drains requests, then exits.
 */
export async function serveFunction(definition: FunctionDefinition, port: number): Promise<FunctionHost> {
  const host = createFunctionHost(definition);
  host.server.listen(port);
  await once(host.server, 'listening');
  log.info({ port, route: definition.route }, `${definition.name} listening`);
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      log.info({ signal }, 'draining');
      host
        .drain()
        .then(() => pool.end())
        .then(
        () => process.exit(0),
        (error: unknown) => {
          log.error({ err: error }, 'drain failed');
          process.exit(1);
        },
      );
    });
  }
  return host;
}

function decodable(path: string): boolean {
  try {
    decodeURIComponent(path);
    return true;
  } catch {
    return false;
  }
}

function acceptRequestId(header: string | string[] | undefined): string {
  return typeof header === 'string' && REQUEST_ID.test(header) ? header : randomUUID();
}

function observe(req: IncomingMessage, res: ServerResponse, path: string, requestId: string, started: bigint): void {
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const labels = { method: req.method ?? '', route: routeLabel(res), status: String(res.statusCode) };
  httpRequests.inc(labels);
  httpDuration.observe(labels, seconds);
  log.info({ requestId, method: req.method, path, route: labels.route, status: res.statusCode, ms: Math.round(seconds * 1e4) / 10 }, 'request');
}

/**
 * Reads the body up to the limit and parses JSON, so that the framework's
 * own parsers (1 GB limit) find it consumed and skip.
 */
async function readBody(req: IncomingMessage, limit: number): Promise<void> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw problems.bodyTooLarge(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw problems.bodyTooLarge(limit);
    chunks.push(chunk);
  }
  if (size === 0) return;
  const raw = Buffer.concat(chunks);
  const target = req as IncomingMessage & { body?: unknown; rawBody?: Buffer };
  target.rawBody = raw;
  if (!isJson(req.headers['content-type'])) {
    target.body = raw;
    return;
  }
  try {
    target.body = JSON.parse(raw.toString('utf8'));
  } catch (error) {
    throw problems.malformedJson((error as Error).message);
  }
}

async function metrics(res: ServerResponse): Promise<void> {
  res.setHeader('Content-Type', registry.contentType);
  res.end(await registry.metrics());
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify(body));
}
