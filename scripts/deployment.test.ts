import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import type { FunctionDefinition } from '../shared/http-function.js';
import type { Route } from '../shared/route.js';
import { freePort, functionNames, loadDefinitions } from './functions.js';
import { workers } from './generate.js';

// The deployment files agree with the code and with each other, checked
// without Docker: the compose stack, the OpenFaaS stack, the edge proxy's
// routes, Prometheus' scrape jobs and Grafana's provisioning.

type Yaml = Record<string, unknown>;
const readYaml = (file: string) => parse(readFileSync(file, 'utf8'), { merge: true }) as Yaml;
const object = (value: unknown, what: string): Yaml => {
  assert.ok(value && typeof value === 'object' && !Array.isArray(value), `${what} is a mapping`);
  return value as Yaml;
};
const list = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);

const compose = readYaml('docker-compose.yml');
const services = object(compose.services, 'docker-compose.yml services');
const stack = readYaml('stack.yml');
const stackFunctions = object(stack.functions, 'stack.yml functions');
const prometheus = readYaml('deploy/prometheus/prometheus.yml');
const names = functionNames();
const definitions = await loadDefinitions();

/** The Debian tool `command`, or a loud skip (a failure under CI=true) when it is not installed. */
function toolOrSkip(t: TestContext, command: string, why: string): boolean {
  if (!spawnSync(command, ['--version'], { stdio: 'ignore' }).error) return true;
  const reason = `${command} is not installed (apt-get install ${command === 'promtool' ? 'prometheus' : command}; .ci/run does): ${why}`;
  if (process.env.CI === 'true') assert.fail(`under CI=true nothing skips: ${reason}`);
  console.warn(`\n*** SKIPPED: ${reason} ***\n`);
  t.skip(`SKIPPED: ${reason}`);
  return false;
}

function service(name: string): Yaml {
  return object(services[name], `docker-compose.yml service ${name}`);
}

/** The container paths that host `source` is mounted at, in a compose service. */
function mountsOf(name: string, source: string): string[] {
  return list(service(name).volumes)
    .map((volume) => String(volume).split(':'))
    .filter(([from]) => from === source || from === `./${source}`)
    .map(([, to]) => to ?? '');
}

function dependsOn(name: string): string[] {
  const depends = service(name).depends_on;
  return Array.isArray(depends) ? depends.map(String) : Object.keys(object(depends ?? {}, `${name} depends_on`));
}

