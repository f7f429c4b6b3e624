import type { FunctionDefinition } from '../shared/http-function.js';

interface Parameter {
  name: string;
  in: 'path' | 'query' | 'header';
  required: boolean;
  schema: object;
  description?: string;
}

interface ObjectSchema {
  properties?: Record<string, object & { description?: string }>;
  required?: string[];
}

// What else a 403 means, where a function refuses more than another customer's token.
const forbidden: Record<string, string> = {
  book: 'The token may not act for this customer, or the event has a waiting room and the Queue-Pass header carries no valid pass (queue-pass-required, queue-pass-invalid)',
};

/** What a 409 means, for the functions that answer one. */
const conflicts: Record<string, string> = {
  book: 'Not enough tickets left, or the per-customer maximum reached (limit and mayStillBook say how far)',
  'cancel-booking': 'The booking failed: it holds nothing to cancel',
  'create-event': 'The event does not fit in its venue',
  'update-event': 'The sale has started, or the event does not fit in its venue',
  'update-venue': 'The venue would hold fewer than one of its events',
};

const problem = (description: string) => ({ description, content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } } });

/**
 * The OpenAPI 3.1 document of the public API, built from the very JSON
 * Schemas the functions validate with, so the two cannot drift apart.
 * `npm run generate` writes it to openapi.json, which the edges serve.
 */
export function openApiDocument(definitions: FunctionDefinition[]): object {
  const paths: Record<string, Record<string, object>> = {};
  for (const fn of definitions) {
    // The storefront's pages are served beside the API, not part of it.
    if (!fn.route?.path.startsWith('/api/')) continue;
    const path = fn.route.path.replace(/:(\w+)/g, '{$1}');
    const parameters = [
      ...parametersOf(fn.schemas?.path, 'path'),
      ...parametersOf(fn.schemas?.query, 'query'),
      ...parametersOf(fn.schemas?.header, 'header'),
    ];
    paths[path] ??= {};
    paths[path][fn.route.method.toLowerCase()] = {
      operationId: fn.name,
      ...(parameters.length ? { parameters } : {}),
      ...(fn.schemas?.body ? { requestBody: { required: true, content: { 'application/json': { schema: fn.schemas.body } } } } : {}),
      ...(fn.access === 'token' ? { security: [{ bearer: [] }] } : {}),
      responses: {
        [String(fn.success ?? 200)]: { description: 'Success', content: { 'application/json': {} } },
        400: problem('The request is not valid; invalidParams names each fault'),
        ...(fn.access === 'token' ? { 401: problem('No valid bearer token'), 403: problem(forbidden[fn.name] ?? 'The token may not act for this customer') } : {}),
        404: problem('Not found'),
        ...(fn.name in conflicts ? { 409: problem(conflicts[fn.name]!) } : {}),
        ...(fn.name === 'book' ? { 422: problem('Idempotency-Key reused with another body') } : {}),
        503: problem('Shedding load or shutting down; retry after Retry-After'),
      },
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'boxoffice', version: '1.0.0', description: 'Event ticketing: the public API of the boxoffice functions.' },
    paths,
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      schemas: {
        Problem: {
          type: 'object',
          description: 'RFC 9457 problem details',
          properties: {
            type: { type: 'string' },
            title: { type: 'string' },
            status: { type: 'integer' },
            detail: { type: 'string' },
            invalidParams: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, reason: { type: 'string' } } } },
          },
          required: ['type', 'title', 'status'],
        },
      },
    },
  };
}

function parametersOf(schema: object | undefined, where: Parameter['in']): Parameter[] {
  const { properties = {}, required = [] } = (schema ?? {}) as ObjectSchema;
  return Object.entries(properties).map(([name, property]) => {
    const { description, ...rest } = property;
    return { name, in: where, required: where === 'path' || required.includes(name), schema: rest, ...(description ? { description } : {}) };
  });
}
