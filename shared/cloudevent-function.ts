import * as functions from '@google-cloud/functions-framework';
import { CloudEvent, HTTP, ValidationError, type Headers } from 'cloudevents';
import { authenticate, deliverersAuthenticated, requireRole } from './auth.js';
import { problems, sendProblem } from './errors.js';
import { isJson, keepCallHandler, markRoute, type CallHandler, type FunctionDefinition, type IncomingCall } from './http-function.js';
import { toJson } from './json.js';
import { log } from './log.js';
import { validator } from './validation.js';

/** A CloudEvent as a handler receives it, its data validated. */
export interface ReceivedEvent<Data> {
  id: string;
  type: string;
  source: string;
  subject?: string;
  data: Data;
  /**
   * The JSON text the data came in and the path of the data within it.
   * JSON.parse turns every number into a binary float; a handler that needs
   * a number's exact digits (a price) reads them from this text, e.g. with
   * Postgres' `jsonb #>>`.
   */
  dataText: { json: string; path: string[] };
}

export interface CloudEventFunctionSpec<Data> {
  name: string;
  /**
   * The realm role a deliverer's token must carry (a service account's,
   * fetched with the client credentials grant): without a valid token a
   * delivery is a 401, with a token lacking the role a 403, unless
   * CONSUME_ORDER_AUTH=off.
   */
  delivererRole: string;
  /** JSON Schema of the event's data. */
  dataSchema: object;
  /** Does the work; what it returns is the 200 answer. Throw a Problem to refuse. */
  handle(event: ReceivedEvent<Data>): Promise<unknown>;
}

const SPEC_VERSION = '1.0';

/**
 * Registers a function that receives CloudEvents over HTTP POST, in the
 * three shapes its deliverers use: binary mode (the project's trigger,
 * Knative's KafkaSource), structured mode (`application/cloudevents+json`),
 * both read by the `cloudevents` package, and the raw Kafka message
 * OpenFaaS's kafka-connector posts with `X-Topic`/`X-Kafka-*` headers.
 *
 * It is registered as a functions-framework HTTP function rather than with
 * `cloudEvent()`: the framework answers every error of a CloudEvent function
 * with a 500, while deliverers need the difference between "retry" (5xx)
 * and "this message will never succeed" (4xx, dead-lettered at once).
 * The same handler is kept for a host that calls it directly (see
 * `callHandler`).
 */
export function cloudEventFunction<Data>(spec: CloudEventFunctionSpec<Data>): FunctionDefinition {
  const validate = validator<Data>('data', spec.dataSchema);
  const checkDeliverer = deliverersAuthenticated();
  if (!checkDeliverer) {
    log.warn(
      { function: spec.name, setting: 'CONSUME_ORDER_AUTH=off' },
      `CONSUME_ORDER_AUTH=off: ${spec.name} ACCEPTS DELIVERIES FROM ANYONE WHO CAN REACH IT, without a token; only where nothing but the deliverer can`,
    );
  }

  const serve: CallHandler = async (req, res) => {
    markRoute(res, 'cloudevent');
    try {
      // The deliverer first: a caller without the role learns nothing else of the function.
      if (checkDeliverer) requireRole(await authenticate(req.headers), spec.delivererRole);
      if (req.method !== 'POST') throw problems.methodNotAllowed(req.method, ['POST']);
      const event = receive(req);
      const result = await spec.handle({ ...event, data: validate(event.data, event.dataText) });
      res.statusCode = 200;
      res.setHeader('Content-Type', 'application/json');
      res.end(toJson(result));
    } catch (error) {
      const problem = sendProblem(res, error);
      // A 500 is a bug; a 503 is an outage the deliverer retries; a 4xx is the message's fault.
      log[problem.status === 500 ? 'error' : 'warn']({ err: error, ceId: req.headers['ce-id'] ?? req.headers['x-kafka-offset'] }, 'event refused');
    }
  };

  keepCallHandler(spec.name, serve);
  // The framework's Express request carries the same parts, rawBody included.
  functions.http(spec.name, (req, res) => serve(req, res));

  return { name: spec.name, signature: 'cloudevent' };
}

function receive(req: IncomingCall): ReceivedEvent<unknown> {
  const structured = mediaType(req).startsWith('application/cloudevents');
  const topic = header(req, 'x-topic');
  // The kafka-connector's raw message is marked by X-Topic alone; a request
  // that also says it is a CloudEvent is read as one.
  if (topic && !structured && !header(req, 'ce-id')) return kafkaMessage(req, topic);
  return structured ? structuredEvent(req) : binaryEvent(req);
}

