import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { request } from 'node:http';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { httpFunction } from './http-function.js';
import { metricValue, serve, type RunningFunction } from './test-support/index.js';

// A function made for these tests: it echoes a validated body, can be held
// open to fill the host, can fail the way a bug would, and can tell whether
// the framework's wrapper (which runs each call in a node:domain) called it.
let release: () => void = () => undefined;
let entered: () => void = () => undefined;
const held = () => {
  entered();
  return new Promise<void>((resolve) => (release = resolve));
};

const probe = httpFunction<Record<string, never>, { mode?: 'echo' | 'hold' | 'crash' | 'where' }, { name: string; seats: number }>({
  name: 'host-probe',
  route: { method: 'POST', path: '/probe' },
  schemas: {
    query: { type: 'object', properties: { mode: { enum: ['echo', 'hold', 'crash', 'where'] } }, additionalProperties: false },
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
    if (query.mode === 'where') return { body: { inFrameworkWrapper: (process as { domain?: unknown }).domain != null } };
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
  for (const server of ['lean', 'framework'] as const) {
    const running = await serve(probe, { server });
    try {
      const where = await fetch(`${running.url}/probe?mode=where`, { method: 'POST', body: '{"name":"a","seats":1}', headers: { 'content-type': 'application/json' } });
      assert.deepEqual(await where.json(), { inFrameworkWrapper: server === 'framework' }, server);
      const echoed = await fetch(`${running.url}/probe?mode=echo`, { method: 'POST', body: '{"name":"a","seats":1}', headers: { 'content-type': 'application/json' } });
      assert.equal(echoed.status, 201, server);
    } finally {
      await running.stop();
    }
  }
});

const hello = httpFunction({ name: 'host-hello', route: { method: 'GET', path: '/hello' }, handle: async () => ({ body: { hello: 'world' } }) });

test('HEAD answers as GET does, with the Content-Length GET would send, without the body, under both servers', async () => {
  for (const server of ['lean', 'framework'] as const) {
    const running = await serve(hello, { server });
    try {
      const head = await fetch(`${running.url}/hello`, { method: 'HEAD' });
      assert.equal(head.status, 200, server);
      assert.equal(head.headers.get('content-type'), 'application/json', server);
      assert.equal(await head.text(), '', server);
      const get = await fetch(`${running.url}/hello`);
      assert.equal(head.headers.get('content-length'), String(Buffer.byteLength(await get.clone().text())), server);
      assert.deepEqual(await get.json(), { hello: 'world' }, server);
      // Where GET is not allowed, neither is HEAD.
      const notGet = await serve(probe, { server });
      try {
        const refused = await fetch(`${notGet.url}/probe`, { method: 'HEAD' });
        assert.equal(refused.status, 405, server);
        assert.equal(refused.headers.get('allow'), 'POST', server);
      } finally {
        await notGet.stop();
      }
    } finally {
      await running.stop();
    }
  }
});

test('/favicon.ico and /robots.txt are a 404 problem under both servers', async () => {
  // The framework's app would answer these (any case, any path below) with an empty 404 of its own.
  for (const server of ['lean', 'framework'] as const) {
    const running = await serve(hello, { server });
    try {
      for (const path of ['/favicon.ico', '/robots.txt', '/FAVICON.ICO', '/robots.txt/x']) {
        const res = await fetch(`${running.url}${path}`);
        assert.equal(res.status, 404, `${server} ${path}`);
        assert.match(res.headers.get('x-request-id') ?? '', /\S/, `${server} ${path}`);
        assert.equal((await problemOf(res)).type, 'urn:boxoffice:problem:route-not-found', `${server} ${path}`);
      }
    } finally {
      await running.stop();
    }
  }
});

test('a Content-Encoding the host does not decode is a 415 problem naming it, and the body never reaches the function', async () => {
  const gzip = await post('{"name":"a","seats":1}', { headers: { 'content-encoding': 'gzip' } });
  assert.equal(gzip.status, 415);
  assert.equal(gzip.headers.get('accept-encoding'), 'identity');
  const problem = await problemOf(gzip);
  assert.equal(problem.type, 'urn:boxoffice:problem:unsupported-content-encoding');
  assert.match(problem.detail ?? '', /gzip/);
  assert.equal((await post('{"name":"a","seats":1}', { headers: { 'content-encoding': 'identity' } })).status, 201);
});

test('JSON in a charset other than UTF-8 is a 415 problem naming it; UTF-8 however written is read', async () => {
  const utf16 = await post('{"name":"a","seats":1}', { headers: { 'content-type': 'application/json; charset=utf-16' } });
  assert.equal(utf16.status, 415);
  const problem = await problemOf(utf16);
  assert.equal(problem.type, 'urn:boxoffice:problem:unsupported-charset');
  assert.match(problem.detail ?? '', /utf-16/);
  for (const contentType of ['application/json; charset=utf-8', 'application/json;charset="UTF-8"', 'application/json; charset=utf8']) {
    assert.equal((await post('{"name":"a","seats":1}', { headers: { 'content-type': contentType } })).status, 201, contentType);
  }
});

/** Sends `text` on a fresh connection and keeps what comes back until the server closes it. */
async function rawExchange(url: string, text: string): Promise<string> {
  const socket = connect(Number(new URL(url).port), '127.0.0.1');
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
  socket.write(text);
  await once(socket, 'close');
  return received;
}

test('headers that do not arrive in time get a 408 problem and the connection is closed', { timeout: 20_000 }, async () => {
  // A whole-request deadline far off: only the headers' deadline can end this.
  const running = await serve(probe, { requestHeadersTimeoutMs: 300, requestTimeoutMs: 60_000 });
  try {
    const answer = await rawExchange(running.url, 'POST /probe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n');
    const [status = '', body = ''] = answer.split('\r\n\r\n');
    const head = `${status}\r\n`;
    assert.match(head, /^HTTP\/1\.1 408 /);
    assert.match(head, /\r\ncontent-type: application\/problem\+json\r\n/i);
    assert.match(head, /\r\nx-request-id: [0-9a-f-]{36}\r\n/i);
    assert.equal((JSON.parse(body) as { type: string }).type, 'urn:boxoffice:problem:request-timeout');
  } finally {
    await running.stop();
  }
});

test('a request Node cannot parse gets a 400 problem, not a bare answer', async () => {
  const answer = await rawExchange(fn.url, 'POST /probe HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n');
  const [head = '', body = ''] = answer.split('\r\n\r\n');
  assert.match(head, /^HTTP\/1\.1 400 /);
  assert.equal((JSON.parse(body) as { type: string }).type, 'urn:boxoffice:problem:malformed-request');
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

test('on shutdown a request whose body is still arriving is read and answered', async () => {
  const running = await serve(probe);
  const socket = connect(Number(new URL(running.url).port), '127.0.0.1');
  let received = '';
  const body = '{"name":"late","seats":1}';
  const continued = new Promise<void>((resolve) =>
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString();
      if (received.startsWith('HTTP/1.1 100 ')) resolve();
    }),
  );
  socket.write(`POST /probe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`);
  await continued;
  const stopped = running.stop();
  socket.write(body);
  await once(socket, 'close');
  await stopped;
  assert.match(received, /\r\n\r\nHTTP\/1\.1 201 /);
});
