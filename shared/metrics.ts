import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The one registry a function process exposes at /metrics. */
export const registry = new Registry();
collectDefaultMetrics({ register: registry });

export function labelRegistry(functionName: string): void {
  registry.setDefaultLabels({ function: functionName });
}

export const httpRequests = new Counter({
  name: 'http_requests_total',
  help: 'HTTP requests answered, by route and status',
  labelNames: ['method', 'route', 'status'] as const,
  registers: [registry],
});

export const httpDuration = new Histogram({
  name: 'http_request_duration_seconds',
  help: 'Time from request to response, by route and status',
  labelNames: ['method', 'route', 'status'] as const,
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});

export const inflightShed = new Counter({
  name: 'http_requests_shed_total',
  help: 'Requests refused with 503 because too many were in flight',
  registers: [registry],
});