test('docker-compose.yml is a valid compose file (docker-compose config -q)', (t) => {
  if (!toolOrSkip(t, 'docker-compose', 'docker-compose.yml is not validated')) return;
  const result = spawnSync('docker-compose', ['-f', 'docker-compose.yml', 'config', '-q'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(result.status, 0, `docker-compose config refused docker-compose.yml:\n${result.stderr}`);
});

interface Stage {
  name: string;
  base: string;
  lines: string[];
}

/** The Dockerfile's stages, in order. */
function dockerStages(): Stage[] {
  return readFileSync('Dockerfile', 'utf8')
    .replace(/\\\n/g, ' ')
    .split(/^(?=FROM )/m)
    .filter((stage) => stage.startsWith('FROM '))
    .map((stage, i) => {
      const [header = '', ...lines] = stage.split('\n');
      const [, base = '', name = String(i)] = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(header) ?? [];
      return { name, base, lines: lines.map((line) => line.trim()).filter((line) => line && !line.startsWith('#')) };
    });
}

/** The stage a compose service's build targets (the last one unless it names one), with what it runs. */
function builtStage(build: Yaml): { stage: Stage; cmd: string[]; args: string[] } {
  const stages = dockerStages();
  const stage = build.target === undefined ? stages[stages.length - 1] : stages.find((s) => s.name === build.target);
  assert.ok(stage, `the Dockerfile has the stage ${String(build.target ?? '(last)')}`);
  const args: string[] = [];
  let cmd: string[] | undefined;
  for (let current: Stage | undefined = stage; current; current = stages.find((s) => s.name === current!.base)) {
    args.push(...current.lines.filter((line) => line.startsWith('ARG ')).map((line) => line.slice(4).split('=')[0]!.trim()));
    const line = current.lines.filter((l) => l.startsWith('CMD ')).pop();
    if (!cmd && line) cmd = JSON.parse(line.slice(4)) as string[];
  }
  return { stage, cmd: cmd ?? [], args };
}

function checkBuild(name: string, build: Yaml, where: string): void {
  assert.equal(build.context, '.', `${where} ${name} builds this repository`);
  assert.ok(build.dockerfile === undefined || build.dockerfile === 'Dockerfile', `${where} ${name} builds from the Dockerfile`);
}

test('every function folder is a compose service and an OpenFaaS function built from the Dockerfile with FUNCTION=<name>, and nothing else is', () => {
  assert.ok(names.length > 0, 'functions/ has folders');
  for (const name of names) {
    const build = object(service(name).build, `compose ${name} build`);
    checkBuild(name, build, 'compose');
    assert.equal(object(build.args, `compose ${name} build args`).FUNCTION, name, `compose ${name} is built with FUNCTION=${name}`);
    const { stage, cmd, args } = builtStage(build);
    assert.ok(args.includes('FUNCTION'), `the Dockerfile stage ${stage.name} that compose ${name} builds takes the FUNCTION build arg`);
    assert.deepEqual(service(name).command ?? cmd, ['node', 'dist/shared/run.js'], `compose ${name} runs the function host`);

    const fn = object(stackFunctions[name], `stack.yml function ${name}`);
    assert.equal(fn.lang, 'dockerfile', `stack.yml ${name} is built from a Dockerfile`);
    assert.equal(fn.handler, '.', `stack.yml ${name} is built from this repository's Dockerfile`);
    assert.equal(fn.image, `boxoffice/${name}:latest`, `stack.yml ${name} image`);
    assert.equal(object(fn.build_args, `stack.yml ${name} build_args`).FUNCTION, name, `stack.yml ${name} is built with FUNCTION=${name}`);
  }
  // faas-cli builds the Dockerfile's last stage: it must be the function image.
  const last = builtStage({});
  assert.ok(last.args.includes('FUNCTION'), `the Dockerfile's last stage (${last.stage.name}), which faas-cli builds, takes FUNCTION`);
  assert.deepEqual(last.cmd, ['node', 'dist/shared/run.js'], "the Dockerfile's last stage runs the function host");

  // The other way round: nothing deployed that has no folder.
  assert.deepEqual(Object.keys(stackFunctions).sort(), names, 'stack.yml functions are exactly the folders of functions/');
  const built = Object.keys(services).filter((name) => service(name).build !== undefined && !['migrate', ...workers].includes(name));
  assert.deepEqual(built.sort(), names, 'the compose services built from this repository (besides migrate and the workers) are exactly the folders of functions/');
});

test('each long-running worker (trigger, relay) is a compose service built from its own Dockerfile target that runs dist/<worker>/main.js', () => {
  for (const worker of workers) {
    const build = object(service(worker).build, `compose ${worker} build`);
    checkBuild(worker, build, 'compose');
    assert.equal(build.target, worker, `compose ${worker} builds the Dockerfile target ${worker}`);
    const { cmd } = builtStage(build);
    assert.deepEqual(service(worker).command ?? cmd, ['node', `dist/${worker}/main.js`], `compose ${worker} runs dist/${worker}/main.js`);
    assert.equal(service(worker).restart, 'unless-stopped', `compose restarts ${worker} when it exits`);
  }
  assert.equal(object(service('trigger').environment, 'compose trigger environment').CONSUME_ORDER_URL, 'http://consume-order:8080');
  assert.ok(dependsOn('trigger').includes('consume-order'), 'the trigger starts after consume-order');
  const relayEnv = object(service('relay').environment, 'compose relay environment');
  assert.ok(relayEnv.KAFKA_BROKERS && relayEnv.DATABASE_URL, 'the relay reads the database and publishes to Kafka');
  assert.equal(object(service('book').environment, 'compose book environment').KAFKA_BROKERS, undefined, 'book does only its request: it needs no Kafka');
});

test('the Kubernetes manifest deploys each worker beside the OpenFaaS functions, with its probes', () => {
  const documents = parseAllDocuments(readFileSync('deploy/kubernetes/workers.yml', 'utf8')).map((d) => d.toJSON() as Yaml);
  for (const worker of workers) {
    const deployment = documents.find((d) => d.kind === 'Deployment' && object(d.metadata, 'metadata').name === worker);
    assert.ok(deployment, `a Deployment named ${worker}`);
    const pod = object(object(object(deployment.spec, 'spec').template, 'template').spec, 'pod spec');
    const container = object(list(pod.containers)[0], `${worker} container`);
    assert.equal(container.image, `boxoffice/${worker}:latest`);
    assert.equal(object(object(container.readinessProbe, 'readinessProbe').httpGet, 'httpGet').path, '/_/ready', `${worker} is ready when its /_/ready says so`);
    assert.equal(object(object(container.livenessProbe, 'livenessProbe').httpGet, 'httpGet').path, '/_/health', `${worker} is alive while /_/health answers`);
  }
});

test("the trigger sends consume-order the deliverers' token: compose hands it and Keycloak's realm import the same client secret, Kubernetes mounts it from a secret", () => {
  const trigger = object(service('trigger').environment, 'compose trigger environment');
  const keycloak = object(service('keycloak').environment, 'compose keycloak environment');
  assert.equal(trigger.DELIVERER_CLIENT_ID, 'boxoffice-deliverer');
  assert.ok(trigger.DELIVERER_CLIENT_SECRET, 'compose gives the trigger the client secret');
  assert.equal(trigger.DELIVERER_CLIENT_SECRET, keycloak.DELIVERER_CLIENT_SECRET, "the trigger's secret is the one the realm import gives the client");
  assert.equal(new URL(String(trigger.DELIVERER_TOKEN_URL)).host, 'keycloak:8080', 'the trigger asks the compose Keycloak for its token');
  const realm = JSON.parse(readFileSync('keycloak/boxoffice-realm.json', 'utf8')) as { clients: { clientId: string; secret?: string; serviceAccountsEnabled?: boolean }[] };
  const client = realm.clients.find((c) => c.clientId === 'boxoffice-deliverer');
  assert.ok(client?.serviceAccountsEnabled, 'the realm has the confidential deliverers client with a service account');
  assert.match(client.secret ?? '', /^\$\{DELIVERER_CLIENT_SECRET:/, "the realm takes the client's secret from DELIVERER_CLIENT_SECRET at import");

  const documents = parseAllDocuments(readFileSync('deploy/kubernetes/workers.yml', 'utf8')).map((d) => d.toJSON() as Yaml);
  const pod = object(object(object(documents.find((d) => object(d.metadata, 'metadata').name === 'trigger')?.spec, 'spec').template, 'template').spec, 'pod spec');
  const container = object(list(pod.containers)[0], 'trigger container');
  const env = Object.fromEntries(list(container.env).map((e) => [object(e, 'env').name, object(e, 'env').value]));
  const file = String(env.DELIVERER_CLIENT_SECRET_FILE);
  const mount = list(container.volumeMounts).map((m) => object(m, 'volumeMount')).find((m) => file.startsWith(`${String(m.mountPath)}/`));
  assert.ok(mount, `the trigger's DELIVERER_CLIENT_SECRET_FILE (${file}) is on a mounted volume`);
  const volume = list(pod.volumes).map((v) => object(v, 'volume')).find((v) => v.name === mount.name);
  assert.ok(volume && object(volume.secret, 'secret volume').secretName, 'mounted from a Kubernetes secret');
  assert.ok(env.OIDC_ISSUER, 'the trigger knows the realm whose token endpoint it asks');
});

test('the alert rules load and fire when they should (promtool test rules)', (t) => {
  if (!toolOrSkip(t, 'promtool', 'the alert rules are not checked')) return;
  assert.deepEqual(list(prometheus.rule_files), ['alerts.yml'], 'prometheus.yml loads alerts.yml');
  assert.ok(mountsOf('prometheus', 'deploy/prometheus/alerts.yml').includes('/etc/prometheus/alerts.yml'), 'compose mounts the alert rules beside the config');
  const result = spawnSync('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: 'deploy/prometheus', encoding: 'utf8', timeout: 60_000 });
  assert.equal(result.status, 0, `${result.stdout}\n${result.stderr}`);
});

test('the Dockerfile compiles every folder the build includes, so each image holds the code its command runs (dist/trigger/main.js too)', () => {
  const included = (JSON.parse(readFileSync('tsconfig.build.json', 'utf8')) as { include: string[] }).include;
  const build = dockerStages().find((stage) => stage.lines.some((line) => /^RUN npm run build\b/.test(line)));
  assert.ok(build, 'a Dockerfile stage runs npm run build');
  const copied = build.lines.filter((line) => line.startsWith('COPY ') && !line.includes('--from')).flatMap((line) => line.slice(5).trim().split(/\s+/).slice(0, -1));
  for (const folder of included) assert.ok(copied.includes(folder), `the Dockerfile's build stage copies ${folder}/ (tsconfig.build.json compiles it); it copies ${copied.join(', ')}`);
});

// --- the edge proxy: the real nginx, on the real configuration ---

const routed = definitions.filter((d): d is FunctionDefinition & { route: Route } => d.route !== undefined);

test('the compose edge runs deploy/nginx/boxoffice.conf with openapi.json, on port 8080, and waits for every function it routes to', () => {
  assert.ok(mountsOf('edge', 'deploy/nginx/boxoffice.conf').includes('/etc/nginx/conf.d/default.conf'), 'the edge service runs deploy/nginx/boxoffice.conf');
  assert.ok(mountsOf('edge', 'openapi.json').includes('/usr/share/boxoffice/openapi.json'), 'the edge serves openapi.json');
  assert.ok(list(service('edge').ports).map(String).includes('8080:8080'), 'the edge is published on 8080');
  assert.ok(routed.length > 0, 'some functions have public routes');
  // nginx resolves its upstreams when it starts: each must be up by then.
  assert.deepEqual(dependsOn('edge').sort(), routed.map((d) => d.name).sort(), 'the edge depends on exactly the functions it routes to');
  for (const name of dependsOn('edge')) assert.equal(object(object(service('edge').depends_on, 'edge depends_on')[name], name).condition, 'service_healthy', `the edge waits until ${name} is healthy`);
});

test('the OpenFaaS edge runs deploy/nginx/openfaas.conf with openapi.json (deploy/nginx/openfaas-edge.yml)', () => {
  const documents = parseAllDocuments(readFileSync('deploy/nginx/openfaas-edge.yml', 'utf8')).map((d) => d.toJSON() as Yaml);
  const deployment = documents.find((d) => d.kind === 'Deployment');
  assert.ok(deployment, 'a Deployment');
  const pod = object(object(object(deployment.spec, 'spec').template, 'template').spec, 'pod spec');
  const container = object(list(pod.containers)[0], 'edge container');
  const mounts = list(container.volumeMounts).map((m) => object(m, 'volumeMount'));
  assert.deepEqual(mounts.map((m) => [m.mountPath, m.subPath]), [['/etc/nginx/conf.d/default.conf', 'default.conf'], ['/usr/share/boxoffice/openapi.json', 'openapi.json']]);
  const volume = object(list(pod.volumes).map((v) => object(v, 'volume')).find((v) => v.name === mounts[0]!.name), 'config volume');
  assert.equal(object(volume.configMap, 'configMap').name, 'boxoffice-edge');
  assert.match(readFileSync('deploy/nginx/openfaas-edge.yml', 'utf8'), /--from-file=default\.conf=deploy\/nginx\/openfaas\.conf --from-file=openapi\.json/, 'it says how the config map is made');
  assert.equal(object(object(container.readinessProbe, 'readinessProbe').httpGet, 'httpGet').path, '/_/health');
});

/** What reached a function behind the edge: its name, the method and the request target it was given, and the request id. */
interface Arrival {
  function: string;
  method: string;
  url: string;
  requestId: string;
}

/** Starts an HTTP server on 127.0.0.1 that answers 200 with what `arrival` makes of each request. */
async function fakeUpstream(arrival: (req: IncomingMessage) => Arrival | undefined): Promise<Server> {
  const server = createServer((req, res) => {
    req.resume();
    const seen = arrival(req);
    res.setHeader('X-Request-Id', String(req.headers['x-request-id'] ?? ''));
    res.writeHead(seen ? 200 : 404, { 'Content-Type': 'application/json', 'X-Arrival': JSON.stringify(seen ?? null) }).end(JSON.stringify(seen ?? null));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

const portOf = (server: Server) => (server.address() as AddressInfo).port;

/**
 * Runs the real nginx (Debian's package) on `conf`, with its upstreams'
 * addresses and its listening port swapped for loopback ones: everything else
 * is the file as it is deployed. `nginx -t` checks it first.
 */
async function runNginx(t: TestContext, file: string, addresses: Record<string, number>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'boxoffice-nginx-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const port = await freePort();
  let conf = readFileSync(file, 'utf8');
  assert.match(conf, /^ {2}listen 8080;$/m, `${file} listens on 8080`);
  conf = conf.replace(/^ {2}listen 8080;$/m, `  listen 127.0.0.1:${port};`);
  conf = conf.replace(/^\s*upstream\s+\S+\s*\{\s*server\s+([\w.-]+):8080;\s*\}$/gm, (line, host: string) => {
    assert.ok(addresses[host], `${file}: an address for the upstream server ${host}`);
    return line.replace(`${host}:8080`, `127.0.0.1:${addresses[host]}`);
  });
  conf = conf.replace('alias /usr/share/boxoffice/openapi.json;', `alias ${join(process.cwd(), 'openapi.json')};`);
  await writeFile(join(dir, 'edge.conf'), conf);
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `  ${kind}_temp_path ${join(dir, kind)};`).join('\n');
  // One process, no workers to switch user: nothing outside `dir` is written.
  await writeFile(join(dir, 'nginx.conf'), `daemon off;\nmaster_process off;\npid ${join(dir, 'nginx.pid')};\nerror_log ${join(dir, 'error.log')};\nevents { worker_connections 128; }\nhttp {\n  access_log off;\n${temp}\n  include ${join(dir, 'edge.conf')};\n}\n`);
  const args = ['-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf')];
  const check = spawnSync('nginx', ['-t', ...args], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(check.status, 0, `nginx -t refused ${file}:\n${check.stderr}`);
  const nginx = spawn('nginx', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  nginx.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  t.after(async () => {
    if (nginx.exitCode === null && nginx.signalCode === null) {
      nginx.kill('SIGTERM');
      await once(nginx, 'exit');
    }
  });
  const base = `http://127.0.0.1:${port}`;
  for (let attempt = 0; ; attempt++) {
    if (await fetch(`${base}/_/health`).then((r) => r.ok, () => false)) return base;
    assert.ok(attempt < 100 && nginx.exitCode === null, `nginx did not start on ${file}: ${stderr}${readFileSync(join(dir, 'error.log'), 'utf8')}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The methods served on `fn`'s path, as Allow lists them. */
function allowedOn(path: string): string[] {
  const methods = routed.filter((d) => d.route.path === path).flatMap((d) => (d.route.method === 'GET' ? ['GET', 'HEAD'] : [d.route.method]));
  return ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'].filter((m) => methods.includes(m));
}

async function assertProblem(res: Response, status: number, type: string, what: string): Promise<void> {
  assert.equal(res.status, status, what);
  assert.equal(res.headers.get('content-type'), 'application/problem+json', `${what}: problem+json`);
  assert.match(res.headers.get('x-request-id') ?? '', /^[\w.:-]{1,128}$/, `${what}: one X-Request-Id`);
  const body = (await res.json()) as { type: string; status: number };
  assert.equal(body.type, `urn:boxoffice:problem:${type}`, what);
  assert.equal(body.status, status, what);
}

/** What every edge does, whatever is behind it: each (method, path) to its function, HEAD to GET's, 405 with Allow, 404, request ids, problems. */
async function checkEdge(base: string): Promise<void> {
  const arrival = (res: Response) => JSON.parse(res.headers.get('x-arrival') ?? 'null') as Arrival | null;
  for (const { name, route } of routed) {
    const path = route.path.replace(/:\w+/g, '7');
    for (const [method, target] of [[route.method, `${path}?probe=1&x=%2F`], [route.method, `${path}/`], ...(route.method === 'GET' ? [['HEAD', path]] : [])] as [string, string][]) {
      const res = await fetch(`${base}${target}`, { method, ...(['POST', 'PATCH', 'PUT'].includes(method) ? { body: '{}', headers: { 'content-type': 'application/json' } } : {}) });
      assert.equal(res.status, 200, `${method} ${target} is routed`);
      assert.deepEqual(arrival(res), { function: name, method, url: target, requestId: res.headers.get('x-request-id') }, `${method} ${target} reaches ${name} as sent`);
      await res.arrayBuffer();
    }
    const allowed = allowedOn(route.path);
    for (const method of ['DELETE', 'PUT', 'OPTIONS'].filter((m) => !allowed.includes(m))) {
      const res = await fetch(`${base}${path}`, { method });
      await assertProblem(res.clone(), 405, 'method-not-allowed', `${method} ${path}`);
      assert.equal(res.headers.get('allow'), allowed.join(', '), `${method} ${path}: Allow names the methods its functions serve`);
      assert.equal(((await res.json()) as { detail: string }).detail, `${method} is not allowed here; use ${allowed.join(', ')}`);
    }
  }
  for (const path of ['/api/v1/inventory/theatre/1', '/api/v1/inventory/event/1/extra', '/api/v1/inventory/event/', '/api/v1']) {
    await assertProblem(await fetch(`${base}${path}`), 404, 'route-not-found', `GET ${path}`);
  }

  // The caller's sensible request id goes to the function and comes back, once; another is replaced.
  const events = routed.find((d) => d.name === 'list-events')!.route.path;
  const kept = await fetch(`${base}${events}`, { headers: { 'x-request-id': 'trace-42.a:b' } });
  assert.equal(kept.headers.get('x-request-id'), 'trace-42.a:b');
  assert.equal(arrival(kept)?.requestId, 'trace-42.a:b');
  const replaced = await fetch(`${base}${events}`, { headers: { 'x-request-id': 'not sensible' } });
  assert.match(replaced.headers.get('x-request-id') ?? '', /^[0-9a-f]{32}$/);
  assert.equal(arrival(replaced)?.requestId, replaced.headers.get('x-request-id'));

  const tooLarge = await fetch(`${base}${routed.find((d) => d.route.method === 'POST')!.route.path}`, { method: 'POST', body: 'x'.repeat(70_000) });
  await assertProblem(tooLarge, 413, 'body-too-large', 'a body over 64 KiB');

  const openapi = await fetch(`${base}/openapi.json`);
  assert.equal(openapi.status, 200);
  assert.deepEqual(await openapi.json(), JSON.parse(readFileSync('openapi.json', 'utf8')), 'the edge serves openapi.json');
  assert.equal(openapi.headers.get('content-type'), 'application/json');
}

test('nginx (boxoffice.conf) sends each (method, path) to the function serving it, HEAD to GET\'s; another method is a 405 with Allow, an unknown path a 404, a function down a 503', async (t) => {
  if (!toolOrSkip(t, 'nginx', 'the edge proxy\'s routing is not checked')) return;
  const upstreams = new Map<string, Server>();
  for (const { name } of routed) {
    upstreams.set(name, await fakeUpstream((req) => ({ function: name, method: req.method ?? '', url: req.url ?? '', requestId: String(req.headers['x-request-id']) })));
  }
  t.after(() => {
    for (const server of upstreams.values()) server.close();
  });
  const base = await runNginx(t, 'deploy/nginx/boxoffice.conf', Object.fromEntries([...upstreams].map(([name, server]) => [name, portOf(server)])));
  await checkEdge(base);

  // A function away (restarting, scaled down) is a 503 to retry, not a 502.
  const { name, route } = routed[0]!;
  upstreams.get(name)!.close();
  await once(upstreams.get(name)!, 'close');
  const away = await fetch(`${base}${route.path.replace(/:\w+/g, '7')}`, { method: route.method });
  assert.equal(away.headers.get('retry-after'), '1');
  await assertProblem(away, 503, 'upstream-unavailable', `${name} away`);
});

test('nginx (openfaas.conf) routes the same way onto /function/<name> of the OpenFaaS gateway, the target passed on unchanged', async (t) => {
  if (!toolOrSkip(t, 'nginx', 'the OpenFaaS edge\'s routing is not checked')) return;
  // The OpenFaaS gateway hands /function/<name>/<rest> to <name> as /<rest>.
  const gateway = await fakeUpstream((req) => {
    const [, name = '', rest = ''] = /^\/function\/([\w-]+)(\/.*)$/.exec(req.url ?? '') ?? [];
    return name ? { function: name, method: req.method ?? '', url: rest, requestId: String(req.headers['x-request-id']) } : undefined;
  });
  t.after(() => gateway.close());
  await checkEdge(await runNginx(t, 'deploy/nginx/openfaas.conf', { 'gateway.openfaas': portOf(gateway) }));
});

// --- Prometheus and Grafana ---

interface ScrapeConfig {
  job_name: string;
  metrics_path?: string;
  honor_labels?: boolean;
  static_configs?: { targets: string[]; labels?: Record<string, string> }[];
}

test('Prometheus scrapes every function and worker at <name>:8080/metrics every 5 s, labelled with the function, and nothing else', () => {
  const global = object(prometheus.global, 'prometheus.yml global');
  assert.equal(global.scrape_interval, '5s');
  const jobs = list(prometheus.scrape_configs) as ScrapeConfig[];
  const scraped: string[] = [...names, ...workers];
  for (const name of scraped) {
    const job = jobs.find((j) => j.job_name === name);
    assert.ok(job, `a scrape job for ${name}`);
    assert.equal(job.metrics_path ?? '/metrics', '/metrics', `${name} is scraped at /metrics`);
    const configs = job.static_configs ?? [];
    assert.deepEqual(configs.flatMap((c) => c.targets), [`${name}:8080`], `${name} is scraped at ${name}:8080`);
    for (const c of configs) assert.equal(c.labels?.function, name, `${name}'s target is labelled function=${name}`);
    assert.equal(job.honor_labels, true, `${name}: the process's own function label is kept, not renamed exported_function`);
    assert.ok(service(name), `${name} is a compose service Prometheus can reach by name`);
  }
  assert.deepEqual(jobs.map((j) => j.job_name).sort(), scraped.sort(), 'no scrape job for something that is not deployed');
  const promService = service('prometheus');
  assert.ok(mountsOf('prometheus', 'deploy/prometheus/prometheus.yml').includes('/etc/prometheus/prometheus.yml'), 'compose mounts the scrape config');
  assert.ok(list(promService.command).includes('--config.file=/etc/prometheus/prometheus.yml'), 'compose runs Prometheus with it');
  assert.ok(list(promService.ports).map(String).includes('9090:9090'), 'Prometheus is published on 9090');
});

test('promtool accepts deploy/prometheus/prometheus.yml', (t) => {
  if (!toolOrSkip(t, 'promtool', 'deploy/prometheus/prometheus.yml is not checked by promtool')) return;
  const result = spawnSync('promtool', ['check', 'config', 'deploy/prometheus/prometheus.yml'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(result.status, 0, `${result.stdout}\n${result.stderr}`);
});

interface Panel {
  title: string;
  type: string;
  datasource?: { type?: string; uid?: string };
  targets?: { expr: string; datasource?: { uid?: string } }[];
  panels?: Panel[];
}

/** Every panel of a Grafana dashboard, those inside collapsed rows too. */
function dashboardPanels(dashboard: { panels: Panel[] }): Panel[] {
  return dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);
}

test('Grafana is provisioned with the stack\'s Prometheus (uid prometheus) and loads the boxoffice dashboard, whose every query uses it', () => {
  const datasources = list(readYaml('deploy/grafana/provisioning/datasources/prometheus.yml').datasources) as Yaml[];
  const datasource = datasources.find((d) => d.uid === 'prometheus');
  assert.ok(datasource, 'a datasource with uid prometheus');
  assert.equal(datasource.type, 'prometheus');
  assert.equal(datasource.url, 'http://prometheus:9090', 'the compose service prometheus, on its port');

  const providers = list(readYaml('deploy/grafana/provisioning/dashboards/boxoffice.yml').providers) as Yaml[];
  assert.equal(providers.length, 1);
  assert.equal(providers[0]!.type, 'file');
  const dashboardsPath = object(providers[0]!.options, 'provider options').path;
  assert.ok(mountsOf('grafana', 'deploy/grafana/dashboards').includes(String(dashboardsPath)), `compose mounts deploy/grafana/dashboards where the provider reads (${String(dashboardsPath)})`);
  assert.ok(mountsOf('grafana', 'deploy/grafana/provisioning').includes('/etc/grafana/provisioning'), 'compose mounts the provisioning folder');
  const grafana = service('grafana');
  const env = object(grafana.environment, 'grafana environment');
  assert.equal(env.GF_AUTH_ANONYMOUS_ENABLED, 'true', 'anonymous access');
  assert.equal(env.GF_AUTH_ANONYMOUS_ORG_ROLE, 'Viewer', 'anonymous users only view');
  assert.ok(list(grafana.ports).map(String).includes('3000:3000'), 'Grafana is published on 3000');

  const dashboard = JSON.parse(readFileSync('deploy/grafana/dashboards/boxoffice.json', 'utf8')) as { uid: string; panels: Panel[] };
  const panels = dashboardPanels(dashboard).filter((p) => p.type !== 'row');
  assert.ok(panels.length > 0);
  for (const panel of panels) {
    assert.equal(panel.datasource?.uid, 'prometheus', `panel "${panel.title}" uses the prometheus datasource`);
    assert.ok(panel.targets?.length, `panel "${panel.title}" has queries`);
    for (const target of panel.targets) {
      assert.ok(target.expr.trim(), `panel "${panel.title}" has a PromQL expression`);
      assert.equal(target.datasource?.uid ?? 'prometheus', 'prometheus', `panel "${panel.title}" queries the prometheus datasource`);
    }
  }
});

test('every metric shared/metrics.ts defines has a panel on the dashboard', () => {
  const defined = [...readFileSync('shared/metrics.ts', 'utf8').matchAll(/name: '(\w+)'/g)].map((m) => m[1]!);
  assert.ok(defined.length > 0);
  const dashboard = JSON.parse(readFileSync('deploy/grafana/dashboards/boxoffice.json', 'utf8')) as { panels: Panel[] };
  const queries = dashboardPanels(dashboard).flatMap((p) => (p.targets ?? []).map((t) => t.expr)).join('\n');
  const missing = defined.filter((name) => !new RegExp(`\\b${name}(_bucket|_sum|_count)?\\b`).test(queries));
  assert.deepEqual(missing, [], 'metrics without a panel');
});