/** The raw message OpenFaaS's kafka-connector posts: not a CloudEvent, so its attributes come from the Kafka headers. */
function kafkaMessage(req: IncomingCall, topic: string): ReceivedEvent<unknown> {
  const [partition, offset] = [header(req, 'x-kafka-partition') ?? '?', header(req, 'x-kafka-offset') ?? '?'];
  return {
    id: `${topic}:${partition}:${offset}`,
    type: 'com.openfaas.kafka.message',
    source: `kafka:${topic}`,
    subject: header(req, 'x-kafka-key'),
    data: bodyAsJson(req.body),
    dataText: { json: rawText(req), path: [] },
  };
}

function binaryEvent(req: IncomingCall): ReceivedEvent<unknown> {
  if (!header(req, 'ce-id')) {
    throw problems.notACloudEvent('Expected a binary CloudEvent (ce-id, ce-type, ce-source, ce-specversion), a structured one, or a Kafka message with X-Topic');
  }
  requireSpecVersion(header(req, 'ce-specversion'));
  // The host has parsed a JSON body already: without its Content-Type the
  // package takes the body as the data as it is, instead of parsing it again.
  const headers: Headers = { ...req.headers };
  delete headers['content-type'];
  const event = parse({ headers, body: req.body });
  return { ...attributesOf(event), data: bodyAsJson(event.data), dataText: { json: rawText(req), path: [] } };
}

function structuredEvent(req: IncomingCall): ReceivedEvent<unknown> {
  const envelope: unknown = req.body;
  if (!isJson(req.headers['content-type']) || typeof envelope !== 'object' || envelope === null || Array.isArray(envelope)) {
    throw problems.notACloudEvent('A structured CloudEvent must be a JSON object (application/cloudevents+json)');
  }
  const declared = envelope as Record<string, unknown>;
  requireSpecVersion(declared.specversion);
  // The package would give an event without an id a fresh one: a redelivery would no longer look like one.
  if (typeof declared.id !== 'string' || declared.id === '') throw problems.notACloudEvent('The event has no id');
  if ('data_base64' in declared) throw problems.notACloudEvent('data_base64 is not accepted: send the data as JSON in data');
  // The host parsed the body; the package matches content types by their exact text, so it gets the plain one.
  const event = parse({ headers: { 'content-type': 'application/cloudevents+json' }, body: envelope });
  return { ...attributesOf(event), data: event.data, dataText: { json: rawText(req), path: ['data'] } };
}

/** Only 1.0 is read; the package would take a missing specversion for 1.0 and read 0.3 by other rules. */
function requireSpecVersion(specversion: unknown): void {
  if (specversion === SPEC_VERSION) return;
  const said = specversion === undefined ? 'The event has no specversion' : `specversion ${JSON.stringify(specversion)} is not supported`;
  throw problems.notACloudEvent(`${said}; send ${SPEC_VERSION}`);
}

/** One validated CloudEvent; anything the package refuses is the message's fault: a 400. */
function parse(message: { headers: Headers; body: unknown }): CloudEvent<unknown> {
  let event: CloudEvent<unknown>;
  try {
    // One CloudEvent (a batch needs the batch content type, never passed
    // here), built without validation: validate() is the check.
    event = HTTP.toEvent<unknown>(message) as CloudEvent<unknown>;
    event.validate();
  } catch (error) {
    throw problems.notACloudEvent(`Not a valid CloudEvent: ${describe(error)}`);
  }
  return event;
}

function attributesOf(event: CloudEvent<unknown>): Pick<ReceivedEvent<unknown>, 'id' | 'type' | 'source' | 'subject'> {
  return { id: event.id, type: event.type, source: event.source, subject: event.subject };
}

/** What the package found wrong, as a sentence (its ValidationError lists ajv's errors). */
function describe(error: unknown): string {
  if (!(error instanceof ValidationError) || !error.errors?.length) return (error as Error).message;
  return error.errors
    .map((fault) => {
      const { instancePath, message } = (fault ?? {}) as { instancePath?: string; message?: string };
      return message ? `${instancePath || 'event'} ${message}` : String(fault);
    })
    .join('; ');
}

/** The body as data: JSON the host has parsed as it is; bytes (no JSON content type, or none at all) still read as JSON. */
function bodyAsJson(body: unknown): unknown {
  if (!Buffer.isBuffer(body)) return body;
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw problems.malformedJson('the event data is not JSON');
  }
}

function rawText(req: IncomingCall): string {
  return req.rawBody?.toString('utf8') ?? 'null';
}

function mediaType(req: IncomingCall): string {
  return (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

function header(req: IncomingCall, name: string): string | undefined {
  const value = req.headers[name];
  return typeof value === 'string' && value !== '' ? value : undefined;
}
