import * as functions from '@google-cloud/functions-framework';
import type { Request } from '@google-cloud/functions-framework';
import { problems, sendProblem } from './errors.js';
import { markRoute, type FunctionDefinition } from './http-function.js';
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
}

export interface CloudEventFunctionSpec<Data> {
  name: string;
  /** JSON Schema of the event's data. */
  dataSchema: object;
  /** Does the work; what it returns is the 200 answer. Throw a Problem to refuse. */
  handle(event: ReceivedEvent<Data>): Promise<unknown>;
}

/**
 * Registers a function that receives CloudEvents over HTTP POST, in the
 * three shapes its deliverers use: binary mode (the project's trigger,
 * Knative's KafkaSource), structured mode (`application/cloudevents+json`),
 * and the raw Kafka message OpenFaaS's kafka-connector posts with
 * `X-Topic`/`X-Kafka-*` headers.
 *
 * It is registered as a functions-framework HTTP function rather than with
 * `cloudEvent()`: the framework answers every error of a CloudEvent function
 * with a 500, while deliverers need the difference between "retry" (5xx)
 * and "this message will never succeed" (4xx, dead-lettered at once).
 */
export function cloudEventFunction<Data>(spec: CloudEventFunctionSpec<Data>): FunctionDefinition {
  const validate = validator<Data>('data', spec.dataSchema);

  functions.http(spec.name, async (req, res) => {
    markRoute(res, 'cloudevent');
    try {
      if (req.method !== 'POST') throw problems.methodNotAllowed(req.method, ['POST']);
      const event = receive(req);
      const result = await spec.handle({ ...event, data: validate(event.data) });
      res.status(200).setHeader('Content-Type', 'application/json');
      res.end(toJson(result));
    } catch (error) {
      const problem = sendProblem(res, error);
      const level = problem.status >= 500 ? 'error' : 'warn';
      log[level]({ err: error, ceId: req.headers['ce-id'] ?? req.headers['x-kafka-offset'] }, 'event refused');
    }
  });

  return { name: spec.name, signature: 'cloudevent' };
}

function receive(req: Request): ReceivedEvent<unknown> {
  const header = (name: string) => {
    const value = req.headers[name];
    return typeof value === 'string' && value !== '' ? value : undefined;
  };
  const [id, type, source, specversion] = ['ce-id', 'ce-type', 'ce-source', 'ce-specversion'].map(header);
  if (id && type && source && specversion) {
    return { id, type, source, subject: header('ce-subject'), data: dataOf(req) };
  }
  const topic = header('x-topic');
  if (topic) {
    const [partition, offset] = [header('x-kafka-partition') ?? '?', header('x-kafka-offset') ?? '?'];
    return { id: `${topic}:${partition}:${offset}`, type: 'com.openfaas.kafka.message', source: `kafka:${topic}`, subject: header('x-kafka-key'), data: dataOf(req) };
  }
  const envelope = req.body as Record<string, unknown> | undefined;
  if ((req.headers['content-type'] ?? '').startsWith('application/cloudevents+json') && envelope && typeof envelope === 'object') {
    const { id: eid, type: etype, source: esource, subject, data } = envelope;
    if (typeof eid === 'string' && typeof etype === 'string' && typeof esource === 'string') {
      return { id: eid, type: etype, source: esource, subject: typeof subject === 'string' ? subject : undefined, data };
    }
  }
  throw problems.notACloudEvent('Expected a binary CloudEvent (ce-id, ce-type, ce-source, ce-specversion), a structured one, or a Kafka message with X-Topic');
}

/** The body as data; a JSON body that arrived without a Content-Type is still JSON. */
function dataOf(req: Request): unknown {
  if (!Buffer.isBuffer(req.body)) return req.body;
  try {
    return JSON.parse(req.body.toString('utf8'));
  } catch {
    throw problems.malformedJson('the event data is not JSON');
  }
}
