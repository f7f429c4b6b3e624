import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

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

// Domain counters. Each lives here so that every process registers the same
// names; those without labels read 0 in processes that never move them, so
// dashboards select them by function.
export const bookingOutcomes = new Counter({
  name: 'boxoffice_bookings_total',
  help: 'Booking requests by outcome (accepted, replayed, sold_out, over_limit, pass_required, pass_refused, unknown_customer, unknown_event, key_reused; cancelled, already_cancelled)',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

export const ticketsSold = new Counter({
  name: 'boxoffice_tickets_sold_total',
  help: 'Tickets reserved by accepted bookings',
  registers: [registry],
});

export const orderOutcomes = new Counter({
  name: 'boxoffice_orders_total',
  help: 'Booking messages consumed, by outcome (created, duplicate, cancelled: of a cancelled booking, no order)',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

export const outboxPublished = new Counter({
  name: 'boxoffice_outbox_published_total',
  help: 'Outbox rows published',
  registers: [registry],
});

export const outboxBacklog = new Gauge({
  name: 'boxoffice_outbox_backlog',
  help: 'Outbox rows not yet published, as of the last sweep',
  registers: [registry],
});

export const triggerDeliveries = new Counter({
  name: 'boxoffice_trigger_deliveries_total',
  help: 'Messages the trigger delivered, by result (delivered, retried, dead_lettered)',
  labelNames: ['result'] as const,
  registers: [registry],
});

export const triggerLag = new Gauge({
  name: 'boxoffice_trigger_lag',
  help: 'Messages of the topic not yet committed by the trigger, by partition',
  labelNames: ['topic', 'partition'] as const,
  registers: [registry],
});

export const oldestPendingBooking = new Gauge({
  name: 'boxoffice_oldest_pending_booking_seconds',
  help: 'Age of the oldest booking still PENDING (0 when none), as of the relay\'s last sweep',
  registers: [registry],
});

export const bookingsRedriven = new Counter({
  name: 'boxoffice_bookings_redriven_total',
  help: 'Bookings PENDING too long whose message the relay published again',
  registers: [registry],
});

export const triggerPausedPartitions = new Gauge({
  name: 'boxoffice_trigger_paused_partitions',
  help: 'Partitions the trigger holds paused while it waits to retry a delivery that failed',
  registers: [registry],
});

export const triggerRetryAge = new Gauge({
  name: 'boxoffice_trigger_retry_age_seconds',
  help: 'How long the longest-failing message the trigger is retrying has been failing (0: none)',
  registers: [registry],
});

export const bookingBatchSize = new Histogram({
  name: 'boxoffice_booking_batch_size',
  help: 'Booking requests that shared one reservation transaction (group commit)',
  buckets: [1, 2, 5, 10, 20, 50, 100, 200],
  registers: [registry],
});

export const triggerRedeliveries = new Counter({
  name: 'boxoffice_trigger_redeliveries_total',
  help: 'Messages the trigger had delivered past a failing one in its concurrent window: delivered again after the partition rewinds',
  registers: [registry],
});

// The waiting room, measured by the admitter at each tick. Several admitters
// report the same gauges (read their max) and count apart (sum them).
export const queueWaiting = new Gauge({
  name: 'boxoffice_queue_waiting',
  help: 'Customers waiting in the waiting rooms of events with tickets left, as of the admitter\'s last tick',
  registers: [registry],
});

export const queueActivePasses = new Gauge({
  name: 'boxoffice_queue_active_passes',
  help: 'Admitted customers holding a pass neither used nor expired (each room at most its maxActive), as of the admitter\'s last tick',
  registers: [registry],
});

export const queueAdmitted = new Counter({
  name: 'boxoffice_queue_admitted_total',
  help: 'Customers the admitter let through a waiting room, each given a pass',
  registers: [registry],
});

export const queueWait = new Histogram({
  name: 'boxoffice_queue_wait_seconds',
  help: 'How long admitted customers waited: from joining, or from the start for those who joined before it, to admission',
  buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200],
  registers: [registry],
});

export const queuePassesExpired = new Counter({
  name: 'boxoffice_queue_passes_expired_total',
  help: 'Passes that expired unused, freeing their slot',
  registers: [registry],
});
