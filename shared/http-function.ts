import * as functions from '@google-cloud/functions-framework';
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { anonymous, authenticate, type Principal } from './auth.js';
import { problems, sendProblem } from './errors.js';
import { toJson } from './json.js';
import { log } from './log.js';
import { pathMatcher, type Route } from './route.js';
import { validator, type Validator } from './validation.js';

/** What a handler receives: the request, validated and typed. */
export interface HttpRequest<Params, Query, Body> {
  params: Params;
  query: Query;
  body: Body;
  /** The body's text as it came: what JSON.parse loses (an exact decimal) is read from it. */
  bodyText?: string;
  headers: IncomingHttpHeaders;
  requestId: string;
  /** The caller; `anonymous` on public routes. */
  principal: Principal;
}

/** What a handler answers; the body is written as JSON (Decimals exact). */
export interface HttpResult {
  status?: number;
  body: unknown;
  headers?: Record<string, string>;
}

export interface HttpFunctionSpec<Params, Query, Body> {
  name: string;
  route: Route;
  /** `token`: a valid bearer token is required (401 before anything else); `public` by default. */
  access?: 'public' | 'token';
  /** JSON Schemas for the parts of the request the function reads (header names in lower case). */
  schemas?: Schemas;
  /** The status of a successful answer, 200 unless said. */
  success?: number;
  handle(request: HttpRequest<Params, Query, Body>): Promise<HttpResult>;
}

/** A function as the host, the gateway and the deployment files see it. */
export interface FunctionDefinition {
  name: string;
  signature: 'http' | 'cloudevent';
  route?: Route;
  access?: 'public' | 'token';
  /** What it answers on success (documented in the OpenAPI document). */
  success?: number;
  schemas?: Schemas;
}

export interface Schemas {
  path?: object;
  query?: object;
  header?: object;
  body?: object;
}

/**
 * A request as either server hands it to a function: the URL's path and
 * query parsed (`req.query` semantics: `a=1&a=2` is an array), the body
 * read and, when JSON, parsed. Express' request is one as it stands.
 */
export interface IncomingCall {
  method: string;
  path: string;
  query: Record<string, unknown>;
  headers: IncomingHttpHeaders;
  body?: unknown;
  /** The body's bytes as they came, when there was one. */
  rawBody?: Buffer;
}

/** Serves one call, answering with Node's own response API only, so that both servers can run it. */
export type CallHandler = (call: IncomingCall, res: ServerResponse) => Promise<void>;

const noExtras = { type: 'object', additionalProperties: false } as const;
const callHandlers = new Map<string, CallHandler>();

/** Keeps a registered function's handler for a host that calls it directly. */
export function keepCallHandler(name: string, handler: CallHandler): void {
  callHandlers.set(name, handler);
}

/** The handler of a registered function, for a host that serves it without the framework's Express app. */
export function callHandler(name: string): CallHandler | undefined {
  return callHandlers.get(name);
}

const routeLabels = new WeakMap<object, string>();

/** Records the route a response is served under, for metrics. */
export function markRoute(res: object, route: string): void {
  routeLabels.set(res, route);
}

/** The route a response was served under, for metrics; `unmatched` if none. */
export function routeLabel(res: object): string {
  return routeLabels.get(res) ?? 'unmatched';
}

/**
 * Registers a functions-framework HTTP function that serves one route:
 * it matches the path, validates path, query and body against their
 * schemas, runs the handler and writes its JSON, and turns every error into
 * problem+json. Handlers only ever see valid input. The same handler is
 * kept for a host that calls it directly (see `callHandler`).
 */
export function httpFunction<Params = Record<string, never>, Query = Record<string, never>, Body = undefined>(
  spec: HttpFunctionSpec<Params, Query, Body>,
): FunctionDefinition {
  const validate = {
    path: validator<Params>('path', spec.schemas?.path ?? noExtras),
    query: validator<Query>('query', spec.schemas?.query ?? noExtras),
    header: spec.schemas?.header ? validator<object>('header', spec.schemas.header) : undefined,
    body: spec.schemas?.body ? validator<Body>('body', spec.schemas.body) : undefined,
  };

  const match = pathMatcher(spec.route.path);

  const serve: CallHandler = async (req, res) => {
    const requestId = String(req.headers['x-request-id'] ?? '');
    try {
      const rawParams = match(req.path);
      if (!rawParams) throw problems.routeNotFound(req.path);
      markRoute(res, spec.route.path);
      if (req.method !== spec.route.method) throw problems.methodNotAllowed(req.method, spec.route.method === 'GET' ? ['GET', 'HEAD'] : [spec.route.method]);
      const principal = spec.access === 'token' ? await authenticate(req.headers) : anonymous;
      validate.header?.({ ...req.headers });

      const bodyText = validate.body && req.rawBody?.toString('utf8');
      const result = await spec.handle({
        params: validate.path(rawParams),
        query: validate.query({ ...req.query }),
        body: readBody(validate.body, req, bodyText),
        bodyText,
        headers: req.headers,
        requestId,
        principal,
      });

      res.statusCode = result.status ?? spec.success ?? 200;
      if (result.headers) for (const [name, value] of Object.entries(result.headers)) res.setHeader(name, value);
      res.setHeader('Content-Type', 'application/json');
      res.end(toJson(result.body));
    } catch (error) {
      const problem = sendProblem(res, error);
      // A 500 is a bug; other 5xx (a database or an upstream down) are an outage, at warn.
      if (problem.status >= 500) log[problem.status === 500 ? 'error' : 'warn']({ err: error, requestId }, 'request failed');
    }
  };

  keepCallHandler(spec.name, serve);
  functions.http(spec.name, (req, res) => serve(req, res));

  return {
    name: spec.name,
    signature: 'http',
    route: spec.route,
    access: spec.access ?? 'public',
    success: spec.success ?? 200,
    schemas: spec.schemas,
  };
}

function readBody<Body>(validate: Validator<Body> | undefined, req: IncomingCall, text: string | undefined): Body {
  if (!validate) return undefined as Body;
  const contentType = req.headers['content-type'];
  if (!isJson(contentType)) throw problems.unsupportedMediaType(contentType ?? '');
  // The text too: whether a number was written as an integer is lost in parsing.
  return validate(req.body, text === undefined ? undefined : { json: text, path: [] });
}

export function isJson(contentType: string | undefined): boolean {
  const type = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  return type === 'application/json' || type.endsWith('+json');
}
