import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { request } from 'node:http';
import { after, before, test } from 'node:test';
import { httpFunction } from './http-function.js';
import { metricValue, serve, type RunningFunction } from './test-support/index.js';

// A function made for these tests: it echoes a validated body, can be held
// open to fill the host, and can fail the way a bug would.
let release: () => void = () => undefined;
let entered: () => void = () => undefined;
const held = () => {
  entered();
  return new Promise<void>((resolve) => (release = resolve));
};

const probe = httpFunction<Record<string, never>, { mode?: 'echo' | 'hold' | 'crash' }, { name: string; seats: number }>({
  name: 'host-probe',
  route: { method: 'POST', path: '/probe' },
  schemas: {
    query: { type: 'object', properties: { mode: { enum: ['echo', 'hold', 'crash'] } }, additionalProperties: false },
    body: {
      type: 'object',
      properties: { name: { type: 'string', minLength: 1 }, seats: { type: 'integer', minimum: 1 } },
      required: ['name', 'seats'],
      additionalProperties: false,
    },
  },
  async handle({ query, body, requestId }) {
    if (query.mode === 'hold') await held();
    if (query.mode === 'crash') throw new Error('secret internals');
    return { status: 201, body: { ...body, requestId } };
  },
});

let fn: RunningFunction;
before(async () => (fn = await serve(probe, { maxInflight: 1, bodyLimitBytes: 1024 })));
after(() => fn.stop());

const post = (body: string, init: { query?: string; headers?: Record<string, string> } = {}) =>
  fetch(`${fn.url}/probe${init.query ?? ''}`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...init.headers } });

async function problemOf(res: Response): Promise<{ type: string; status: number; detail?: string; invalidParams?: { name: string; reason: string }[] }> {
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
  return (await res.json()) as never;
}

test('a valid body reaches the handler and its answer comes back as JSON', async () => {
  const res = await post('{"name":"stalls","seats":2}');
  assert.equal(res.status, 201);
  assert.deepEqual({ ...((await res.json()) as object), requestId: 'x' }, { name: 'stalls', seats: 2, requestId: 'x' });
});

