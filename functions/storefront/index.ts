import * as functions from '@google-cloud/functions-framework';
import { readdirSync, readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { problems, sendProblem } from '../../shared/errors.js';
import { keepCallHandler, markRoute, type CallHandler, type FunctionDefinition } from '../../shared/http-function.js';
import { log } from '../../shared/log.js';
import { pathMatcher, type Route } from '../../shared/route.js';

// The storefront and the operator view: static pages (pages/, plain HTML, CSS
// and JavaScript, no build) that call only the public API, plus what they
// need from the server: where to sign in (/config.json), the OIDC client
// library, and the load-test history for the operator's charts.

const route: Route = { method: 'GET', path: '/:page?' };
const pagesDir = new URL('./pages/', import.meta.url);
const resultsDir = new URL('../../load/results/', import.meta.url);

const types: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  css: 'text/css; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  svg: 'image/svg+xml',
  png: 'image/png',
};

interface Asset {
  type: string;
  body: Buffer;
}

/** Every page and asset, read once: the folder is the allowlist, so no path from a request ever reaches the file system. */
const assets = new Map<string, Asset>();
for (const entry of readdirSync(pagesDir, { withFileTypes: true })) {
  const type = types[entry.name.split('.').pop() ?? ''];
  if (entry.isFile() && type) assets.set(entry.name, { type, body: readFileSync(new URL(entry.name, pagesDir)) });
}
// The library's own browser build (a global `oidc`), served as it is published.
assets.set('oidc-client-ts.js', { type: types.js!, body: readFileSync(new URL('../browser/oidc-client-ts.min.js', import.meta.resolve('oidc-client-ts'))) });

/** Where the pages sign in: the issuer the functions trust, and the realm's public client. */
function signInConfig(): { issuer: string; clientId: string } {
  return { issuer: process.env.OIDC_ISSUER ?? '', clientId: process.env.OIDC_WEB_CLIENT_ID || 'boxoffice-web' };
}

/** One load-test run of one function, as the charts draw it: its throughput and p99, and those of its same-run baselines. */
export interface LoadRun {
  function: string;
  scenario?: string;
  at: string;
  requestsPerSecond: number;
  latencyP99Ms: number;
  baselines: Record<string, { requestsPerSecond: number; latencyP99Ms?: number }>;
}

type Spread = number | { median: number };
interface ResultLine {
  at: string;
  function: string;
  scenario?: string;
  requestsPerSecond: Spread;
  latencyP99Ms: number;
  baselineRequestsPerSecond?: number;
  baselines?: Record<string, { requestsPerSecond: Spread; latencyP99Ms?: number }>;
}

const median = (value: Spread) => (typeof value === 'number' ? value : value.median);

/** Every run kept in load/results/*.jsonl, oldest first; the first runs had one baseline, later ones two. A container, which has no results, has none. */
export async function loadHistory(dir: URL = resultsDir): Promise<LoadRun[]> {
  const files = (await readdir(dir).catch(() => [] as string[])).filter((name) => name.endsWith('.jsonl'));
  const runs: LoadRun[] = [];
  for (const file of files) {
    for (const line of (await readFile(new URL(file, dir), 'utf8')).split('\n')) {
      if (!line.trim()) continue;
      const result = JSON.parse(line) as ResultLine;
      if (typeof result.latencyP99Ms !== 'number') continue;
      const baselines = result.baselines
        ? Object.fromEntries(Object.entries(result.baselines).map(([name, b]) => [name, { requestsPerSecond: median(b.requestsPerSecond), latencyP99Ms: b.latencyP99Ms }]))
        : result.baselineRequestsPerSecond === undefined ? {} : { baseline: { requestsPerSecond: result.baselineRequestsPerSecond } };
      runs.push({ function: result.function, ...(result.scenario ? { scenario: result.scenario } : {}), at: result.at, requestsPerSecond: median(result.requestsPerSecond), latencyP99Ms: result.latencyP99Ms, baselines });
    }
  }
  return runs.sort((a, b) => a.at.localeCompare(b.at));
}

const match = pathMatcher(route.path);

const serve: CallHandler = async (call, res) => {
  try {
    const params = match(call.path);
    if (!params) throw problems.routeNotFound(call.path);
    markRoute(res, route.path);
    if (call.method !== 'GET') throw problems.methodNotAllowed(call.method, ['GET', 'HEAD']);
    const name = params.page ?? 'index.html';
    const { issuer } = signInConfig();
    // Scripts only from here; the API and the issuer (discovery, token) are the only other places the pages talk to.
    res.setHeader('Content-Security-Policy', `default-src 'self'; connect-src 'self' ${issuer ? new URL(issuer).origin : ''}; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'`);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Cache-Control', 'no-cache');
    if (name === 'config.json' || name === 'load-history.json') {
      res.setHeader('Content-Type', 'application/json');
      return void res.end(JSON.stringify(name === 'config.json' ? signInConfig() : await loadHistory()));
    }
    const asset = assets.get(name);
    if (!asset) throw problems.notFound(`No page ${name}`);
    res.setHeader('Content-Type', asset.type);
    res.end(asset.body);
  } catch (error) {
    const problem = sendProblem(res, error);
    if (problem.status >= 500) log.error({ err: error }, 'request failed');
  }
};

keepCallHandler('storefront', serve);
functions.http('storefront', (req, res) => serve(req, res));

/** GET / and GET /<page>: the storefront and the operator view. */
const definition: FunctionDefinition = { name: 'storefront', signature: 'http', route, access: 'public', success: 200 };
export default definition;
