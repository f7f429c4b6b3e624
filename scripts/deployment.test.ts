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
import { bookingTopic, databasePoolSize, drainTimeoutMs, image, maxReplicas, workers } from './generate.js';
import { functionSettings, secretName, settingsRead, type SettingsRead } from './settings-read.js';
import { topics } from '../shared/topics.js';
import { Deployment } from 'kubernetes-models/apps/v1';
import { CronJob } from 'kubernetes-models/batch/v1';
import { ConfigMap, Service as CoreService } from 'kubernetes-models/v1';
import { Service as KnativeService } from '@kubernetes-models/knative/serving.knative.dev/v1';

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

/** The Dockerfile's stages, in order (the ARG default of a `FROM ${ARG}` resolved). */
function dockerStages(): Stage[] {
  const text = readFileSync('Dockerfile', 'utf8').replace(/\\\n/g, ' ');
  const args = Object.fromEntries([...text.matchAll(/^ARG (\w+)=(\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
  return text
    .split(/^(?=FROM )/m)
    .filter((stage) => stage.startsWith('FROM '))
    .map((stage, i) => {
      const [header = '', ...lines] = stage.split('\n');
      const [, base = '', name = String(i)] = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(header) ?? [];
      return { name, base: base.replace(/^\$\{(\w+)\}$/, (_, arg: string) => args[arg] ?? base), lines: lines.map((line) => line.trim()).filter((line) => line && !line.startsWith('#')) };
    });
}

/** What the image runs by default: the last stage's CMD. */
function imageCommand(): string[] {
  const last = dockerStages().at(-1)!;
  const line = last.lines.filter((l) => l.startsWith('CMD ')).pop();
  return line ? (JSON.parse(line.slice(4)) as string[]) : [];
}

/** `name=value` of a Kubernetes container's env. */
function containerEnv(container: Yaml): Record<string, string> {
  return Object.fromEntries(list(container.env).map((e) => [String(object(e, 'env').name), String(object(e, 'env').value)]));
}

const k8sDocuments = (file: string) => parseAllDocuments(readFileSync(file, 'utf8')).map((d) => d.toJSON() as Yaml).filter(Boolean);
const workerDocuments = k8sDocuments('deploy/kubernetes/workers.yml');
const knativeServices = k8sDocuments('deploy/knative/services.yml');
const kafkaSource = k8sDocuments('deploy/knative/kafka-source.yml');
const pgbouncerDocuments = k8sDocuments('deploy/kubernetes/pgbouncer.yml');

/** The first container of a Deployment's (or Knative Service's) pod, with the pod. */
function podOf(document: Yaml): { pod: Yaml; container: Yaml } {
  const pod = object(object(object(document.spec, 'spec').template, 'template').spec, 'pod spec');
  return { pod, container: object(list(pod.containers)[0], 'container') };
}

function workerDeployment(worker: string): { pod: Yaml; container: Yaml } {
  const deployment = workerDocuments.find((d) => d.kind === 'Deployment' && object(d.metadata, 'metadata').name === worker);
  assert.ok(deployment, `deploy/kubernetes/workers.yml has a Deployment named ${worker}`);
  return podOf(deployment);
}

/** A setting a manifest may give that the code does not read: the platform's own. */
const platformSettings = new Set<string>();

/** Asserts each variable a manifest sets for `who` is one its code reads (max_inflight, read by nothing, was the kind of slip this catches). */
function assertReads(who: string, where: string, env: Record<string, unknown>, reads: SettingsRead): void {
  for (const key of Object.keys(env)) assert.ok(reads.variables.has(key) || platformSettings.has(key), `${where} sets ${key} for ${who}, which its code never reads`);
}

test('the Dockerfile builds one image on the pinned current Node LTS; it serves a function by FUNCTION_NAME and checks readiness on $PORT', () => {
  const stages = dockerStages();
  for (const stage of stages.filter((s) => !stages.some((other) => other.name === s.base))) {
    assert.match(stage.base, /^node:24-bookworm-slim@sha256:[0-9a-f]{64}$/, `stage ${stage.name} starts from Node 24 (the Active LTS) pinned by digest`);
  }
  assert.deepEqual(imageCommand(), ['node', 'dist/shared/run.js'], 'the image runs the function host, which serves FUNCTION_NAME');
  const text = readFileSync('Dockerfile', 'utf8');
  assert.doesNotMatch(text, /^ARG FUNCTION\b/m, 'no build argument picks the function: it is chosen where the image is deployed');
  const healthcheck = /^HEALTHCHECK(?:[^\n]*\\\n)*[^\n]*/m.exec(text)?.[0] ?? '';
  assert.match(healthcheck, /process\.env\.PORT/, 'the health check asks the port the process listens on');
  assert.match(healthcheck, /\/_\/ready/, 'healthy means ready');
  const engines = (JSON.parse(readFileSync('package.json', 'utf8')) as { engines: { node: string }; scripts: Record<string, string> });
  assert.equal(engines.engines.node, '>=20', 'the code keeps working from Node 20 (this machine) to the LTS the image runs');
  assert.equal(engines.scripts.serve, imageCommand().join(' '), 'npm run serve -- <function> is what the image runs');
});

test('every function folder is a compose service, an OpenFaaS function and a Knative Service of the one image with its FUNCTION_NAME, MAX_INFLIGHT and the secrets its code reads, and nothing else is', () => {
  assert.ok(names.length > 0, 'functions/ has folders');
  const knative = new Map(knativeServices.filter((d) => d.kind === 'Service').map((d) => [String(object(d.metadata, 'metadata').name), d]));
  for (const name of names) {
    const reads = functionSettings(name);
    const required = [...reads.secrets].map(secretName).sort();

    const svc = service(name);
    assert.equal(svc.image, image, `compose ${name} runs ${image}`);
    assert.equal(object(svc.build, `compose ${name} build`).context, '.', `compose ${name} builds this repository`);
    assert.equal(svc.command, undefined, `compose ${name} runs the image's command, the function host`);
    const env = object(svc.environment, `compose ${name} environment`);
    assert.equal(env.FUNCTION_NAME, name, `compose ${name} serves ${name}`);
    assert.ok(Number(env.MAX_INFLIGHT) > 0, `compose ${name} sets its concurrency`);
    assertReads(name, 'docker-compose.yml', env, reads);
    assert.deepEqual(list(svc.secrets).map(String).sort(), required, `compose ${name} mounts exactly the secrets its code reads`);
    for (const s of reads.secrets) assert.equal(env[`${s}_FILE`], `/run/secrets/${secretName(s)}`, `compose ${name} reads ${s} from its secret file`);

    const fn = object(stackFunctions[name], `stack.yml function ${name}`);
    assert.equal(fn.image, image, `stack.yml ${name} runs ${image}`);
    assert.equal(fn.skip_build, true, `faas-cli builds nothing for ${name}: the image is built once`);
    const fnEnv = object(fn.environment, `stack.yml ${name} environment`);
    assert.equal(fnEnv.FUNCTION_NAME, name);
    assert.equal(fnEnv.max_inflight, undefined, 'no watchdog reads max_inflight');
    assert.equal(fnEnv.MAX_INFLIGHT, env.MAX_INFLIGHT, `${name}: the same concurrency on OpenFaaS as in compose`);
    assertReads(name, 'stack.yml', fnEnv, reads);
    assert.deepEqual(list(fn.secrets).map(String).sort(), required, `stack.yml ${name} mounts exactly the secrets its code reads`);
    for (const s of reads.secrets) assert.equal(fnEnv[`${s}_FILE`], `/var/openfaas/secrets/${secretName(s)}`, `stack.yml ${name} reads ${s} from its OpenFaaS secret`);
    assert.ok(object(fn.limits, `stack.yml ${name} limits`).memory && object(fn.requests, `stack.yml ${name} requests`).memory, `stack.yml ${name} has resource requests and limits`);

    const ksvc = knative.get(name);
    assert.ok(ksvc, `deploy/knative/services.yml has a Service ${name}`);
    const { pod, container } = podOf(ksvc);
    assert.equal(container.image, image);
    const kEnv = containerEnv(container);
    assert.equal(kEnv.FUNCTION_NAME, name);
    assert.equal(String(pod.containerConcurrency), kEnv.MAX_INFLIGHT, `Knative ${name} scales on the concurrency the host enforces`);
    assertReads(name, 'deploy/knative/services.yml', kEnv, reads);
    const projected = list(object(object(list(pod.volumes)[0], 'volume').projected, 'projected volume').sources).map((s) => String(object(object(s, 'source').secret, 'secret').name));
    assert.deepEqual(projected.sort(), required, `Knative ${name} mounts exactly the secrets its code reads`);
    for (const s of reads.secrets) assert.equal(kEnv[`${s}_FILE`], `/var/run/secrets/boxoffice/${secretName(s)}`, `Knative ${name} reads ${s} from its secret`);
  }
  // The other way round: nothing deployed that has no folder.
  assert.deepEqual(Object.keys(stackFunctions).sort(), names, 'stack.yml functions are exactly the folders of functions/');
  assert.deepEqual([...knative.keys()].sort(), names, 'the Knative Services are exactly the folders of functions/');
  const functionServices = Object.keys(services).filter((name) => object(service(name).environment ?? {}, 'environment').FUNCTION_NAME !== undefined);
  assert.deepEqual(functionServices.sort(), names, 'the compose services with a FUNCTION_NAME are exactly the folders of functions/');
});

test('each long-running worker runs the one image with its own command (dist/<worker>/main.js) in compose and Kubernetes, with readiness and liveness probes, setting only what it reads', () => {
  for (const worker of workers) {
    const reads = settingsRead(`${worker}/main.ts`);
    const svc = service(worker);
    assert.equal(svc.image, image, `compose ${worker} runs ${image}`);
    assert.deepEqual(svc.command, ['node', `dist/${worker}/main.js`], `compose ${worker} runs dist/${worker}/main.js`);
    assert.equal(svc.restart, 'unless-stopped', `compose restarts ${worker} when it exits`);
    assertReads(worker, 'docker-compose.yml', object(svc.environment, `compose ${worker} environment`), reads);

    const { container } = workerDeployment(worker);
    assert.equal(container.image, image, `Kubernetes ${worker} runs ${image}`);
    assert.deepEqual(container.command, ['node', `dist/${worker}/main.js`], `Kubernetes ${worker} runs dist/${worker}/main.js`);
    assert.equal(object(object(container.readinessProbe, 'readinessProbe').httpGet, 'httpGet').path, '/_/ready', `${worker} is ready when its /_/ready says so`);
    assert.equal(object(object(container.livenessProbe, 'livenessProbe').httpGet, 'httpGet').path, '/_/health', `${worker} is alive while /_/health answers`);
    assert.ok(object(object(container.resources, 'resources').limits, 'limits').memory, `${worker} has a memory limit`);
    assertReads(worker, 'deploy/kubernetes/workers.yml', containerEnv(container), reads);
  }
  assert.equal(object(service('trigger').environment, 'compose trigger environment').CONSUME_ORDER_URL, 'http://consume-order:8080');
  assert.ok(dependsOn('trigger').includes('consume-order'), 'the trigger starts after consume-order');
  const relayEnv = object(service('relay').environment, 'compose relay environment');
  assert.ok(relayEnv.KAFKA_BROKERS && relayEnv.DATABASE_URL_FILE, 'the relay reads the database and publishes to Kafka');
  assert.equal(object(service('book').environment, 'compose book environment').KAFKA_BROKERS, undefined, 'book does only its request: it needs no Kafka');
});

test('every secret file a compose service reads is one of its compose secrets, and every Kubernetes one is on a mounted secret volume', () => {
  const declared = object(compose.secrets, 'compose secrets');
  for (const [name, value] of Object.entries(services)) {
    const svc = object(value, name);
    const mounted = list(svc.secrets).map(String);
    for (const s of mounted) assert.ok(declared[s], `compose ${name} uses the declared secret ${s}`);
    for (const [key, file] of Object.entries(object(svc.environment ?? {}, 'environment')).filter(([key]) => key.endsWith('_FILE'))) {
      assert.ok(mounted.some((s) => file === `/run/secrets/${s}`), `compose ${name}: ${key} (${String(file)}) is a secret it mounts`);
    }
    assert.ok(!Object.keys(object(svc.environment ?? {}, 'environment')).some((key) => /PASSWORD$|SECRET$|^DATABASE_URL$|^QUEUE_PASS_KEY$/.test(key)), `compose ${name} has no password inline`);
  }
  const documents = [...workerDocuments.filter((d) => d.kind !== 'CronJob'), ...knativeServices];
  for (const document of documents) {
    const { pod, container } = podOf(document);
    const mounts = list(container.volumeMounts).map((m) => object(m, 'mount'));
    for (const [key, file] of Object.entries(containerEnv(container)).filter(([key]) => key.endsWith('_FILE'))) {
      const mount = mounts.find((m) => file.startsWith(`${String(m.mountPath)}/`));
      assert.ok(mount, `${String(object(document.metadata, 'metadata').name)}: ${key} (${file}) is on a mounted volume`);
      const volume = object(list(pod.volumes).find((v) => object(v, 'volume').name === mount.name), 'volume');
      const secretNames = volume.secret ? [String(object(volume.secret, 'secret').secretName)] : list(object(volume.projected, 'projected').sources).map((s) => String(object(object(s, 's').secret, 'secret').name));
      assert.ok(secretNames.includes(file.slice(String(mount.mountPath).length + 1)), `${key} is the key of a mounted secret (${secretNames.join(', ')})`);
    }
  }
});

test("the trigger sends consume-order the deliverers' token: compose hands it and Keycloak's realm import the same secret file, Kubernetes mounts it from a secret", () => {
  const trigger = object(service('trigger').environment, 'compose trigger environment');
  assert.equal(trigger.DELIVERER_CLIENT_ID, 'boxoffice-deliverer');
  assert.equal(trigger.DELIVERER_CLIENT_SECRET_FILE, '/run/secrets/deliverer-client-secret');
  assert.ok(list(service('keycloak').secrets).includes('deliverer-client-secret'), 'Keycloak reads the same secret file');
  assert.match(list(service('keycloak').entrypoint).join(' '), /DELIVERER_CLIENT_SECRET="\$\$\(< \/run\/secrets\/deliverer-client-secret\)"/, "the realm import's DELIVERER_CLIENT_SECRET comes from that file");
  assert.equal(new URL(String(trigger.DELIVERER_TOKEN_URL)).host, 'keycloak:8080', 'the trigger asks the compose Keycloak for its token');
  const realm = JSON.parse(readFileSync('keycloak/boxoffice-realm.json', 'utf8')) as { clients: { clientId: string; secret?: string; serviceAccountsEnabled?: boolean }[] };
  const client = realm.clients.find((c) => c.clientId === 'boxoffice-deliverer');
  assert.ok(client?.serviceAccountsEnabled, 'the realm has the confidential deliverers client with a service account');
  assert.match(client.secret ?? '', /^\$\{DELIVERER_CLIENT_SECRET:/, "the realm takes the client's secret from DELIVERER_CLIENT_SECRET at import");
  const env = containerEnv(workerDeployment('trigger').container);
  assert.ok(env.DELIVERER_CLIENT_SECRET_FILE, 'Kubernetes hands the trigger its secret as a file');
  assert.ok(env.OIDC_ISSUER, 'the trigger knows the realm whose token endpoint it asks');
});

test('compose: readiness health checks on every long-running service, one Keycloak version with the tests, stop grace longer than the drain', () => {
  const ours = Object.keys(services).filter((name) => service(name).image === image && name !== 'migrate');
  for (const name of Object.keys(services).filter((n) => n !== 'migrate')) {
    const test = list(object(service(name).healthcheck, `compose ${name} healthcheck`).test).join(' ');
    assert.ok(test, `compose ${name} has a health check`);
    if (ours.includes(name)) assert.match(test, /\/_\/ready/, `compose ${name} is healthy when ready, not merely alive`);
  }
  const seconds = (value: unknown) => Number(/^(\d+)s$/.exec(String(value))?.[1] ?? NaN);
  for (const name of ours) {
    const drain = Number(object(service(name).environment, `${name} environment`).DRAIN_TIMEOUT_MS ?? 10_000);
    assert.ok(seconds(service(name).stop_grace_period) * 1000 > drain, `compose ${name}: stop_grace_period (${String(service(name).stop_grace_period)}) is longer than DRAIN_TIMEOUT_MS (${drain})`);
  }
  for (const { name, pod } of workerDocuments.filter((d) => d.kind === 'Deployment').map((d) => ({ name: String(object(d.metadata, 'm').name), ...podOf(d) }))) {
    assert.ok(Number(pod.terminationGracePeriodSeconds) * 1000 > drainTimeoutMs, `Kubernetes ${name}: the grace period is longer than the drain`);
  }
  const script = readFileSync('scripts/keycloak/start.sh', 'utf8');
  const tested = /KEYCLOAK_VERSION:-([\d.]+)/.exec(script)?.[1];
  assert.ok(tested, 'scripts/keycloak/start.sh names its default version');
  assert.equal(service('keycloak').image, `quay.io/keycloak/keycloak:${tested}`, 'compose runs the Keycloak the tests run');
});

test("the booking topic is named once: shared/kafka.ts's default, the relay's and trigger's BOOKING_TOPIC, the kafka-connector annotation and the KafkaSource", () => {
  const saved = process.env.BOOKING_TOPIC;
  delete process.env.BOOKING_TOPIC;
  try {
    assert.equal(topics.booking, bookingTopic, "generate.ts's topic is the code's default");
  } finally {
    if (saved !== undefined) process.env.BOOKING_TOPIC = saved;
  }
  for (const worker of ['relay', 'trigger']) {
    assert.equal(containerEnv(workerDeployment(worker).container).BOOKING_TOPIC, bookingTopic, `Kubernetes ${worker}`);
    assert.equal(object(service(worker).environment, worker).BOOKING_TOPIC, bookingTopic, `compose ${worker}`);
  }
  assert.equal(object(object(stackFunctions['consume-order'], 'consume-order').annotations, 'annotations').topic, bookingTopic);
  const source = kafkaSource.find((d) => d.kind === 'KafkaSource')!;
  assert.deepEqual(object(source.spec, 'spec').topics, [bookingTopic]);
  assert.equal(object(kafkaSource.find((d) => d.kind === 'KafkaSink')!.spec, 'spec').topic, `${bookingTopic}.dead-letter`);
});

test('the KafkaSource delivers the booking topic to consume-order as the code expects: retries with backoff, a dead-letter sink, no token (CONSUME_ORDER_AUTH=off, cluster-local)', () => {
  const source = object(kafkaSource.find((d) => d.kind === 'KafkaSource'), 'KafkaSource');
  assert.equal(source.apiVersion, 'sources.knative.dev/v1beta1');
  const spec = object(source.spec, 'spec');
  assert.equal(spec.consumerGroup, 'order-service');
  assert.deepEqual(object(spec.sink, 'sink').ref, { apiVersion: 'serving.knative.dev/v1', kind: 'Service', name: 'consume-order' });
  const delivery = object(spec.delivery, 'delivery');
  assert.ok(Number(delivery.retry) >= 10, 'retries');
  assert.equal(delivery.backoffPolicy, 'exponential');
  assert.match(String(delivery.backoffDelay), /^PT[\d.]+S$/, 'an ISO 8601 backoff delay');
  const dls = object(object(delivery.deadLetterSink, 'deadLetterSink').ref, 'ref');
  const sink = object(kafkaSource.find((d) => d.kind === dls.kind && object(d.metadata, 'm').name === dls.name), 'the dead-letter sink');
  assert.equal(object(sink.spec, 'spec').contentMode, 'binary');
  const consumeOrder = knativeServices.find((d) => object(d.metadata, 'm').name === 'consume-order')!;
  assert.equal(containerEnv(podOf(consumeOrder).container).CONSUME_ORDER_AUTH, 'off', 'the source sends no token');
  assert.equal(object(object(consumeOrder.metadata, 'm').labels, 'labels')['networking.knative.dev/visibility'], 'cluster-local', 'so only the cluster reaches it');
});

test('the Kubernetes and Knative manifests are valid against their schemas (kubernetes-models)', () => {
  const models: Record<string, new (data: never) => { validate(): void }> = {
    'apps/v1/Deployment': Deployment,
    'batch/v1/CronJob': CronJob,
    'v1/ConfigMap': ConfigMap,
    'v1/Service': CoreService,
    'serving.knative.dev/v1/Service': KnativeService,
  };
  const files = ['deploy/kubernetes/workers.yml', 'deploy/kubernetes/pgbouncer.yml', 'deploy/nginx/openfaas-edge.yml', 'deploy/knative/services.yml'];
  let validated = 0;
  for (const file of files) {
    for (const document of k8sDocuments(file)) {
      const Model = models[`${String(document.apiVersion)}/${String(document.kind)}`];
      assert.ok(Model, `${file}: a model for ${String(document.apiVersion)} ${String(document.kind)}`);
      assert.doesNotThrow(() => new Model(document as never).validate(), `${file}: ${String(document.kind)} ${String(object(document.metadata, 'm').name)} is valid`);
      validated++;
    }
  }
  assert.ok(validated >= names.length + 4);
});

test('the pools add up: what reaches PgBouncer fits its max_client_conn, what reaches Postgres fits max_connections; the relay and migrations go around it', () => {
  const ini = (text: string) => Object.fromEntries([...text.matchAll(/^\s*(\w+)\s*=\s*(.+?)\s*$/gm)].map((m) => [m[1]!, m[2]!]));
  const poolOf = (env: Yaml) => Number(env.DATABASE_POOL_SIZE ?? 10);
  // compose: one instance of everything.
  const composeIni = ini(readFileSync('deploy/pgbouncer/pgbouncer.ini', 'utf8'));
  const viaBouncer = Object.keys(services).filter((name) => list(service(name).secrets).includes('database-url'));
  const clients = viaBouncer.reduce((sum, name) => sum + poolOf(object(service(name).environment, name)), 0);
  assert.ok(clients <= Number(composeIni.max_client_conn), `compose: ${clients} client connections within max_client_conn ${composeIni.max_client_conn}`);
  const direct = ['relay', 'migrate'].reduce((sum, name) => sum + poolOf(object(service(name).environment, name)) + 1, 0);
  const maxConnections = Number(/max_connections=(\d+)/.exec(list(service('postgres').command).join(' '))?.[1]);
  const server = Number(composeIni.default_pool_size) + Number(composeIni.reserve_pool_size) + direct;
  assert.ok(server + 3 <= maxConnections, `compose: ${server} server connections (+3 reserved) within max_connections ${maxConnections}`);
  assert.match(composeIni.pool_mode!, /^transaction$/);
  assert.match(composeIni.ignore_startup_parameters!, /statement_timeout/, 'pg sends statement_timeout at start-up, which PgBouncer would refuse');
  for (const name of ['relay', 'migrate']) assert.ok(list(service(name).secrets).includes('database-url-direct'), `compose ${name} goes straight to Postgres`);

  // Kubernetes: every function at its most replicas.
  const config = object(pgbouncerDocuments.find((d) => d.kind === 'ConfigMap')?.data, 'pgbouncer ConfigMap');
  const k8sIni = ini(String(config['pgbouncer.ini']));
  assert.equal(k8sIni.pool_mode, 'transaction');
  assert.equal(k8sIni.ignore_startup_parameters, composeIni.ignore_startup_parameters);
  const perFunction = maxReplicas * Number(object(stack['x-function'], 'x-function').environment && object(object(stack['x-function'], 'x-function').environment, 'env').DATABASE_POOL_SIZE);
  assert.equal(perFunction, maxReplicas * databasePoolSize);
  assert.equal(String(object(object(stack['x-function'], 'x-function').labels, 'labels')['com.openfaas.scale.max']), String(maxReplicas));
  assert.ok(names.length * perFunction + databasePoolSize <= Number(k8sIni.max_client_conn), `Kubernetes: ${names.length} functions x ${perFunction} within max_client_conn ${k8sIni.max_client_conn}`);
  const replicas = Number(object(pgbouncerDocuments.find((d) => d.kind === 'Deployment')?.spec, 'spec').replicas);
  const relay = workerDocuments.find((d) => object(d.metadata, 'm').name === 'relay')!;
  const relayConnections = Number(object(relay.spec, 'spec').replicas) * (poolOf(containerEnv(podOf(relay).container)) + 1);
  const k8sServer = replicas * (Number(k8sIni.default_pool_size) + Number(k8sIni.reserve_pool_size)) + relayConnections + 1;
  assert.ok(k8sServer + 3 <= 100, `Kubernetes: ${k8sServer} server connections within a managed Postgres' 100 (README)`);
  assert.ok(containerEnv(podOf(relay).container).DATABASE_URL_FILE?.endsWith('database-url-direct'), 'the Kubernetes relay goes straight to Postgres');
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
    const path = route.path.replace(/:\w+\??/g, '7');
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