test('a request id is kept when given and made when not, and echoed', async () => {
  const given = await post('{"name":"a","seats":1}', { headers: { 'x-request-id': 'req-123' } });
  assert.equal(given.headers.get('x-request-id'), 'req-123');
  assert.equal(((await given.json()) as { requestId: string }).requestId, 'req-123');
  const made = await post('{"name":"a","seats":1}', { headers: { 'x-request-id': 'bad id with spaces' } });
  assert.match(made.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
});

test('every fault in a body is named in one 400 problem', async () => {
  const res = await post('{"seats":0,"colour":"red"}');
  assert.equal(res.status, 400);
  const problem = await problemOf(res);
  assert.equal(problem.type, 'urn:boxoffice:problem:validation-failed');
  const names = (problem.invalidParams ?? []).map((p) => p.name).sort();
  assert.deepEqual(names, ['body/colour', 'body/name', 'body/seats']);
});

test('a wrongly typed field is refused, not coerced', async () => {
  const res = await post('{"name":"a","seats":"2"}');
  assert.equal(res.status, 400);
  assert.deepEqual((await problemOf(res)).invalidParams?.map((p) => p.name), ['body/seats']);
});

test('malformed JSON is a 400 problem', async () => {
  const res = await post('{"name":');
  assert.equal(res.status, 400);
  assert.equal((await problemOf(res)).type, 'urn:boxoffice:problem:malformed-json');
});

test('a body that is not JSON is a 415 problem', async () => {
  const res = await post('name=a', { headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  assert.equal(res.status, 415);
  await problemOf(res);
});

test('a body over the limit is refused with 413 before it is parsed', async () => {
  const res = await post(JSON.stringify({ name: 'x'.repeat(2000), seats: 1 }));
  assert.equal(res.status, 413);
  assert.equal((await problemOf(res)).type, 'urn:boxoffice:problem:body-too-large');
});

test('a chunked body over the limit is refused with 413 too', async () => {
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(`${fn.url}/probe`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    for (let i = 0; i < 10; i++) req.write('x'.repeat(200));
    req.end();
  });
  assert.equal(status, 413);
});

test('an unexpected error is a 500 problem that reveals nothing', async () => {
  const res = await post('{"name":"a","seats":1}', { query: '?mode=crash' });
  assert.equal(res.status, 500);
  const problem = await problemOf(res);
  assert.doesNotMatch(JSON.stringify(problem), /secret internals/);
});

test('when the host is full it sheds with 503 and Retry-After, then recovers', async () => {
  const holdingEntered = new Promise<void>((resolve) => (entered = resolve));
  const holding = post('{"name":"a","seats":1}', { query: '?mode=hold' });
  await holdingEntered;
  const shed = await post('{"name":"b","seats":1}');
  assert.equal(shed.status, 503);
  assert.equal(shed.headers.get('retry-after'), '1');
  assert.equal((await problemOf(shed)).type, 'urn:boxoffice:problem:overloaded');
  release();
  assert.equal((await holding).status, 201);
  assert.equal((await post('{"name":"c","seats":1}')).status, 201);
});

test('a query is read as Express reads it: a repeated parameter is refused, not collapsed', async () => {
  const res = await post('{"name":"a","seats":1}', { query: '?mode=echo&mode=echo' });
  assert.equal(res.status, 400);
  assert.deepEqual((await problemOf(res)).invalidParams?.map((p) => p.name), ['query/mode']);
  assert.equal((await post('{"name":"a","seats":1}', { query: '?mode=ec%68o' })).status, 201);
});

test('FUNCTION_SERVER picks the server: lean calls the function itself, framework goes through its Express app', async () => {
  // The framework's app answers /favicon.ico itself, with an empty 404; the function answers it with a problem.
  for (const server of ['lean', 'framework'] as const) {
    const running = await serve(probe, { server });
    try {
      const res = await fetch(`${running.url}/favicon.ico`);
      assert.equal(res.status, 404);
      assert.equal(res.headers.get('content-type') === 'application/problem+json', server === 'lean', server);
      const echoed = await fetch(`${running.url}/probe?mode=echo`, { method: 'POST', body: '{"name":"a","seats":1}', headers: { 'content-type': 'application/json' } });
      assert.equal(echoed.status, 201, server);
    } finally {
      await running.stop();
    }
  }
});

test('liveness and readiness probes answer', async () => {
  assert.equal((await fetch(`${fn.url}/_/health`)).status, 200);
  const ready = await fetch(`${fn.url}/_/ready`);
  assert.equal(ready.status, 200);
  assert.deepEqual(await ready.json(), { status: 'ready' });
});

test('/metrics counts requests and times them by route and status', async () => {
  await post('{"name":"a","seats":1}');
  const text = await (await fetch(`${fn.url}/metrics`)).text();
  const route = { function: 'host-probe', method: 'POST', route: '/probe' };
  assert.ok((metricValue(text, 'http_requests_total', { ...route, status: '201' }) ?? 0) >= 1);
  assert.ok((metricValue(text, 'http_requests_total', { ...route, status: '400' }) ?? 0) >= 1);
  assert.ok((metricValue(text, 'http_request_duration_seconds_count', { ...route, status: '201' }) ?? 0) >= 1);
  assert.notEqual(metricValue(text, 'http_request_duration_seconds_bucket', { ...route, status: '201', le: '0.1' }), undefined);
  assert.match(text, /process_cpu_user_seconds_total/);
});

test('a function stopped by SIGTERM writes its last log lines before it exits', async () => {
  // A served function in its own process, logging at info as in production.
  const script = `
    const { httpFunction } = await import(${JSON.stringify(new URL('./http-function.ts', import.meta.url).href)});
    const { serveFunction } = await import(${JSON.stringify(new URL('./host.ts', import.meta.url).href)});
    const fn = httpFunction({ name: 'exit-probe', route: { method: 'GET', path: '/hello' }, handle: async () => ({ body: 'hi' }) });
    const host = await serveFunction(fn, 0);
    console.error('port', host.server.address().port);`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    env: { ...process.env, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const port = await new Promise<string>((resolve) =>
    child.stderr.on('data', (chunk: Buffer) => {
      const said = /port (\d+)/.exec(chunk.toString());
      if (said) resolve(said[1]!);
    }),
  );
  const res = await fetch(`http://127.0.0.1:${port}/hello`, { headers: { 'x-request-id': 'last-request' } });
  assert.equal(res.status, 200);
  child.kill('SIGTERM');
  const [code] = (await once(child, 'exit')) as [number];
  assert.equal(code, 0);
  const lines = stdout.trim().split('\n').map((line) => JSON.parse(line) as { msg: string; requestId?: string });
  assert.ok(lines.some((line) => line.msg === 'request' && line.requestId === 'last-request'), stdout);
  assert.equal(lines.at(-1)?.msg, 'draining');
});
